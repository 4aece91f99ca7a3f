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

from .notebook.pipeline import Pipeline


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()[:20]


def stage_fingerprints(pipeline: Pipeline, values: dict) -> dict[str, dict]:
    """``{stage: {"key", "code", "setup", "parameters", "upstream"}}``: the key and what went into it."""
    out: dict[str, dict] = {}
    for stage in pipeline.stages:  # notebook order: dependencies come first
        # Its own notebook's setup: an edit to an included notebook's setup re-runs only its stages.
        setup = _digest([pipeline.setup_source(i) for i in pipeline.setup_cells_of(stage)])
        o = stage.options
        code = _digest({
            "cells": [pipeline.cells[i].source for i in stage.cells if pipeline.cells[i].cell_type == "code"],
            "inputs": sorted(stage.inputs), "outputs": list(stage.outputs),
            "map": [o.map_var, o.map_chunks, o.map_as],
            **({"files": [sorted(stage.files_in), list(stage.files_out), stage.workdir and stage.workdir.to_json()]}
               if stage.files_in or stage.files_out or stage.workdir else {}),
        })
        parameters = {name: values.get(name) for name in stage.parameters}
        upstream = {name: out[name]["key"] for name in stage.depends_on if name in out}
        key = _digest({"code": code, "setup": setup, "parameters": parameters, "upstream": upstream})
        out[stage.name] = {"key": key, "code": code, "setup": setup, "parameters": parameters, "upstream": upstream}
    return out


def stage_keys(pipeline: Pipeline, values: dict) -> dict[str, str]:
    """``{stage: key}`` for a run of ``pipeline`` with parameter ``values``."""
    return {name: fp["key"] for name, fp in stage_fingerprints(pipeline, values).items()}


def why_it_runs(fingerprint: dict, earlier) -> str:
    """Why a stage runs again, compared with its record in an earlier run (or None)."""
    if earlier is None:
        return "no earlier run of this notebook has it"
    before = earlier.fingerprint or {}
    if earlier.status.value != "succeeded":
        return f"it did not succeed last time ({earlier.status.value})"
    if not before:
        return "the earlier run kept no fingerprint"
    if before.get("code") != fingerprint["code"]:
        return "its code changed"
    if before.get("setup") != fingerprint["setup"]:
        return "the setup code changed"
    changed = [f"{k} {before['parameters'].get(k)!r} → {v!r}" for k, v in fingerprint["parameters"].items()
               if before.get("parameters", {}).get(k) != v]
    if changed:
        return "parameter " + ", ".join(changed)
    ups = sorted(k for k, v in fingerprint["upstream"].items() if before.get("upstream", {}).get(k) != v)
    if ups:
        return "upstream stage " + ", ".join(ups) + " changed"
    return "the earlier outputs are not in the store"


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
