"""Fan-out for ``map:VAR`` stages: how a value splits into items, and how many there are.

``map:VAR`` runs the stage once per item of VAR (a list's elements, an array's rows, a
DataFrame's rows); ``map:VAR:CHUNKS`` splits VAR into CHUNKS contiguous parts instead (lists into
sub-lists, arrays along axis 0, DataFrames into row blocks). The stage's outputs become lists of
the per-item results, in item order.
"""

from __future__ import annotations

from .exceptions import PipelineError


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
