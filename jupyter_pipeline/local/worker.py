"""A stage worker process: ``python -m jupyter_pipeline.local.worker --serve [--shared]``.

The local runner keeps a few of these started ahead of need (:mod:`.workers`), forked from the
zygote (:mod:`.zygote`) or started afresh. Each starts its kernel at once, then runs jobs read as
JSON lines from stdin and prints each result (``stagerun.RESULT_PREFIX``):

- **fresh** (the default): one job, in a kernel of its own, which ends with it;
- **shared** (``--shared``, ``run --shared-kernel``): job after job in one kernel, its namespace
  emptied between stages (:data:`RESET_CODE`); the runner side is :mod:`.sharedkernel`.

Without ``--serve`` it runs the one stage its arguments name and exits.

**The runner dies**: a worker holds its stdin open until it has read the result; end of input
before that means the runner is gone, and the worker kills its kernel and exits at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import sys
import tempfile
import threading
import time

from ..stage.run import (
    EXIT_RUNNER_GONE, ORPHAN_SAVE_SECONDS, STARTED_LINE, _emit, _kill_kernel, close_kernel, kernel_exit, prepare,
    run_stage
)
from ..startup import skip_papermill_backends, skip_slow_optional_imports

#: Run in the kernel between stages: drop every global but IPython's own (``user_ns_hidden``),
#: put back any of those a stage rebound, and empty the output cache (``Out``, ``_``, ``_3``).
#: ``%reset -f`` does the same and more (history, aliases, a full ``gc.collect``) at several
#: times the cost.
RESET_CODE = (
    "def _jp_reset(ip=get_ipython()):\n"
    "    ns, hidden = ip.user_ns, ip.user_ns_hidden\n"
    "    for name in [n for n in ns if n not in hidden]:\n"
    "        del ns[name]\n"
    "    ns.update(hidden)\n"
    "    ip.displayhook.flush()\n"
    "_jp_reset()  # which deletes itself too\n"
)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _say_started() -> None:
    sys.stdout.write("\n" + STARTED_LINE + "\n")
    sys.stdout.flush()


def _watch_runner(km, finished: threading.Event) -> None:
    """Stop the stage as soon as our stdin ends before the result was written.

    The runner keeps this pipe open until it has read the result, so an early end of input means
    it died (``kill -9``, a crashed Jupyter server): the stage must not go on writing into a run
    another runner may resume. The kernel is killed at once; the main thread then gets SIGTERM, so
    the notebook is kept as far as it ran, and this process exits within a deadline either way.
    The run's lease, inherited by both processes, is free once both have exited.
    """
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    if finished.is_set():
        return
    _kill_kernel(km)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_SAVE_SECONDS)
    os._exit(EXIT_RUNNER_GONE)


def serve(cwd: str | None, kernel_name: str | None, lease_fd: int | None = None) -> int:
    """Warm-worker mode: start a kernel now, then run the one job read from stdin in it.

    The local runner keeps a few of these waiting, so a stage's process start-up, imports and
    kernel start overlap with the stages before it instead of adding to the run's length.
    ``lease_fd`` is the run's lease (see :mod:`jupyter_pipeline.local.lease`), handed on to the kernel.
    """

    from .kernel import start_kernel

    # This process's stderr is shown when the kernel dies, as the kernel's last words (the kernel
    # shares it); papermill's and nbclient's own log lines would only bury them.
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    sockets = tempfile.mkdtemp(prefix="jp-kernel-")
    km, finished = None, threading.Event()
    try:
        km = start_kernel(kernel_name or "python3", cwd, sockets, (lease_fd,) if lease_fd is not None else ())
        prepare()
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # the runner no longer needs this worker
        threading.Thread(target=_watch_runner, args=(km, finished), daemon=True, name="jp-runner-watch").start()
        job = json.loads(line)
        try:
            result = run_stage(job["store"], job["run_id"], job["stage"], job.get("parameters"), cwd=cwd,
                               kernel_name=kernel_name, km=km, item=job.get("item"), on_start=_say_started,
                               gang=job.get("gang"), keep_path=job.get("keep_path"))
        except Exception as exc:
            result = {"status": "failed", "stage": job.get("stage"), "error": f"{type(exc).__name__}: {exc}", "metrics": {}}
        finished.set()
        _emit(result)
        return 0 if result["status"] == "succeeded" else 1
    finally:
        finished.set()
        close_kernel(km, sockets)



# -- shared-kernel mode ----------------------------------------------------------------------------
def _read_jobs(jobs: queue.Queue, busy: threading.Event, km) -> None:
    """Read job lines from stdin into ``jobs``; None at end of input, when the runner is done.

    End of input while a stage runs means the runner died (it keeps the pipe open until it has
    the result): the stage is stopped as a fresh worker's would be (:func:`_watch_runner`).
    """
    for line in sys.stdin:
        if line.strip():
            busy.set()  # before the job is queued: the runner waits for its result from here on
            jobs.put(json.loads(line))
    if busy.is_set():
        _kill_kernel(km)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_SAVE_SECONDS)
        os._exit(EXIT_RUNNER_GONE)
    jobs.put(None)


def _shell_client(km):
    """A client of the kernel's shell channel only, for the resets."""
    from jupyter_client.blocking import BlockingKernelClient

    # A session of its own: a client sharing the manager's (as km.client() does) would share its
    # zmq identity too, and the kernel would send stage cells' replies to this one.
    kc = BlockingKernelClient()
    kc.load_connection_info(km.get_connection_info())
    kc.start_channels(iopub=False, stdin=False, hb=False, control=False)
    return kc


