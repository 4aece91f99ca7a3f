"""Fan-out for ``map:VAR`` stages: how a value splits into items, and how many there are.

``map:VAR`` runs the stage once per item of VAR (a list's elements, an array's rows, a
DataFrame's rows); ``map:VAR:CHUNKS`` splits VAR into CHUNKS contiguous parts instead (lists into
sub-lists, arrays along axis 0, DataFrames into row blocks). The stage's outputs become lists of
the per-item results, in item order.

Stage kernels and Kubeflow stage tasks import this module (``item``, ``map_count``, ``gather``);
the local runner's scheduling of items is in :mod:`jupyter_pipeline.local.mapstages`.
"""

from __future__ import annotations

from ..exceptions import PipelineError
from ..store.records import stage_key


def item_count(length: int, chunks: int | None) -> int:
    """How many runs a map stage makes over a value of ``length`` elements."""
    return min(chunks, length) if chunks else length


def _bounds(length: int, parts: int) -> list[tuple[int, int]]:
    size, extra = divmod(length, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def _is_dataframe(value) -> bool:
    return type(value).__module__.split(".")[0] == "pandas" and hasattr(value, "iloc")


def item(value, index: int, chunks: int | None):
    """Item ``index`` of ``value`` as ``map:VAR[:CHUNKS]`` defines it (no copy of the other items)."""
    try:
        length = len(value)
    except TypeError:
        raise PipelineError(f"cannot map over a value of type {type(value).__name__}: it has no length") from None
    count = item_count(length, chunks)
    if not 0 <= index < count:
        raise PipelineError(f"item {index} is out of range: the value has {count} item(s)")
    if chunks:
        start, stop = _bounds(length, count)[index]
        if _is_dataframe(value):
            return value.iloc[start:stop]
        return value[start:stop]
    if _is_dataframe(value):
        return value.iloc[index]
    if isinstance(value, dict):
        return list(value.items())[index]
    return value[index]


def map_count(store, run_id: str, stage: str, var: str, producer: str | None, chunks: int | None,
              parameters: dict) -> int:
    """How many items the ``map:VAR[:CHUNKS]`` stage ``stage`` has in run ``run_id``: from the value of
    parameter VAR, or (``producer`` given) from the ``length`` its producer recorded in its output index."""
    if producer is None:
        value = parameters.get(var)
        try:
            length = len(value)
        except TypeError:
            raise PipelineError(f"`map:{var}` in stage '{stage}': parameter {var} = {value!r} has no items") from None
    else:
        entry = store.get_json(stage_key(run_id, producer, "outputs.json")).get(var, {})
        length = len(entry["items"]) if "items" in entry else entry.get("length")
        if length is None:
            raise PipelineError(
                f"`map:{var}` in stage '{stage}': '{var}' from stage '{producer}' is a "
                f"{entry.get('type', 'value')}, which has no length to map over"
            )
    return item_count(length, chunks)


def gather(store, run_id: str, stage: str, outputs, count: int) -> None:
    """Fan-in: the stage's output index lists each output variable's per-item entries, in item order."""
    index: dict = {name: {"items": []} for name in outputs}
    for i in range(count):
        item_index = store.get_json(stage_key(run_id, stage, "outputs.json", i)) if outputs else {}
        for name in outputs:
            index[name]["items"].append({**item_index[name], "prefix": f"items/{i}/vars"})
    for entry in index.values():
        entry.update(type="list", saver="items", length=count)
    store.put_json(stage_key(run_id, stage, "outputs.json"), index)


def mean_metrics(items: list[dict]) -> dict:
    """A map stage's metrics: the mean over its items of each numeric metric."""
    values: dict[str, list[float]] = {}
    for it in items:
        for name, value in (it.get("metrics") or {}).items():
            if isinstance(value, (int, float)):
                values.setdefault(name, []).append(value)
    return {name: sum(v) / len(v) for name, v in values.items()}
