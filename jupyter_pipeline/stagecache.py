"""Content keys of stages, and a cache that lets runs share a stage whose key is the same.

A stage's key hashes what determines its outputs: its own code, the setup code, the values of
the parameters it uses, its execution options that change results (``map:``), and the keys of
the stages it depends on. Two runs of a sweep that agree on all of that compute the stage once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field

from .pipeline import Pipeline


def stage_keys(pipeline: Pipeline, values: dict) -> dict[str, str]:
    """``{stage: key}`` for a run of ``pipeline`` with parameter ``values``."""
    setup = [pipeline.cells[i].source for i in pipeline.setup_cells]
    keys: dict[str, str] = {}
    for stage in pipeline.stages:  # notebook order: dependencies come first
        o = stage.options
        material = {
            "code": [pipeline.cells[i].source for i in stage.cells if pipeline.cells[i].cell_type == "code"],
            "setup": setup,
            "parameters": {name: values.get(name) for name in stage.parameters},
            "inputs": sorted(stage.inputs),
            "outputs": list(stage.outputs),
            "map": [o.map_var, o.map_chunks, o.map_as],
            "upstream": {name: keys.get(name) for name in stage.depends_on},
        }
        blob = json.dumps(material, sort_keys=True, default=repr).encode()
        keys[stage.name] = hashlib.sha256(blob).hexdigest()[:20]
    return keys


@dataclass
class _Entry:
    run_id: str
    stage: str
    done: threading.Event = field(default_factory=threading.Event)
    result: dict | None = None


class StageCache:
    """Thread-safe: the first run to claim a key computes it; the others wait and share it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def claim(self, key: str, run_id: str, stage: str) -> tuple[bool, _Entry]:
        """``(True, entry)`` if the caller must compute ``key``; else ``(False, owner's entry)``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(run_id, stage)
                return True, entry
            return False, entry

    def publish(self, entry: _Entry, result: dict) -> None:
        entry.result = result
        entry.done.set()

    def __len__(self) -> int:
        return len(self._entries)
