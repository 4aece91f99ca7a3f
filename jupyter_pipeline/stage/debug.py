"""Debug one stage of a run: a notebook that loads the stage's inputs from the run's store and holds its cells.

The notebook is made from the stage notebook the run stored (``stages/<stage>/input.ipynb``, written by
every target before the stage starts), so its cells are the stage's setup and code as they ran, whatever
the source notebook holds now. What the runner adds around them (activating the run, saving outputs,
logging metrics, joining a gang) is left out: the notebook runs in a normal kernel and writes nothing to
the run. Its first code cell sets the run's parameters and loads the inputs; when the stage has setup
cells, they run first in that cell's place, as in the stage (values may hold the setup's own classes,
which loading needs).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ..exceptions import PipelineError
from ..store.records import load_run, stage_key
from .notebook import RUN_PARAMETER

#: Generated cells kept in the debug notebook as they ran (the user's own, and those that shape the
#: kernel the code ran in); the others talk to the run and are left out.
KEPT = ("setup", "folder", "files-in", "run-file", "user")
#: The notebook metadata key that marks a debug notebook: ``{"run_id", "stage", "store"}``.
DEBUG_KEY = "jupyter_pipeline_debug"


def stage_inputs(nb) -> list[tuple[str, str]]:
    """``(variable, producer)`` of each input a stored stage notebook loads, from its ``inputs`` cell."""
    inputs = []
    for cell in nb.cells:
        if cell.get("metadata", {}).get("jupyter_pipeline", {}).get("kind") != "inputs":
            continue
        for node in ast.parse(cell.source).body:  # `name = _jp_io.load('name', 'producer', cell)`
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and len(node.value.args) >= 2:
                name, producer = (a.value for a in node.value.args[:2])
                inputs.append((name, producer))
    return inputs


def _parameter_names(nb) -> list[str]:
    for cell in nb.cells:
        if cell.get("metadata", {}).get("jupyter_pipeline", {}).get("kind") == "parameters":
            return [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name) and t.id != RUN_PARAMETER]
    return []


def stored_stage_notebook(store, run_id: str, stage: str):
    """The record of ``run_id`` and the stage notebook it stored for ``stage``; a one-paragraph error
    when the run has no such stage, or the stage never started."""
    record = load_run(store, run_id)
    if stage not in record.stages:
        raise PipelineError(f"run {run_id} has no stage '{stage}'; its stages: {', '.join(record.stages) or 'none'}")
    key = stage_key(run_id, stage, "input.ipynb")
    if not store.exists(key):
        raise PipelineError(f"stage '{stage}' of run {run_id} never started ({record.stages[stage].status.value}), so "
                            f"there is nothing to debug: its stage notebook is not in store {store.url}")
    return record, nbformat.reads(store.get_bytes(key).decode(), as_version=4)


def load_inputs(store, run_id: str, stage: str) -> dict:
    """The values ``stage`` of ``run_id`` received, by variable name, loaded from the run's store."""
    from ..exceptions import VariableNotLoadable
    from ..store.base import open_store
    from .io import load_entry
    from .values import load_failure_cause

    store = open_store(store)
    _, nb = stored_stage_notebook(store, run_id, stage)
    indexes: dict[str, dict] = {}
    values = {}
    for name, producer in stage_inputs(nb):
        if producer not in indexes:
            indexes[producer] = store.get_json(stage_key(run_id, producer, "outputs.json"))
        if name not in indexes[producer]:
            raise PipelineError(f"stage '{producer}' of run {run_id} did not save variable '{name}', which stage "
                                f"'{stage}' reads (did '{producer}' fail? `jupyter-pipeline runs {run_id}` says)")
        entry = indexes[producer][name]
        try:
            values[name] = load_entry(store, run_id, producer, entry)
        except PipelineError:
            raise  # the store's own error says what is wrong with it
        except Exception as exc:  # e.g. a setup class this kernel has not defined: say which and why
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            first = next((e for e in [entry, *entry.get("items", [])] if "saver" in e), entry)
            raise VariableNotLoadable(name, stage, producer, f"{type(exc).__name__}: {reason}",
                                      load_failure_cause(exc, first), producer_cell=entry.get("cell")) from None
    return values


def run_parameters(store, run_id: str, stage: str) -> dict:
    """The parameters ``stage`` of ``run_id`` ran with (those its notebook reads), by name."""
    record, nb = stored_stage_notebook(store, run_id, stage)
    return {name: record.parameters[name] for name in _parameter_names(nb) if name in record.parameters}


