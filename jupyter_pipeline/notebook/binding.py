"""Bind each stage's free names to the stage above that last defines them.

Given the cells grouped into stages (parse's first pass), :func:`bind` decides each stage's
inputs (variable, producing stage), the outputs each producer must save, its parameters and the
stages it depends on, and reports what binding finds wrong: a name first defined in a later
stage, defined only in a cell left out of the pipeline (``skip``, or above the first stage), not
defined at all, or holding a value that cannot be passed between stages; a ``map:`` source that
is not data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import analysis
from .condition import ConditionContext, bind_condition
from ..exceptions import VariableNotSavable
from .pipeline import Problem, Stage, StageOptions


@dataclass
class Grouped:
    """What parse's first pass found: stages in order of first appearance and their cells."""

    order: list[str]
    members: dict[str, list[int]]  # stage -> its cells' indices
    after: dict[str, list[str]]  # stage -> the stages its `after:` tags name
    options: dict[str, StageOptions]  # stage -> the options its tags set
    first_cell: dict[str, int]
    scans: dict[int, analysis.Scan]  # code cell index -> what it defines and uses
    setup_cells: list[int]
    parameters: set[str]  # the parameters cell's literal names
    parameter_cell_names: set[str]  # every name a parameters cell binds (literal or not)
    skipped_defines: dict[str, int]  # names bound only in `skip` cells -> the first such cell
    left_out_defines: dict[str, int]  # names bound only in cells above the first stage
    #: How messages name a cell (``cell 4``, or ``cell 2 of parts/features.ipynb`` in an included notebook)
    label: Callable[[int], str] = lambda index: f"cell {index + 1}"
    notebook: dict[str, str] = field(default_factory=dict)  # stage -> the included notebook it belongs to
    setup_for: dict[str, list[int]] | None = None  # stage -> the setup cells it runs (None: all of them)
    metrics: set[str] = field(default_factory=set)  # Kale `pipeline-metrics` stages under another name
    parameter_values: dict[str, object] = field(default_factory=dict)  # parameter -> its default
    condition_cells: dict[str, int] = field(default_factory=dict)  # stage -> the cell of its `if:` tag


