"""Writes a store did not take, kept on this machine until it takes them again.

When a store stops taking writes mid-run (a read-only remount, a full disk, a bucket that refuses),
what a stage executed must not be lost with it: the executed notebook of a stage, and the run's
final record, are kept here instead, in a folder per store under this user's cache
(``$XDG_CACHE_HOME/jupyter-pipeline/pending``), and written to the store the next time one of the
run's readers touches it: ``runs``, ``resume``, the Jupyter server's run list (:func:`flush`).

Each kept file is named by its key; a later write of the same key replaces it (the newest wins).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from ..exceptions import StoreError

if TYPE_CHECKING:
    from .base import Store
    from .records import RunRecord


def folder(store: Store) -> Path:
    """Where writes ``store`` did not take wait (one folder per store, named by a digest of its URL)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jupyter-pipeline" / "pending"
    return base / hashlib.sha256(store.absolute_url().encode()).hexdigest()[:24]


def _name(key: str) -> str:
    return urllib.parse.quote(key, safe="")


def keep(store: Store, key: str, data: bytes | None = None, path: str | os.PathLike | None = None) -> Path:
    """Keep ``data`` (or a copy of the file at ``path``) for ``key`` until :func:`flush` writes it;
    return where it is kept. Raises OSError when this machine cannot keep it either."""
    where = folder(store)
    where.mkdir(parents=True, exist_ok=True)
    target = where / _name(key)
    tmp = where / f".tmp-{os.getpid()}-{_name(key)}"
    if path is not None:
        shutil.copyfile(path, tmp)
    else:
        tmp.write_bytes(data or b"")
    os.replace(tmp, target)  # a reader never sees half of it
    return target


def put_file(store: Store, key: str, path: str | os.PathLike) -> str | None:
    """Write the file at ``path`` to ``key``, waiting out a store outage (:func:`~.base.patiently`); if the
    store does not take it, keep it here. Returns None once written, else a sentence saying where it
    waits; raises :class:`StoreError` only if it could be kept nowhere."""
    from .base import patiently

    try:
        patiently(lambda: store.put_file(key, path))
        return None
    except StoreError as exc:
        try:
            kept = keep(store, key, path=path)
        except OSError as also:
            raise StoreError(f"{exc} It could not be kept on this machine either ({also.strerror or also}).") from None
        return f"{exc} It is kept in {kept.parent} until the store takes writes again."


def waiting(store: Store, prefix: str = "") -> list[str]:
    """The keys under ``prefix`` that wait to be written to ``store``."""
    where = folder(store)
    if not where.is_dir():
        return []
    keys = (urllib.parse.unquote(p.name) for p in where.iterdir() if not p.name.startswith(".tmp-"))
    return sorted(k for k in keys if k.startswith(prefix))


def flush(store: Store, prefix: str = "") -> list[str]:
    """Write to ``store`` what waits for it under ``prefix`` (run records last, so a record never names a
    notebook not written yet); return the keys written. Stops quietly at the first write the store
    still refuses: the rest waits for the next call."""
    written = []
    for key in sorted(waiting(store, prefix), key=lambda k: (k.endswith("/run.json"), k)):
        kept = folder(store) / _name(key)
        claimed = kept.with_name(f".tmp-flush-{os.getpid()}-{kept.name}")  # a newer copy kept meanwhile stays
        try:
            os.replace(kept, claimed)
        except FileNotFoundError:
            continue  # another reader wrote it
        try:
            store.put_file(key, claimed)
        except (StoreError, OSError):
            if not kept.exists():
                os.replace(claimed, kept)
            break
        claimed.unlink(missing_ok=True)
        written.append(key)
    return written


def end_run(store: Store, record: RunRecord, fault: StoreError) -> StoreError:
    """End a run whose store stopped taking writes (``fault`` says which and why): its unfinished stages,
    and those stopped because of it, become interrupted and the run too, so ``resume`` continues it.
    The record is written if the store takes it, else kept here; returns the error the run ends with,
    one paragraph naming the store, the error and where what was not written waits."""
    from .base import patiently
    from .jsontext import dumps
    from .records import RunState, StageState, now_iso, save_run, stage_key

    for name, rec in record.stages.items():
        # A stage the store failed (its notebook could not be fetched, its values not saved: the
        # error is the store's) did not fail by its code, and one not run after it never got its
        # chance: both are the outage's, so resume runs them like the stages it cut short.
        stopped_by_store = rec.status == StageState.FAILED and (rec.error or "").startswith("StoreError")
        never_ran = rec.status == StageState.SKIPPED and not rec.passed_over
        if not rec.status.done or rec.status == StageState.CANCELLED or stopped_by_store or never_ran:
            rec.status, rec.finished_at = StageState.INTERRUPTED, rec.finished_at or now_iso()
        output = stage_key(record.run_id, name, "output.ipynb")
        if rec.started_at and not rec.output_notebook and output in waiting(store, output):
            rec.output_notebook = store.uri(output)
    resume = f"`jupyter-pipeline resume {record.run_id}` continues it once the store takes writes again"
    record.status, record.owner, record.error = RunState.INTERRUPTED, None, f"{fault} The run stopped; {resume}."
    record.finished_at = record.finished_at or now_iso()
    try:
        patiently(lambda: save_run(store, record))
        return StoreError(f"Run {record.run_id} stopped: {record.error}")
    except StoreError:
        pass
    try:
        kept = keep(store, record.key, dumps(record.to_json(), indent=1).encode())
    except OSError as exc:
        return StoreError(f"Run {record.run_id} stopped: {record.error} Its final record could not be kept on "
                          f"this machine either ({exc.strerror or exc}); the store will show it interrupted.")
    notebooks = [k for k in waiting(store, f"runs/{record.run_id}/") if k.endswith(".ipynb")]
    return StoreError(
        f"Run {record.run_id} stopped: {record.error} Its record and {len(notebooks)} executed notebook(s) the store "
        f"did not take wait in {kept.parent}; `jupyter-pipeline runs {record.run_id}` or `resume` writes them.")
