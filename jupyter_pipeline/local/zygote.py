"""Stage workers and their kernels, forked from a process that has already imported what they need.

Starting afresh, a stage worker (``python -m jupyter_pipeline.local.worker --serve``) spends about
0.65 CPU-seconds importing papermill, nbclient, jupyter_client and nbformat, and its IPython
kernel about 0.3 more importing ipykernel and IPython: more than a short stage's own work. On a
machine with two cores that CPU, not waiting, is what limits a chain of short stages.

The *zygote* pays for those imports once. It is a small process, started once per runner
process (the CLI, a Jupyter server, a test session), that imports everything a worker and a
kernel need, then waits for requests on Unix sockets and forks:

- **workers**, asked for by the runner: the child becomes a stage worker as if started afresh,
  with its own session (so it can be signalled as a group), the pipes it was sent as stdin,
  stdout and stderr, the working directory and environment of the request, and the run's lease;
  it gets a socket of its own to the zygote, to ask for its kernel;
- **kernels**, asked for by a forked worker when it starts its stage kernel (the standard
  IPython kernel of this Python only): the child becomes ``ipykernel`` as ``jupyter_client``
  would have started it, in its own session, with the worker's environment and directory.

The zygote is single-threaded and holds no ZeroMQ context, so forking it is safe; it never runs a
stage or a cell itself. It reports each child's pid, and later its exit status (it is the child's
parent), to whoever asked for it, who drives the child through :class:`ForkedProcess`, a
``subprocess.Popen`` look-alike. When the runner process exits, the zygote sees its socket close
and exits too. Forked kernels get NumPy's global random state reseeded, as a new process would.

Where forking is not possible (not Linux, ``JUPYTER_PIPELINE_ZYGOTE=0``, a ``PYTHONPATH`` other
than the zygote's, another Python), or while the zygote is still importing, workers and kernels
start as ordinary processes.

This module is the asking side (the runner, and forked workers asking for kernels); the zygote
process itself is :mod:`.forkserver`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

#: The environment variable that turns forking off (``0``): every worker then starts afresh.
ENV_SWITCH = "JUPYTER_PIPELINE_ZYGOTE"
#: Environment variables that change what a Python process imports: a request whose values differ
#: from the zygote's is not forked (its child would import differently from a fresh process).
IMPORT_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONSAFEPATH")
_MAX_MESSAGE = 1 << 20  # a request carries the environment: a few kilobytes


def available() -> bool:
    return sys.platform.startswith("linux") and os.environ.get(ENV_SWITCH, "1") != "0"


# -- the asking side: the runner, and forked workers --------------------------------------------------
class ForkedProcess:
    """A process forked by the zygote, driven like a ``subprocess.Popen``.

    Its exit status arrives from the zygote (its parent). Should the zygote itself be gone, the
    process is watched through its pid until it disappears.
    """

    def __init__(self, pid: int, channel: Channel, stdin=None, stdout=None):
        self.pid, self.stdin, self.stdout, self.stderr = pid, stdin, stdout, None
        self.returncode: int | None = None
        self._channel = channel
        self._exited = threading.Event()

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        if not self._exited.is_set() and self._channel.lost and not _exists(self.pid):
            self._set_exit(-signal.SIGKILL)  # ended while nobody could tell how
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while not self._exited.wait(0.05):
            if self.poll() is not None:
                break
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"process {self.pid}", timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Channel:
    """One socket to the zygote: fork requests and their replies, and the exits of the children."""

    def __init__(self, sock: socket.socket, import_env: dict, ready: bool = False):
        self._sock = sock
        self.import_env = import_env  # the zygote's values of IMPORT_ENV
        self.ready = threading.Event()
        if ready:
            self.ready.set()
        self.lost = False
        self._lock = threading.Lock()  # one request and its reply at a time
        self._state = threading.Condition()
        self._replies: list[dict] = []
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._on_ready: list = []
        threading.Thread(target=self._listen, daemon=True, name="jp-zygote").start()

    def when_ready(self, fn) -> None:
        """Call ``fn()`` once the zygote can fork (at once if it can)."""
        with self._state:
            if not self.ready.is_set():
                self._on_ready.append(fn)
                return
        fn()

    def forkable(self, env: dict) -> bool:
        return all(env.get(k) == self.import_env.get(k) for k in IMPORT_ENV)

    def fork(self, kind: str, argv: list[str], cwd: str | None, env: dict, stdio: tuple[int, int, int],
             pass_fds: tuple[int, ...] = ()) -> int:
        """Ask for a ``kind`` ("worker" or "kernel") child; its pid. Raises OSError if the zygote
        cannot fork one (the caller then starts the process afresh)."""
        if not self.forkable(env):
            raise OSError("the environment changes what Python imports")
        request = json.dumps({"kind": kind, "argv": argv, "cwd": cwd, "env": env, "keep": len(pass_fds)}).encode()
        with self._lock:
            if self.lost or not self.ready.is_set():
                raise OSError("the zygote is not ready")
            socket.send_fds(self._sock, [request], [*stdio, *pass_fds])
            with self._state:
                while not self._replies:
                    if self.lost:
                        raise OSError("the zygote ended")
                    self._state.wait(1)
                reply = self._replies.pop(0)
        if "error" in reply:
            raise OSError(reply["error"])
        return reply["pid"]

    def adopt(self, proc: ForkedProcess) -> ForkedProcess:
        """Track ``proc``'s exit (reported by the zygote, possibly already)."""
        with self._state:
            self._children[proc.pid] = proc
            if proc.pid in self._early_exits:
                proc._set_exit(self._early_exits.pop(proc.pid))
        return proc

    def _listen(self) -> None:
        try:
            while message := self._sock.recv(_MAX_MESSAGE):
                msg = json.loads(message)
                if "ready" in msg:
                    self.import_env = msg["ready"]
                    with self._state:
                        self.ready.set()
                        callbacks, self._on_ready = self._on_ready, []
                    for fn in callbacks:  # off this thread: they fork, and forks wait for replies read here
                        threading.Thread(target=fn, daemon=True, name="jp-zygote-ready").start()
                elif "exit" in msg:
                    with self._state:
                        child = self._children.pop(msg["exit"], None)
                        if child is None:
                            self._early_exits[msg["exit"]] = msg["code"]
                    if child is not None:
                        child._set_exit(msg["code"])
                else:
                    with self._state:
                        self._replies.append(msg)
                        self._state.notify_all()
        except OSError:
            pass
        with self._state:
            self.lost = True
            self._state.notify_all()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class Zygote(Channel):
    """The runner's zygote: started here, it forks workers (``fork_worker``)."""

    def __init__(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_pipeline.local.forkserver", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        theirs.close()
        super().__init__(ours, {k: os.environ.get(k) for k in IMPORT_ENV})

    def fork_worker(self, argv: list[str], cwd: str, env: dict, stderr, pass_fds: tuple[int, ...] = ()) -> ForkedProcess:
        """A new worker running ``stageworker.main(argv)`` with pipes for stdin and stdout."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            pid = self.fork("worker", argv, cwd, env, (stdin_r, stdout_w, stderr.fileno()), pass_fds)
        except BaseException:
            os.close(stdin_w)
            os.close(stdout_r)
            raise
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        return self.adopt(ForkedProcess(pid, self, open(stdin_w, "w", buffering=1), open(stdout_r)))

    def close(self) -> None:
        super().close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)


_instance: Zygote | None = None
_instance_lock = threading.Lock()
_worker_channel: Channel | None = None  # in a forked worker: its own socket to the zygote


def shared() -> Zygote | None:
    """This process's zygote, started on first use; None where workers cannot be forked."""
    global _instance
    if not available():
        return None
    with _instance_lock:
        if _instance is None or _instance.lost:
            _instance = Zygote()
            atexit.register(_instance.close)
        return _instance


def kernel_forker() -> Channel | None:
    """In a forked worker, its channel to the zygote that can fork its kernel; else None."""
    return _worker_channel if _worker_channel is not None and not _worker_channel.lost else None


def fork_kernel(argv: list[str], cwd: str | None, env: dict, pass_fds: tuple[int, ...] = ()) -> ForkedProcess:
    """The stage kernel ``python -m ipykernel_launcher ARGV``, forked; OSError if it cannot be."""
    channel = kernel_forker()
    if channel is None:
        raise OSError("this worker was not forked")
    with open(os.devnull, "rb") as devnull:
        pid = channel.fork("kernel", argv, cwd, env, (devnull.fileno(), 1, 2), pass_fds)
    return channel.adopt(ForkedProcess(pid, channel))
