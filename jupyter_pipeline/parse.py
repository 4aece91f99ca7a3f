"""Notebook → :class:`Pipeline`: read with nbformat, interpret tags, group cells into stages,
bind each stage's free names to the stage that produces them, and collect every problem.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import nbformat

from . import analysis, tags
from .exceptions import NotebookReadError
from .pipeline import Cell, Parameter, Pipeline, Problem, Role, Stage, StageOptions
from .validate import find_cycles, stage_problems

SETTINGS_KEY = "jupyter_pipeline"


def read_notebook(path: str | os.PathLike) -> nbformat.NotebookNode:
    """Read a notebook file, turning every way it can fail into :class:`NotebookReadError`."""
    path = Path(path)
    if not path.exists():
        raise NotebookReadError(path, "no such file")
    if path.is_dir():
        raise NotebookReadError(path, "it is a directory")
    try:
        return nbformat.read(path, as_version=4)
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookReadError(path, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for non-notebooks
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NotebookReadError(path, f"not a Jupyter notebook ({reason[:200]})") from None


def load(path: str | os.PathLike) -> Pipeline:
    """Parse and validate the notebook at ``path``; problems are in ``Pipeline.problems``."""
    return from_notebook(read_notebook(path), str(path))


def pipeline_name(nb, path: str) -> str:
    name = (nb.metadata.get(SETTINGS_KEY) or {}).get("name") or Path(path).stem
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "pipeline"


def _parameters(cell_index: int, source: str, problems: list[Problem]) -> list[Parameter]:
    try:
        tree = ast.parse(analysis.to_python(source))
    except SyntaxError:
        return []  # reported by the syntax check
    out = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring or bare literal
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else getattr(stmt, "target", None)
        value = getattr(stmt, "value", None)
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(target, ast.Name) and value is not None:
            try:
                default = ast.literal_eval(value)
            except ValueError:
                pass
            else:
                out.append(Parameter(target.id, default, type(default).__name__, cell_index))
                continue
        problems.append(Problem(
            "error", "parameter-not-literal",
            f"the parameters cell may hold only `name = literal` lines (numbers, strings, booleans, "
            f"lists, dicts, None), so each parameter has a type; line {stmt.lineno} is "
            f"`{ast.get_source_segment(source, stmt) or ast.dump(stmt)[:60]}`. Move computed values to a stage.",
            cell=cell_index, line=stmt.lineno,
        ))
    return out


def from_notebook(nb, path: str = "<notebook>") -> Pipeline:
    """Build the :class:`Pipeline` of an in-memory notebook (``nbformat`` v4)."""
    settings = dict(nb.metadata.get(SETTINGS_KEY) or {})
    problems: list[Problem] = []
    cells: list[Cell] = []
    scans: dict[int, analysis.Scan] = {}
    order: list[str] = []  # stage names in order of first appearance
    members: dict[str, list[int]] = {}
    after: dict[str, list[str]] = {}
    options: dict[str, dict] = {}
    first_cell: dict[str, int] = {}
    setup_cells: list[int] = []
    parameters: list[Parameter] = []
    current: str | None = None
    skipped_defines: dict[str, int] = {}  # names bound only in `skip` cells, for a better message

    for index, raw in enumerate(nb.cells):
        cell_tags = tuple(raw.get("metadata", {}).get("tags", []) or ())
        spec, source = tags.read_cell(cell_tags, raw.source, raw.cell_type)
        for message in spec.problems:
            problems.append(Problem("error", "bad-tag", message, stage=spec.stage, cell=index))
        role, stage = spec.role, None
        if raw.cell_type != "code":
            # Markdown and raw cells travel with the stage they sit in, for readability.
            role = Role.CONTINUE if spec.role in (Role.STAGE, Role.CONTINUE, Role.METRICS) else spec.role
            stage = spec.stage or current if role == Role.CONTINUE else None
            if spec.stage:
                current = spec.stage
        elif spec.role in (Role.STAGE, Role.METRICS):
            stage = current = spec.stage
        elif spec.role == Role.CONTINUE:
            stage = current
            if stage is None and source.strip():
                problems.append(Problem(
                    "error", "orphan-cell",
                    f"cell {index + 1} belongs to no stage: it comes before the first `stage:` tag and is not "
                    "tagged `setup`, `parameters` or `skip`. Tag it, or move it below a stage.",
                    cell=index,
                ))
        if stage is not None and stage not in members:
            order.append(stage)
            members[stage], after[stage], options[stage] = [], [], {}
            first_cell[stage] = index
        if stage is not None:
            members[stage].append(index)
            after[stage].extend(a for a in spec.after if a not in after[stage])
            options[stage].update(spec.options)
        elif spec.after or spec.options:
            problems.append(Problem(
                "warning", "ignored-tags",
                f"tags {', '.join(t for t in cell_tags if ':' in t)} have no effect on a {role.value} cell",
                cell=index,
            ))

        code_scan = None
        if raw.cell_type == "code" and role == Role.SKIP:
            skipped_defines.update({n: index for n in analysis.scan(source).defines if n not in skipped_defines})
        elif raw.cell_type == "code":
            code_scan = scans[index] = analysis.scan(source)
            if code_scan.syntax_error:
                line, msg = code_scan.syntax_error
                line += 1 if spec.from_magic else 0
                problems.append(Problem("error", "syntax-error", f"syntax error on line {line}: {msg}",
                                        stage=stage, cell=index, line=line))
            if role == Role.SETUP:
                setup_cells.append(index)
            elif role == Role.PARAMETERS:
                parameters.extend(_parameters(index, source, problems))
        cells.append(Cell(
            index=index, cell_type=raw.cell_type, source=source, role=role, stage=stage, tags=cell_tags,
            defines=frozenset(code_scan.defines) if code_scan else frozenset(),
            uses=frozenset(code_scan.uses) if code_scan else frozenset(),
        ))

    default_options = StageOptions(**{k: v for k, v in settings.items() if k in ("image", "cpu", "memory", "retries", "timeout")})
    setup_scan = analysis.combine([(i, scans[i]) for i in setup_cells])
    param_names = {p.name for p in parameters}
    setup_params = sorted(setup_scan.uses & param_names)
    provided = setup_scan.defines | param_names | analysis.KERNEL_NAMES
    star_import = setup_scan.star_import or any(s.star_import for s in scans.values())

    combined = {
        name: analysis.combine([(i, scans[i]) for i in members[name] if i in scans])
        for name in order
    }
    stages: list[Stage] = []
    outputs: dict[str, set[str]] = {name: set() for name in order}
    position = {name: i for i, name in enumerate(order)}
    latest: dict[str, str] = {}  # variable -> the nearest stage above that binds it
    for k, name in enumerate(order):
        info = combined[name]
        map_var, map_as = options[name].get("map_var"), options[name].get("map_as", "item")
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
                hint = combined[producer].unsavable.get(var)
                if hint:
                    problems.append(Problem(
                        "error", "unsavable-variable",
                        f"variable '{var}' holds {hint} (stage '{producer}') and stage '{name}' uses it, but "
                        f"{hint} cannot be passed between stages; create it in stage '{name}' or in a `setup` cell",
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
            elif not star_import:
                skipped = skipped_defines.get(var)
                hint = (f"; cell {skipped + 1} defines it but is tagged `skip`, so it is not part of the pipeline"
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
        stage_after = tuple(after[name])
        known_after = [a for a in stage_after if a in members and a != name]
        depends = sorted({p for _, p in inputs} | set(known_after), key=position.get)
        latest.update(dict.fromkeys(info.defines, name))
        stages.append(Stage(
            name=name,
            cells=tuple(members[name]),
            after=stage_after,
            options=default_options.merged(StageOptions(**options[name])),
            defines=frozenset(info.defines),
            uses=frozenset(info.uses),
            inputs=tuple(inputs),
            parameters=tuple(sorted((info.uses & param_names) | set(setup_params))),
            depends_on=tuple(depends),
            metrics_cell=name == "pipeline-metrics",
        ))
    stages = [
        Stage(**{**{f: getattr(s, f) for f in s.__dataclass_fields__}, "outputs": tuple(sorted(outputs[s.name]))})
        for s in stages
    ]
    problems.extend(stage_problems(stages, cells, first_cell))
    problems.extend(find_cycles(stages, first_cell))
    kernel = (nb.metadata.get("kernelspec") or {}).get("name") or "python3"
    return Pipeline(
        name=pipeline_name(nb, path),
        path=path,
        cells=tuple(cells),
        stages=tuple(stages),
        parameters=tuple(parameters),
        setup_cells=tuple(setup_cells),
        settings=settings,
        problems=tuple(sorted(problems, key=lambda p: (p.cell if p.cell is not None else -1, p.code))),
        star_import=star_import,
        kernel_name=settings.get("kernel", kernel),
    )
