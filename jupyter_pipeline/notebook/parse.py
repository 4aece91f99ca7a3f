"""Notebook → :class:`Pipeline`: read with nbformat, interpret tags, group cells into stages,
bind each stage's free names to the stage that produces them (:mod:`.binding`), and collect every
problem.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import nbformat

from . import analysis, compose
from .binding import Grouped, bind
from .readingorder import kale_reading_order
from .parameters import json_problem
from ..exceptions import MalformedNotebook, NotebookReadError
from .pipeline import Cell, Parameter, Pipeline, Problem, Role, StageOptions
from .metadata import notebook_settings, stage_defaults
from .validate import find_cycles, reopened_stages, stage_problems, workers_problems


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
    except Exception as exc:
        reason = _shape_problem(path) or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise MalformedNotebook(path, f"not a Jupyter notebook ({reason[:200]})") from None


def _shape_problem(path: Path) -> str | None:
    """What is wrong with a notebook file nbformat refused, in its own terms (nbformat's words are
    about its internals: "'list' object has no attribute 'get'"), or None to use nbformat's."""
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError, OSError):
        return None
    if not isinstance(data, dict):
        return f"it holds a JSON {_JSON_KIND.get(type(data), 'value')} where a notebook's object belongs"
    if not isinstance(data.get("nbformat"), int):
        return f'its "nbformat" is {json.dumps(data.get("nbformat"))[:20]}; a notebook says "nbformat": 4, a number'
    cells = data.get("cells")
    if not isinstance(cells, list):
        return '"cells" is not a list'
    bad = next((i for i, cell in enumerate(cells) if not isinstance(cell, dict)), None)
    return None if bad is None else f"its cell {bad + 1} is a JSON {_JSON_KIND.get(type(cells[bad]), 'value')}, not an object"


_JSON_KIND = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def load(path: str | os.PathLike) -> Pipeline:
    """Parse and validate the notebook (or Elyra ``.pipeline`` file) at ``path``; problems are in
    ``Pipeline.problems``."""
    from .elyra import is_pipeline_file, load_pipeline_file

    if is_pipeline_file(path):
        return load_pipeline_file(path)
    return from_notebook(read_notebook(path), str(path))


def pipeline_name(settings: dict, path: str) -> str:
    name = settings.get("name") or Path(path).stem
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "pipeline"


def whole_notebook_stage(path: str) -> str:
    """The stage name of a notebook without stage tags: its file name, made a valid stage name."""
    stem = "" if path.startswith("<") else Path(path).stem.lower()
    name = re.sub(r"^[^a-z]+", "", re.sub(r"[^a-z0-9_-]+", "-", stem))
    return name[:63].rstrip("-_") or "notebook"


def _cell_parts(raw, index: int, problems: list[Problem]) -> tuple[str, str, tuple]:
    """``(cell_type, source, tags)`` of a raw cell; schema errors become problems, never exceptions."""
    def invalid(what: str) -> None:
        problems.append(Problem("error", "invalid-cell", f"cell {index + 1} {what}", cell=index))

    if not isinstance(raw, dict):
        invalid("is not a notebook cell (an object with `cell_type`, `metadata` and `source`); it is left out")
        return "raw", "", ()
    cell_type = raw.get("cell_type")
    if cell_type not in ("code", "markdown", "raw"):
        invalid(f"has cell_type {cell_type!r}; a cell is \"code\", \"markdown\" or \"raw\", so it is left out")
        cell_type = "raw"
    source = raw.get("source")
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        source = "".join(source)
    elif not isinstance(source, str):
        invalid("has no `source` text (a string or a list of strings); it is read as empty" if source is None
                else f"has a `source` that is not text ({type(source).__name__}); it is read as empty")
        source = ""
    metadata = raw.get("metadata", {})
    if not isinstance(metadata, dict):
        invalid("has `metadata` that is not an object; its tags are ignored")
        metadata = {}
    cell_tags = metadata.get("tags") or []
    if not isinstance(cell_tags, list):
        example = f"[{json.dumps(cell_tags)}]" if isinstance(cell_tags, str) else '["stage:train"]'
        invalid(f"has `metadata.tags` {json.dumps(cell_tags, default=str)[:60]}, which is not a list of strings; "
                f"write it as a list, like {example}; its tags are ignored")
        cell_tags = []
    return cell_type, source, tuple(cell_tags)