def bind(grouped: Grouped, default_options: StageOptions, problems: list[Problem]) -> tuple[list[Stage], bool]:
    """The stages, bound (problems appended to ``problems``), and whether a star import hides names."""
    scans, order, members, first_cell = grouped.scans, grouped.order, grouped.members, grouped.first_cell
    param_names = grouped.parameters
    setups: dict[tuple[int, ...], tuple[set[str], list[str]]] = {}

    def setup_of(stage: str) -> tuple[set[str], list[str]]:
        """What the stage's setup cells provide, and the parameters they read."""
        cells = tuple(grouped.setup_cells if grouped.setup_for is None else grouped.setup_for[stage])
        if cells not in setups:
            scan = analysis.combine([(i, scans[i]) for i in cells])
            # Names a parameters cell binds count as provided even when not literal (that is reported once).
            setups[cells] = (scan.defines | param_names | grouped.parameter_cell_names | analysis.KERNEL_NAMES,
                             sorted(scan.uses & param_names))
        return setups[cells]

    star_import = any(s.star_import for s in scans.values())
    generator_functions = set().union(*(s.generator_functions for s in scans.values()))

    combined = {
        name: analysis.combine([(i, scans[i]) for i in members[name] if i in scans])
        for name in order
    }
    stages: list[Stage] = []
    outputs: dict[str, set[str]] = {name: set() for name in order}
    scalars: dict[str, dict[str, str]] = {name: {} for name in order}  # producer -> {variable: kind}
    position = {name: i for i, name in enumerate(order)}
    latest: dict[str, str] = {}  # variable -> the nearest stage above that binds it
    for k, name in enumerate(order):
        info = combined[name]
        provided, setup_params = setup_of(name)
        map_var, map_as = grouped.options[name].map_var, grouped.options[name].map_as
        if map_var:
            # A map stage reads its item under `map_as` (provided per run) and always needs VAR.
            info.uses = (info.uses - {map_as}) | {map_var}
            info.first_use_cell.setdefault(map_var, first_cell[name])
        inputs = []
        for var in sorted(info.uses - provided):
            producer = latest.get(var)
            cell = info.first_use_cell.get(var)
            if producer:
                inputs.append((var, producer))
                outputs[producer].add(var)
                hint = combined[producer].unsavable_hint(var, generator_functions)
                if hint:
                    problems.append(Problem(
                        "error", "unsavable-variable",
                        f"variable '{var}' holds {hint} (stage '{producer}') and stage '{name}' uses it, but "
                        f"{hint} cannot be passed between stages. Instead, {VariableNotSavable.ADVICE[hint]}",
                        stage=name, cell=cell,
                    ))
                continue
            later = next((n for n in order[k + 1:] if var in combined[n].defines), None)
            if later:
                problems.append(Problem(
                    "error", "defined-later",
                    f"'{var}' is used here but first defined in a later stage, '{later}'; stages receive only "
                    "variables of stages above them", stage=name, cell=cell,
                ))
            elif var in grouped.left_out_defines:
                problems.append(Problem(
                    "error", "orphan-name",
                    f"name '{var}' is defined only in {grouped.label(grouped.left_out_defines[var])}, which "
                    "comes before the first "
                    "stage and so is left out of the pipeline; tag that cell `setup` to run it at the start of "
                    "every stage", stage=name, cell=cell,
                ))
            elif not star_import:
                skipped = grouped.skipped_defines.get(var)
                hint = (f"; {grouped.label(skipped)} defines it but is tagged `skip`, so it is not part of the pipeline"
                        if skipped is not None else "")
                problems.append(Problem(
                    "error", "undefined-name",
                    f"name '{var}' is used but no stage, setup cell or parameter above defines it{hint}",
                    stage=name, cell=cell,
                ))
        if map_var and map_var not in param_names and map_var in provided:
            # Undefined names are reported by the binding above; a setup or kernel name is not data.
            problems.append(Problem(
                "error", "map-source",
                f"`map:{map_var}` needs '{map_var}' from a stage above or from the parameters cell, "
                "not from a setup cell",
                stage=name, cell=first_cell[name],
            ))
        for var, (cell, function) in sorted(info.late_reads.items()):
            if var not in provided:  # a setup or parameter value exists before any stage code runs
                problems.append(Problem(
                    "error", "defined-later",
                    f"'{function}' reads '{var}' and is called here, before the cell of stage '{name}' that "
                    f"defines '{var}' has run; move that definition above this cell", stage=name, cell=cell,
                ))
        options = default_options.merged(grouped.options[name])
        if options.condition:
            context = ConditionContext(grouped, combined, latest, provided, order[k + 1:], problems)
            bind_condition(name, options.condition, context, inputs, outputs, scalars)
        stage_after = tuple(grouped.after[name])
        known_after = [a for a in stage_after if a in members and a != name]
        depends = sorted({p for _, p in inputs} | set(known_after), key=position.get)
        latest.update(dict.fromkeys(info.defines, name))
        stages.append(Stage(
            name=name,
            cells=tuple(members[name]),
            after=stage_after,
            options=options,
            defines=frozenset(info.defines),
            uses=frozenset(info.uses),
            inputs=tuple(inputs),
            parameters=tuple(sorted((info.uses & param_names) | set(setup_params))),
            depends_on=tuple(depends),
            metrics_cell=name == "pipeline-metrics" or name in grouped.metrics,
            notebook=grouped.notebook.get(name, ""),
        ))
    stages = [
        Stage(**{**{f: getattr(s, f) for f in s.__dataclass_fields__}, "outputs": tuple(sorted(outputs[s.name])),
                 "scalars": tuple(sorted(scalars[s.name].items()))})
        for s in stages
    ]
    return stages, star_import
