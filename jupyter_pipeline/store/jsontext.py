"""Strict JSON for whatever the project writes for others to read: run records and every other JSON
object in a store, REST response bodies and the CLI's ``--json`` output.

Python's ``json`` writes NaN and infinities as the bare words ``NaN`` and ``Infinity``, which are
not JSON: a browser's ``JSON.parse`` refuses the whole document (and with it a notebook's Runs
panel). Parameters refuse such values up front (:func:`jupyter_pipeline.notebook.parameters.json_problem`);
whatever non-finite number still reaches a writer (a metric, a value some stage reported) is
written as the string Python spells it (``"nan"``, ``"inf"``, ``"-inf"``), as ``log_metric`` does.
"""

from __future__ import annotations

import json
import math


def finite(value):
    """``value`` with every non-finite float (at any depth) replaced by its name as a string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value, **kwargs) -> str:
    """``json.dumps`` that always writes strict JSON (anything else JSON has no type for: its ``str``)."""
    return json.dumps(finite(value), allow_nan=False, default=str, **kwargs)


def dump(value, stream, **kwargs) -> None:
    """:func:`dumps` into a text stream."""
    stream.write(dumps(value, **kwargs))