def debug_notebook(store, run_id: str, stage: str, item: int = 0) -> nbformat.NotebookNode:
    """The debug notebook of ``stage`` of ``run_id`` (``item``: which item of a ``map:`` stage)."""
    record, stored = stored_stage_notebook(store, run_id, stage)
    state = record.stages[stage]
    inputs = stage_inputs(stored)
    said = f", failed: {state.error}" if state.error else f", {state.status.value}"
    cells = [_debug_cell("header", cell_type="markdown", source=(
        f"# Debug stage `{stage}` of run `{run_id}`{said}\n\n"
        "The first code cell sets the run's parameters and loads the stage's inputs from the run's store "
        "(" + (", ".join(f"`{n}` from `{p}`" for n, p in inputs) or "none") + "); the cells after it are the "
        "stage's code as it ran. Change and re-run them freely: nothing here writes to the run."))]
    lines = ["from jupyter_pipeline.stage.debug import load_inputs", ""]
    lines += [f"{name} = {value!r}" for name, value in run_parameters(store, run_id, stage).items()]
    first = []
    if inputs:
        first.append(f"_jp_inputs = load_inputs({store.absolute_url()!r}, {run_id!r}, {stage!r})")
        first += [f"{name} = _jp_inputs[{name!r}]" for name, _ in inputs]
    for cell in stored.cells:
        meta = cell.get("metadata", {}).get("jupyter_pipeline", {})
        kind = meta.get("kind")
        if kind == "inputs" or (kind == "setup-done" and first):  # the inputs load where the stage loaded them
            cells.append(_debug_cell("inputs", "\n".join(first)))
            first = []
        elif kind == "map-item":
            cells.append(_debug_cell("map-item", _map_item_source(cell.source, item), item=item))
        elif kind in KEPT:
            if kind in ("folder", "files-in", "run-file") and "import jupyter_pipeline.stage.io" not in "".join(lines):
                lines.append("import jupyter_pipeline.stage.io as _jp_io")
            cells.append(_debug_cell(kind, cell.source, cell_type=cell.cell_type, origin=meta))
    if first:  # no setup and no inputs cell: nothing read it yet
        cells.insert(1, _debug_cell("inputs", "\n".join(first)))
    if any(c.metadata["jupyter_pipeline"]["kind"] == "map-item" for c in cells):
        lines.append("import jupyter_pipeline.stage.fanout as _jp_fanout")
    cells.insert(1, _debug_cell("parameters", "\n".join(lines).rstrip(), tags=["parameters"]))
    _merge_leading(cells)
    nb = new_notebook(cells=cells)
    nb.metadata.update({k: v for k, v in stored.metadata.items() if k in ("kernelspec", "language_info")})
    # Not under "jupyter_pipeline": that key holds the notebook's pipeline settings, and this is none.
    nb.metadata[DEBUG_KEY] = {"run_id": run_id, "stage": stage, "store": store.url}
    return nb


def _map_item_source(source: str, item: int) -> str:
    """``x = _jp_io.map_item(xs, chunks)`` (the run's item) as ``x = _jp_fanout.item(xs, ITEM, chunks)``."""
    node = ast.parse(source).body[0]
    target, (values, chunks) = ast.unparse(node.targets[0]), [ast.unparse(a) for a in node.value.args]
    return f"{target} = _jp_fanout.item({values}, {item}, {chunks})  # item {item} of the map"


def _merge_leading(cells: list) -> None:
    """Without setup cells, parameters and inputs are one first code cell."""
    if len(cells) > 2 and [c.metadata["jupyter_pipeline"]["kind"] for c in cells[1:3]] == ["parameters", "inputs"]:
        cells[1].source += "\n\n" + cells.pop(2).source


def _debug_cell(kind: str, source: str, *, cell_type: str = "code", origin: dict | None = None, tags=(), **meta):
    cell = (new_code_cell if cell_type == "code" else new_markdown_cell)(source)
    cell.metadata["jupyter_pipeline"] = {"kind": kind, **{k: v for k, v in (origin or {}).items() if k != "kind"},
                                         **meta}
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def default_path(notebook: str, stage: str) -> Path:
    """Where ``debug`` writes by default: next to the source notebook (or here, when that folder is gone)."""
    source = Path(notebook)
    folder = source.parent if source.parent.is_dir() else Path.cwd()
    return folder / f"{source.stem}-debug-{stage}.ipynb"


def write_debug_notebook(store, run_id: str, stage: str, path: str | Path | None = None, *,
                         item: int = 0) -> Path:
    """Write the debug notebook of ``stage`` of ``run_id`` to ``path`` (default: next to the source notebook,
    ``NAME-debug-STAGE.ipynb``, replaced when it is an earlier debug notebook of a stage of that name)."""
    from ..store.base import open_store

    store = open_store(store)
    nb = debug_notebook(store, run_id, stage, item)
    if path is None:
        path = default_path(load_run(store, run_id).notebook, stage)
        if path.exists() and not is_debug_notebook(path):
            raise PipelineError(f"{path} exists and is not a debug notebook; name another file with -o PATH")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1) + "\n")
    return path


def is_debug_notebook(path: Path) -> bool:
    """Whether ``path`` is a notebook ``debug`` wrote (which a new debug notebook may replace)."""
    try:
        return DEBUG_KEY in json.loads(path.read_text()).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        return False