def _parameters(cell_index: int, source: str, problems: list[Problem]) -> list[Parameter]:
    try:
        tree = ast.parse(analysis.to_python(source))
    except SyntaxError:
        return []  # reported by the syntax check
    out = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring or bare literal
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue  # papermill's notebooks import here: run as setup (see Pipeline.setup_source)
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else getattr(stmt, "target", None)
        value = getattr(stmt, "value", None)
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(target, ast.Name) and value is not None:
            try:
                default = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
                # TypeError: a literal that cannot be built, like {[1]: 2} (a list as a dict key).
                reason = f" ({exc})" if isinstance(exc, TypeError) else ""
            else:
                if (unfit := json_problem(default)) is None:
                    out.append(Parameter(target.id, default, type(default).__name__, cell_index))
                else:  # run records, the REST API and Kubeflow carry parameters as JSON
                    problems.append(Problem(
                        "error", "parameter-not-json",
                        f"parameter '{target.id}' cannot be a pipeline parameter: {unfit}.",
                        cell=cell_index, line=stmt.lineno))
                continue
        else:
            reason = ""
        problems.append(Problem(
            "error", "parameter-not-literal",
            f"the parameters cell may hold only `name = literal` lines (numbers, strings, booleans, "
            f"lists, dicts, None), so each parameter has a type; line {stmt.lineno} is "
            f"`{ast.get_source_segment(source, stmt) or ast.dump(stmt)[:60]}`{reason}. Move computed values to a stage "
            "(imports may stay: they run at the start of every stage)",
            cell=cell_index, line=stmt.lineno,
        ))
    return out


