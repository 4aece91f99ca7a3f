"""What a generated stage notebook calls in its kernel: activate the run, load inputs, save outputs.

Kept import-light: a stage kernel imports this module first, and its start-up time is part of
every stage's overhead.
"""

from __future__ import annotations

from . import context
from ..store.records import stage_key
from ..startup import default_keras_backend

default_keras_backend()  # stage kernels: `import keras` works on a fresh install (JAX backend)

_indexes: dict[tuple[str, str], dict] = {}
#: A folder the stage's process removes when the stage ends, if it gave one (see ``workfolder``).
scratch: list[str] = []
_home: list[str] = []  # the folder the kernel started in: the root notebook's (or the unpacked files')


def activate(run: dict) -> None:
    """Called by the first generated cell with ``{"store", "run_id", "stage", "item"?, "gang"?, "scratch"?}``."""
    context.activate(run["store"], run["run_id"], run["stage"], run.get("item"), run.get("gang"))
    _indexes.clear()
    scratch[:] = [run["scratch"]] if run.get("scratch") else []


def enter_folder(folder: str) -> None:
    """Make ``folder`` (relative to the root notebook's folder) the working directory: the stages of an
    included notebook run in its folder. A kernel running several stages keeps its first folder as home."""
    import os

    if not _home:
        _home.append(os.getcwd())
    target = os.path.join(_home[0], folder)
    os.makedirs(target, exist_ok=True)  # on a pod, a folder none of the travelling files is in
    os.chdir(target)


def _index(producer: str) -> dict:
    ctx = context.current()
    key = (ctx.run_id, producer)
    if key not in _indexes:
        _indexes[key] = ctx.store.get_json(stage_key(ctx.run_id, producer, "outputs.json"))
    return _indexes[key]


def load_entry(store, run_id: str, producer: str, entry: dict):
    """Load one output index entry; a ``map:`` stage's entry gives the list of its items' values."""
    from .values import load_value

    run_id = entry.get("run_id", run_id)  # a stage shared with another run of a sweep
    if "items" in entry:
        return [load_entry(store, run_id, producer, e) for e in entry["items"]]
    return load_value(store, stage_key(run_id, producer, entry.get("prefix", "vars")), entry)


def load(name: str, producer: str, cell: int | None = None):
    """The value of ``name`` as stage ``producer`` left it; ``cell`` (1-based) is where this stage first reads it.

    A value that does not load raises :class:`VariableNotLoadable`: the variable, the stage and cell that
    made it, and the likely cause (a class or library this kernel lacks, another library version).
    """
    from ..exceptions import StoreError, VariableNotLoadable
    from .values import load_failure_cause

    ctx = context.current()
    entry = _index(producer).get(name)
    if entry is None:
        raise RuntimeError(f"stage '{producer}' did not save variable '{name}' that stage '{ctx.stage}' needs")
    try:
        return load_entry(ctx.store, ctx.run_id, producer, entry)
    except StoreError:
        raise  # the store's own error says what is wrong with it
    except Exception as exc:
        text = str(exc).rpartition("Exception encountered: ")[2]  # Keras puts its cause after the whole config
        reason = (text.strip().splitlines() or [""])[0][:300] or type(exc).__name__
        first = next((e for e in [entry, *entry.get("items", [])] if "saver" in e), entry)
        raise VariableNotLoadable(name, ctx.stage, producer, f"{type(exc).__name__}: {reason}",
                                  load_failure_cause(exc, first), cell=cell, producer_cell=entry.get("cell")) from None


def map_item(value, chunks: int | None = None):
    """This run's item of ``value`` in a ``map:`` stage."""
    from .fanout import item

    return item(value, context.current().item, chunks)


def setup_done(namespace: dict) -> None:
    """Called after the setup cells: what they defined travels by reference, since every stage has it."""
    from .values import remember_setup

    remember_setup(namespace)


def save_outputs(names: list[str], namespace: dict, cells: dict[str, int] | None = None,
                 scalars: list[str] = ()) -> None:
    """Save each variable later stages need, then publish the stage's output index.

    ``cells`` maps a variable to the 1-based source cell that last assigns it (for errors).
    ``scalars`` are the variables a later stage's ``if:`` condition reads: their entries also hold
    the plain value (``"scalar"``), which the runner (and a Kubeflow task's outputs) read without
    unpickling anything.
    """
    from ..exceptions import PipelineError
    from .values import save_value

    ctx = context.current()
    if ctx.rank:
        return  # a `workers:` stage's outputs are rank 0's values
    missing = [n for n in names if n not in namespace]
    if missing:
        raise PipelineError(
            f"stage '{ctx.stage}' did not define {', '.join(repr(n) for n in missing)}, which later stages use "
            "(was the assignment inside a branch that did not run?)"
        )
    index = {}
    for name in names:
        index[name] = save_value(name, namespace[name], ctx.store, ctx.key("vars"), ctx.stage,
                                 (cells or {}).get(name))
    for name in scalars:
        index[name]["scalar"] = _condition_scalar(name, namespace[name], ctx.stage, (cells or {}).get(name))
    ctx.store.put_json(ctx.key("outputs.json"), index)


def _condition_scalar(name: str, value, stage: str, cell: int | None):
    """``value`` as a plain number, string or boolean, or a one-paragraph error saying why a condition cannot read it."""
    import math

    from ..exceptions import PipelineError
    from ..notebook.condition import scalar

    plain = scalar(value)
    if plain is None or (isinstance(plain, float) and not math.isfinite(plain)):
        where = f" (cell {cell})" if cell else ""
        raise PipelineError(
            f"variable '{name}' of stage '{stage}'{where} is read by a later stage's `if:` condition, which compares "
            f"numbers, strings and booleans, but it holds {type(value).__name__} {str(value)[:60]!r}; assign a "
            "number, string or boolean to it (float(...), str(...), bool(...))")
    return plain


def join_gang() -> None:
    """First cell of a ``workers:`` stage: wait until every replica is up (see ``distributed``)."""
    from .replica import join

    join()


def leave_gang() -> None:
    """After a ``workers:`` stage's code: let rank 0 save its values without the other replicas."""
    from .replica import leave

    leave()


def end_gang() -> None:
    """Last cell of a ``workers:`` stage: every replica leaves JAX's distributed runtime together."""
    from .replica import end

    end()


def log_metrics_of(names: list[str], namespace: dict) -> None:
    """Kale's ``pipeline-metrics`` cell: log each named numeric variable as a metric."""
    for name in names:
        context.log_metric(name, namespace[name])


def enter_workfolder(spec: dict, parameters: dict | None = None) -> str:
    """A stage with a working folder of its own: make it, fill it and move into it (see ``workfolder``)."""
    from .workfolder import enter

    return enter(spec, parameters)


def save_files(patterns: list[str]) -> list[str]:
    """Pass the working folder's files matching ``patterns`` on to later stages, through the store."""
    from .workfolder import save_files as save

    return save(patterns)


def run_file(kind: str, path: str) -> None:
    """Run a script of the working folder as Elyra does: ``python FILE`` or ``Rscript FILE``."""
    from .workfolder import run_file as run

    run(kind, path)
