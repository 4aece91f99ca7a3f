"""Run leases: which processes may still write a local run's stages.

The runner driving a run holds an exclusive ``flock`` on a small file named after the store and
the run. Every stage worker it starts inherits the locked descriptor and hands it on to its
kernel, and a lock lives as long as any descriptor of it is open, so the lease is held until the
runner *and* every process that could still write one of the run's files have exited. A second
runner (``resume``, or marking a run interrupted) takes the lease first: while the first runner's
workers are still stopping it waits, then refuses, so no orphan can write a stage's outputs after
the run was handed on.

Leases are host-local (the lock files live in this user's temporary folder); a run driven from
another machine is judged by the owner recorded in its run record instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..store.records import RunRecord, RunState, StageState, now_iso, save_run, stage_key

if TYPE_CHECKING:
    from ..store.base import Store

#: How long ``acquire`` waits by default for the stage processes of a stopped runner to exit
#: (they stop within a second or two of their runner: see ``stageworker``'s runner watch).
STOPPING_GRACE_SECONDS = 10.0


def lease_dir() -> Path:
    """This user's folder of lease files (created private on first use).

    In the temporary folder rather than ``$XDG_RUNTIME_DIR``, which a login shell has and a
    Jupyter server started by a service manager or a container often has not: every process of
    the user must find the same file.
    """
    path = Path(tempfile.gettempdir()) / f"jupyter-pipeline-{os.getuid()}" / "leases"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


class Lease:
    """The lease of run ``run_id`` in the store at ``store_url`` (an absolute URL)."""

    def __init__(self, store_url: str, run_id: str):
        digest = hashlib.sha256(f"{store_url}\0{run_id}".encode()).hexdigest()[:32]
        self.run_id = run_id
        self.path = lease_dir() / f"{digest}.lock"
        self.fd: int | None = None

    def _try_lock(self, flags: int) -> int | None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, flags | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lease, waiting up to ``wait`` seconds for its holders to exit; return whether taken."""
        deadline = time.monotonic() + wait
        while True:
            fd = self._try_lock(fcntl.LOCK_EX)
            if fd is not None:
                self.fd = fd
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def held(self) -> bool:
        """Whether some process (this one included, through another lease) holds the lease now."""
        if self.fd is not None:
            return True
        fd = self._try_lock(fcntl.LOCK_SH)
        if fd is None:
            return True
        os.close(fd)
        return False

    def holders(self) -> list[tuple[int, str]]:
        """``(pid, command)`` of the processes with the lease file open (Linux ``/proc``; else empty)."""
        out = []
        for fd_dir in Path("/proc").glob("[0-9]*/fd"):
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) == str(self.path) for fd in fd_dir.iterdir()):
                    cmd = (fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    out.append((int(fd_dir.parent.name), cmd.strip()[:80]))
        return sorted(out)

    def release(self) -> None:
        """Close this process's descriptor; the lease is free once every inheritor has closed its copy."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


# -- runs whose runner died -------------------------------------------------------------------------
def this_process() -> dict:
    """The owner a run record names for a run this process drives."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def owner_alive(record: RunRecord) -> bool:
    """Whether the owner a run record names may still drive it (one on another host is assumed to)."""
    owner = record.owner or {}
    if owner.get("host") != socket.gethostname() or not owner.get("pid"):
        return owner.get("host") not in (None, socket.gethostname())  # another machine: assume alive
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Why a run was marked interrupted when its process died.
DIED = "the process running this run stopped before it finished; `jupyter-pipeline resume` continues it"


def mark_interrupted(store: Store, record: RunRecord, reason: str = DIED, cancelled_too: bool = False) -> RunRecord:
    """Record that the process driving ``record`` stopped: running/pending stages become interrupted
    (and cancelled ones, with ``cancelled_too``: stopped by that process, not by the user).

    A stage that was running keeps the notebook its worker saved as far as it ran.
    """
    for name, rec in record.stages.items():
        if not rec.status.done or (cancelled_too and rec.status == StageState.CANCELLED):
            if rec.status == StageState.RUNNING and store.exists(key := stage_key(record.run_id, name, "output.ipynb")):
                rec.output_notebook = store.uri(key)
            rec.status = StageState.INTERRUPTED
    record.status, record.owner = RunState.INTERRUPTED, None
    record.finished_at = record.finished_at or now_iso()
    record.error = reason
    save_run(store, record)
    return record


def effective_status(store: Store, record: RunRecord) -> RunRecord:
    """The record of a leased run (a target's ``leases_runs``: local), marked interrupted if its
    process is gone.

    Not before its lease is free: until the dead runner's stage processes have exited, they
    could still write, and the run still counts as running.
    """
    if (record.status == RunState.RUNNING and not owner_alive(record)
            and not Lease(store.absolute_url(), record.run_id).held()):
        return mark_interrupted(store, record)
    return record