def from_notebook(nb, path: str = "<notebook>", folder: str | os.PathLike | None = None) -> Pipeline:
    """Build the :class:`Pipeline` of an in-memory notebook (``nbformat`` v4); ``folder`` is where the
    notebook lives when ``path`` does not say (its ``notebook:`` references are relative to it)."""
    problems: list[Problem] = []
    metadata = nb.get("metadata")
    if not isinstance(metadata, dict):
        problems.append(Problem("error", "bad-setting", "the notebook's `metadata` is not an object; it is ignored"))
        metadata = {}
    settings, setting_problems = notebook_settings(metadata)
    problems.extend(setting_problems)
    cells: list[Cell] = []
    scans: dict[int, analysis.Scan] = {}
    order: list[str] = []  # stage names in order of first appearance
    members: dict[str, list[int]] = {}
    after: dict[str, list[str]] = {}
    options: dict[str, StageOptions] = {}
    first_cell: dict[str, int] = {}
    setup_cells: list[int] = []
    parameters: list[Parameter] = []
    skipped_defines: dict[str, int] = {}  # names bound only in `skip` cells, for a better message
    left_out: list[int] = []  # code cells above the first stage that are not setup/parameters/skip
    left_out_defines: dict[str, int] = {}
    condition_cells: dict[str, int] = {}  # stage -> the cell of its first `if:` tag

    # Referenced notebooks' cells stand in place of their `notebook:` cells (see compose).
    expanded = compose.expand(nb, path, _cell_parts, folder)
    read = [(e.cell_type, e.tags, e.spec, e.source) for e in expanded.entries]
    # A notebook without stage tags is one stage: every untagged cell joins it.
    current: str | None = expanded.first_stage(0)
    if current:
        around = expanded.whole[0]
        runs = (f"the whole notebook runs as one stage, '{current}'" if len(around) == 1 else
                f"its code runs as stages {', '.join(repr(s) for s in around)}, around its `notebook:` cells")
        problems.append(Problem(
            "info", "whole-notebook",
            f"no cell is tagged as a stage, so {runs} (a cell tagged "
            "`parameters` gives the pipeline's parameters); to split it into stages, tag the first cell of each "
            "step `stage:NAME` (or `step:NAME`, or start it with `%%stage NAME`)",
            stage=current,
        ))

    # Markdown right above a stage's first cell (its heading) introduces that stage, so it travels with it.
    introduces: list[str | None] = [None] * len(read)
    upcoming = None
    for index in range(len(read) - 1, -1, -1):
        cell_type, _, spec, _ = read[index]
        if cell_type == "code":
            upcoming = spec.stage if spec.role in (Role.STAGE, Role.METRICS) else None
        else:
            introduces[index] = upcoming
    introducing: list[int] = []  # such cells, waiting for the stage's first code cell

    outer: list[tuple[str | None, int]] = []  # (current stage, inclusion) of the notebooks including this cell
    held: list[int] = []  # untagged code after a `notebook:` cell, held for the next stage (as Kale does)
    holding: int | None = None  # the inclusion whose `notebook:` cell the held code follows
    found_parameters: list[tuple[int, Parameter]] = []  # (depth of its notebook, parameter)
    after_origin: dict[tuple[str, str], tuple[int, str]] = {}  # (stage, stage it runs after) -> (cell, tag)
    kale_setup = False  # below a Kale `imports`/`functions` cell: untagged code joins the setup, as in Kale
    for index, (cell_type, cell_tags, spec, source) in enumerate(read):
        entry = expanded.entries[index]
        if held and entry.instance == holding and spec.role == Role.INCLUDE:
            problems.append(compose.unheld(held, expanded))
        for code, message in spec.problems:
            problems.append(Problem("error", code, message, stage=spec.stage, cell=index))
        role, stage, heading_of = spec.role, None, None
        if cell_type == "code":
            if role == Role.CONTINUE and kale_setup and not spec.stage:
                role = Role.SETUP
            kale_setup = spec.joins_setup or (kale_setup and role in (Role.SETUP, Role.SKIP))
        if cell_type != "code":
            # Markdown and raw cells travel with the stage they sit in, for readability.
            role = Role.CONTINUE if spec.role in (Role.STAGE, Role.CONTINUE, Role.METRICS) else spec.role
            if role == Role.CONTINUE and not spec.stage and introduces[index]:
                heading_of = introduces[index]
                introducing.append(index)
            else:
                stage = spec.stage or current if role == Role.CONTINUE else None
            if spec.stage:
                current = spec.stage
        elif spec.role in (Role.STAGE, Role.METRICS):
            stage = current = spec.stage
            holding = None
        elif role == Role.CONTINUE:
            stage = current
            if stage is None and source.strip() and holding is not None:
                held.append(index)
            elif stage is None and source.strip():
                left_out.append(index)
                role = Role.SKIP
        if stage is not None and stage not in members:
            order.append(stage)
            members[stage], after[stage], options[stage] = [], [], StageOptions()
            first_cell[stage] = index
        if stage is not None:
            if cell_type == "code":
                members[stage].extend(introducing)
                introducing.clear()
            if held and role == Role.STAGE:
                members[stage].extend(held)
                for i in held:
                    cells[i] = replace(cells[i], stage=stage)
                held.clear()
            members[stage].append(index)
            after[stage].extend(a for a in spec.after if a not in after[stage])
            for target in spec.after:
                after_origin.setdefault((stage, target), (index, spec.after_tags.get(target, f"after:{target}")))
            options[stage] = options[stage].merged(StageOptions(**spec.options))
            if spec.options.get("condition"):
                condition_cells.setdefault(stage, index)
        elif spec.after or spec.options:
            problems.append(Problem(
                "warning", "ignored-tags",
                f"tags {', '.join(t for t in cell_tags if ':' in t)} have no effect on a {role.value} cell",
                cell=index,
            ))

        code_scan = None
        if role == Role.INCLUDE:
            pass  # a reference: its notebook's cells follow
        elif cell_type == "code" and role == Role.SKIP:
            defines = skipped_defines if index not in left_out else left_out_defines
            defines.update({n: index for n in analysis.scan(source).defines if n not in defines})
        elif cell_type == "code":
            code_scan = scans[index] = analysis.scan(source)
            if code_scan.syntax_error:
                line, msg = code_scan.syntax_error
                line += 1 if spec.from_magic else 0
                problems.append(Problem("error", "syntax-error", f"syntax error on line {line}: {msg}",
                                        stage=stage, cell=index, line=line))
            if role == Role.SETUP:
                setup_cells.append(index)
            elif role == Role.PARAMETERS:
                found_parameters.extend((expanded.depth(entry.instance), p) for p in _parameters(index, source, problems))
                if analysis.imports_only(source):
                    setup_cells.append(index)  # its imports run at the start of every stage
        cells.append(Cell(
            index=index, cell_type=cell_type, source=source, role=role, stage=stage or heading_of, tags=cell_tags,
            defines=frozenset(code_scan.defines) if code_scan else frozenset(),
            uses=frozenset(code_scan.uses) if code_scan else frozenset(),
            notebook=entry.notebook, source_index=entry.index,
        ))
        if role == Role.INCLUDE:  # the included notebook's cells come next
            outer.append((current, entry.instance))
            current = expanded.first_stage(spec.included)
        for _ in range(entry.closes):  # back in the including notebook, below its `notebook:` cell
            if holding is not None and held:
                problems.append(compose.unheld(held, expanded))
            previous, holding = outer.pop()
            current = expanded.stage_after(holding, previous)
            if current is not None:
                holding = None  # a notebook without stage tags: its next stage begins
            # else: untagged code below is held for the next stage-tagged cell
    if held:
        problems.append(compose.unheld(held, expanded))
    parameters = compose.winning_parameters(found_parameters, expanded, problems)
    for group in compose.by_notebook(left_out, expanded):
        numbers = [expanded.entries[i].index for i in group]
        problems.append(Problem(
            "warning", "orphan-cell",
            f"{_cells_phrase(numbers)} before the first stage and {'is' if len(group) == 1 else 'are'} not "
            "tagged `setup`, `parameters` or `skip`, so the pipeline leaves "
            f"{'it' if len(group) == 1 else 'them'} out (as Kale does). Tag a cell `setup` if every stage "
            "needs it, `skip` to keep it out without this warning, or move it below a stage.",
            cell=group[0],
        ))

    default_options = stage_defaults(settings, problems)
    instance_of = {name: expanded.entries[first_cell[name]].instance for name in order}
    compose.apply_notebook_defaults(options, instance_of, expanded)
    label = expanded.cell_label
    grouped = Grouped(order=order, members=members, after=after, options=options, first_cell=first_cell,
                      scans=scans, setup_cells=setup_cells, parameters={p.name for p in parameters},
                      parameter_cell_names={n for c in cells if c.role == Role.PARAMETERS for n in c.defines},
                      skipped_defines=skipped_defines, left_out_defines=left_out_defines,
                      parameter_values={p.name: p.default for p in parameters}, condition_cells=condition_cells,
                      label=label, notebook={name: expanded.entries[first_cell[name]].notebook for name in order},
                      setup_for={name: compose.own_setup(setup_cells, expanded, instance_of[name]) for name in order},
                      metrics={e.spec.stage for e in expanded.entries if e.spec.role == Role.METRICS})
    stages, star_import = bind(grouped, default_options, problems)
    stages = kale_reading_order(stages, expanded, instance_of)
    problems.extend(stage_problems(stages, cells, first_cell, after_origin))
    problems.extend(workers_problems(stages, cells, setup_cells, first_cell, settings.get("volumes") or []))
    problems.extend(reopened_stages(stages, cells, first_cell, label))
    problems.extend(find_cycles(stages, first_cell))
    kernelspec = metadata.get("kernelspec")
    kernel = (kernelspec.get("name") if isinstance(kernelspec, dict) else None) or "python3"
    return Pipeline(
        name=pipeline_name(settings, path),
        path=path,
        cells=tuple(cells),
        stages=tuple(stages),
        parameters=tuple(parameters),
        setup_cells=tuple(setup_cells),
        settings=compose.merged_settings(settings, expanded),
        problems=compose.in_notebooks(problems, expanded),
        notebooks=tuple(expanded.notebooks),
        star_import=star_import,
        kernel_name=settings.get("kernel", kernel),
    )


def _cells_phrase(indices: list[int]) -> str:
    """"cell 4 comes" / "cells 4, 5 and 6 come" (1-based, as people count cells)."""
    numbers = [str(i + 1) for i in indices]
    if len(numbers) == 1:
        return f"cell {numbers[0]} comes"
    return f"cells {', '.join(numbers[:-1])} and {numbers[-1]} come"