def _reset(kc, km) -> None:
    """Empty the kernel's namespace (:data:`RESET_CODE`); raise if the kernel died or refused."""
    msg_id = kc.execute(RESET_CODE, silent=True, store_history=False)
    while True:
        try:
            reply = kc.get_shell_msg(timeout=1)
        except queue.Empty:
            if how := kernel_exit(km):
                raise RuntimeError(f"the kernel ended ({how})") from None
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            if reply["content"].get("status") != "ok":
                raise RuntimeError(f"resetting the shared kernel failed: {reply['content'].get('evalue')}")
            return


def serve_shared(cwd: str | None, kernel_name: str | None, lease_fd: int | None = None) -> int:
    """Shared-kernel mode: start a kernel, then run each job read from stdin in it, emptying its
    namespace after each.

    Ends at end of input. If input ends while a stage runs, the runner died: the kernel is killed
    and the stage stopped as in a fresh worker (:func:`_watch_runner`).
    """
    from .kernel import start_kernel

    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    sockets = tempfile.mkdtemp(prefix="jp-kernel-")
    jobs: queue.Queue = queue.Queue()
    busy = threading.Event()
    km = kc = None
    try:
        km = start_kernel(kernel_name or "python3", cwd, sockets, (lease_fd,) if lease_fd is not None else ())
        prepare()
        kc = _shell_client(km)
        threading.Thread(target=_read_jobs, args=(jobs, busy, km), daemon=True, name="jp-jobs").start()
        unusable = None  # why the kernel cannot take another stage
        while (job := jobs.get()) is not None:
            if unusable:
                busy.clear()
                _emit({"status": "failed", "stage": job.get("stage"), "not_run": True, "error": unusable, "metrics": {}})
                return 1
            try:
                result = run_stage(job["store"], job["run_id"], job["stage"], job.get("parameters"), cwd=cwd,
                                   kernel_name=kernel_name, km=km, item=job.get("item"), keep_path=job.get("keep_path"))
            except Exception as exc:
                result = {"status": "failed", "stage": job.get("stage"), "error": f"{type(exc).__name__}: {exc}",
                          "metrics": {}}
            busy.clear()
            _emit(result)
            if result["status"] != "succeeded":
                return 1  # the runner starts a new shared kernel
            try:
                _reset(kc, km)  # after the result: the reset overlaps with the runner's bookkeeping
            except Exception as exc:
                unusable = f"the shared kernel could not be reset: {exc}"
        return 0
    finally:
        if kc is not None:
            kc.stop_channels()
        close_kernel(km, sockets)

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jupyter_pipeline.local.worker", description=__doc__)
    p.add_argument("--serve", action="store_true", help="start a kernel, then run one JSON job read from stdin")
    p.add_argument("--shared", action="store_true",
                   help="with --serve: run every job read from stdin in one kernel (shared-kernel mode)")
    p.add_argument("--store")
    p.add_argument("--run-id")
    p.add_argument("--stage")
    p.add_argument("--parameters", default="{}", help="JSON object of parameter values")
    p.add_argument("--cwd")
    p.add_argument("--kernel")
    p.add_argument("--lease-fd", type=int, help="the run's lease, inherited from the runner (handed to the kernel)")
    args = p.parse_args(argv)
    skip_slow_optional_imports()
    skip_papermill_backends()
    signal.signal(signal.SIGTERM, _terminate)
    if args.serve:
        try:
            if args.shared:
                return serve_shared(args.cwd, args.kernel, args.lease_fd)
            return serve(args.cwd, args.kernel, args.lease_fd)
        except KeyboardInterrupt:
            return 1
    if not (args.store and args.run_id and args.stage):
        p.error("--store, --run-id and --stage are required without --serve")
    try:
        result = run_stage(args.store, args.run_id, args.stage, json.loads(args.parameters),
                           cwd=args.cwd, kernel_name=args.kernel)
    except Exception as exc:
        result = {"status": "failed", "stage": args.stage, "error": f"{type(exc).__name__}: {exc}", "metrics": {}}
    _emit(result)
    return 0 if result["status"] == "succeeded" else 1


if __name__ == "__main__":
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    sys.exit(main())
