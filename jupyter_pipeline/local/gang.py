"""Local ``workers:N`` stages: N replicas of the stage notebook, N kernels on loopback, as one gang.

Each replica is a stage worker (``stageworker --serve``, its own kernel) given the same job plus its
place in the gang: rank, world size, JAX's coordinator address and the barrier's, both free
loopback ports. The replicas meet at the barrier before any user cell runs
(:func:`jupyter_pipeline.stage.replica.join`); if one fails, the others are stopped at once (one that
waits in a collective would otherwise wait for ever) and the stage fails naming the replica that
failed first. ``retries:`` starts all of them again; ``timeout:`` stops all of them.

Rank 0's values and metrics are the stage's; every replica's executed notebook is kept under
``stages/<stage>/replicas/<rank>/output.ipynb`` and listed in the stage's record (``replicas``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TYPE_CHECKING, Callable

from ..notebook.pipeline import Stage
from ..store.records import RunRecord, now_iso, timeout_error

if TYPE_CHECKING:
    from .launcher import Launcher

#: Replica states in the run record besides a stage's own: stopped because another replica failed.
STOPPED = "stopped"
# One gang at a time takes its kernel slots, so two gangs cannot each hold part of what they need.
_claiming = threading.Lock()


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (free now; the replicas bind them moments later)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@contextlib.contextmanager
def slots(semaphore: threading.Semaphore, count: int):
    """Hold ``count`` of the runner's kernel slots at once (all or none, one gang at a time)."""
    with _claiming:
        for _ in range(count):
            semaphore.acquire()
    try:
        yield
    finally:
        for _ in range(count):
            semaphore.release()


class GangStages:
    """Runs the ``workers:`` stages of :class:`~jupyter_pipeline.local.runner.LocalRunner`'s runs: each replica
    is a worker of the run's ``launcher``; ``publish(record)`` writes the record as replicas change."""

    def __init__(self, launcher: Launcher, publish: Callable[[RunRecord], None]):
        self.launcher, self.publish = launcher, publish

    def run(self, stage: Stage, record: RunRecord) -> dict:
        """Run ``stage`` as a gang of ``workers`` replicas, all again on a retry."""
        rec = record.stages[stage.name]
        result: dict = {}
        for attempt in range(stage.options.retries + 1):
            rec.attempts = attempt + 1
            if self.launcher.cancelled.is_set():
                return {"status": "cancelled", "error": "cancelled"}
            # A gang bigger than the runner's slots still runs: it needs all its kernels at once.
            with slots(self.launcher.slots, min(stage.options.workers, self.launcher.workers)):
                result = self._gang_once(stage, record)
            if self.launcher.cancelled.is_set():
                result.update(status="cancelled", error="cancelled")
            if result["status"] != "failed":
                break
        return result

    def _gang_once(self, stage: Stage, record: RunRecord) -> dict:
        size = stage.options.workers
        coordinator, barrier = free_ports(2)
        job = self.launcher.job(stage, record)
        gang = {"world_size": size, "coordinator": f"127.0.0.1:{coordinator}", "barrier": f"127.0.0.1:{barrier}",
                "bind": "127.0.0.1"}
        workers = [self.launcher.take() for _ in range(size)]
        rec = record.stages[stage.name]
        rec.replicas = [{"rank": r, "status": "running", "started_at": now_iso()} for r in range(size)]
        self.publish(record)
        results: list[dict | None] = [None] * size
        failed: list[int] = []  # ranks in the order they failed; the first is the cause
        lock = threading.Lock()

        def stop_all(but: int | None = None) -> None:
            for rank, worker in enumerate(workers):
                if rank != but:
                    threading.Thread(target=self.launcher.stop, args=(worker.proc,), daemon=True).start()

        def run(rank: int) -> None:
            with self.launcher.running(f"{stage.name}#{rank}", workers[rank].proc):
                result = workers[rank].run({**job, "gang": {**gang, "rank": rank}}, on_started=start_clock)
            with lock:
                results[rank] = result
                first = result["status"] != "succeeded" and not failed
                if result["status"] != "succeeded":
                    failed.append(rank)
            stopped = timed_out.is_set() or (not first and bool(failed) and failed[0] != rank)
            rec.replicas[rank] = _replica_entry(rank, result, rec.replicas[rank]["started_at"], stopped)
            self.publish(record)
            if first:
                stop_all(but=rank)

        timed_out = threading.Event()

        def expire():
            timed_out.set()
            stop_all()
        # `timeout:` counts from the stage's first cell, as for one process: from the first replica's.
        timer = threading.Timer(stage.options.timeout, expire) if stage.options.timeout else None

        def start_clock():
            with lock:
                if timer and not clock_started:
                    clock_started.append(True)
                    timer.start()

        clock_started: list[bool] = []
        threads = [threading.Thread(target=run, args=(r,), name=f"jp-{stage.name}-{r}") for r in range(size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if timer:
            timer.cancel()
        return gang_result(results, failed, size, stage.options.timeout if timed_out.is_set() else None)


def _replica_entry(rank: int, result: dict, started_at: str, stopped: bool) -> dict:
    status = STOPPED if stopped else result["status"]
    entry = {"rank": rank, "status": status, "started_at": started_at, "finished_at": now_iso(),
             "output_notebook": result.get("output_notebook")}
    if result["status"] != "succeeded" and not stopped:
        entry.update(error=result.get("error"), error_cell=result.get("error_cell"))
    return entry


def gang_result(results: list[dict], failed: list[int], size: int, timed_out: int | None) -> dict:
    """The stage's result: rank 0's when all succeeded, else the first failure's, naming its replica."""
    if not failed:
        return {"status": "succeeded", "metrics": results[0].get("metrics", {}),
                "output_notebook": results[0].get("output_notebook")}
    if timed_out:
        return {"status": "failed", "metrics": {}, "output_notebook": results[0].get("output_notebook"),
                "error": f"{timeout_error(timed_out)}; all {size} replicas were stopped"}
    rank = failed[0]
    cause = results[rank]
    return {"status": "failed", "metrics": {}, "output_notebook": cause.get("output_notebook"),
            "error": f"replica {rank} of {size} failed: {cause.get('error')}; the other replica(s) were stopped",
            "error_cell": cause.get("error_cell")}
