"""Earlier attempts of a resumed run's stages: kept, not overwritten.

``resume`` runs a stage again under the same keys (``stages/<stage>/output.ipynb``, its error in the
record). Before it does, :func:`keep` copies the executed notebook of each stage about to run again
to ``stages/<stage>/attempts/<n>/output.ipynb`` and adds an ``attempt`` event to the record's
``history`` with that attempt's status, error, cell and times, so every attempt can still be read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .records import now_iso, stage_key

if TYPE_CHECKING:
    from .base import Store
    from .records import RunRecord


def keep(store: Store, record: RunRecord, rerun: list[str]) -> None:
    """Keep what the stages in ``rerun`` did so far (call before the record is reopened)."""
    earlier = [e for e in record.history if e.get("event") == "attempt"]
    for name in rerun:
        rec = record.stages.get(name)
        if rec is None or not (rec.started_at or rec.error):
            continue  # never ran: nothing to keep
        number = 1 + sum(1 for e in earlier if e.get("stage") == name)
        entry = {"event": "attempt", "at": now_iso(), "stage": name, "attempt": number, "status": rec.status.value,
                 "error": rec.error, "error_cell": rec.error_cell, "started_at": rec.started_at,
                 "finished_at": rec.finished_at, "output_notebook": None}
        source = stage_key(record.run_id, name, "output.ipynb")
        if store.exists(source):
            kept = stage_key(record.run_id, name, f"attempts/{number}/output.ipynb")
            with store.reading(source) as path:
                store.put_file(kept, path)
            entry["output_notebook"] = store.uri(kept)
        record.history.append(entry)
