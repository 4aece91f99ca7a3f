"""Stage workers and their kernels, forked from a process that has already imported what they need.

Starting afresh, a stage worker (``python -m jupyter_pipeline.stageworker --serve``) spends about
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
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
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
#: The descriptor number a forked worker finds its own socket to the zygote on.
_CHANNEL_ENV = "_JUPYTER_PIPELINE_ZYGOTE_FD"


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
            [sys.executable, "-m", "jupyter_pipeline.zygote", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
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


# -- the zygote ---------------------------------------------------------------------------------------
class _Server:
    """The zygote's loop: requests from the runner and from forked workers; children's exits."""

    def __init__(self, runner: socket.socket):
        self.runner = runner
        self.clients: dict[int, socket.socket] = {runner.fileno(): runner}
        self.owner: dict[int, socket.socket] = {}  # child pid -> whom to tell of its exit
        self.wake_r, self.wake_w = os.pipe()
        self.start_dir = sys.path[0] if sys.path else ""  # -m puts the start directory first

    def serve(self) -> int:
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop through wake_r
        self.runner.send(json.dumps({"ready": {k: os.environ.get(k) for k in IMPORT_ENV}}).encode())
        while True:
            readable, _, _ = select.select([*self.clients.values(), self.wake_r], [], [])
            if self.wake_r in readable:
                os.read(self.wake_r, 4096)
                self.reap()
            for sock in readable:
                if sock is self.wake_r:
                    continue
                try:
                    data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 16)
                except OSError:
                    data, fds = b"", []
                if not data:
                    if sock is self.runner:
                        return 0  # the runner process is gone
                    self.worker_gone(sock)
                    continue
                self.fork(sock, json.loads(data), fds)
            self.reap()

    def fork(self, asker: socket.socket, request: dict, fds: list[int]) -> None:
        session_r, session_w = os.pipe()
        channel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) if request["kind"] == "worker" else ()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (*fds, session_r, session_w):
                os.close(fd)
            for sock in channel:
                sock.close()
            asker.send(json.dumps({"error": f"fork failed: {exc}"}).encode())
            return
        if pid == 0:
            mine = channel[1].detach() if channel else None
            inherited = [*self.clients, self.wake_r, self.wake_w, session_r, *([channel[0].fileno()] if channel else [])]
            _become(request, fds, session_w, inherited, mine, self.start_dir)
        for fd in (*fds, session_w):
            os.close(fd)
        if channel:
            channel[1].close()
            self.clients[channel[0].fileno()] = channel[0]
        os.read(session_r, 1)  # until the child leads its own session: the asker may signal the group
        os.close(session_r)
        self.owner[pid] = asker
        asker.send(json.dumps({"pid": pid}).encode())

    def worker_gone(self, sock: socket.socket) -> None:
        """A forked worker ended (its socket closed): its kernel must not outlive it. (A kernel
        started afresh watches its parent for this; a forked one's parent is the zygote.)"""
        for pid, asker in self.owner.items():
            if asker is sock:  # not reaped yet, so the pid is still this kernel's
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
        del self.clients[sock.fileno()]
        sock.close()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            asker = self.owner.pop(pid, None)
            if asker is not None and asker.fileno() in self.clients:
                with contextlib.suppress(OSError):
                    asker.send(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def _become(request: dict, fds: list[int], session_w: int, inherited: list[int], channel_fd: int | None,
            start_dir: str) -> None:
    """In a forked child: become a stage worker or a kernel, as if started afresh; never return
    into the zygote's loop."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a freshly started Python has it
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.setsid()
        os.close(session_w)  # tells the zygote this process leads its session now
        stdin, stdout, stderr, *kept = fds
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            if fd != target:
                os.dup2(fd, target)
                os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        import_env = {k: os.environ.get(k) for k in IMPORT_ENV}  # the zygote's
        os.environ.clear()
        os.environ.update(request["env"])
        if request["cwd"]:
            os.chdir(request["cwd"])
        argv = list(request["argv"])
        if request["kind"] == "kernel":
            code = _run_kernel(argv, start_dir)
        else:
            if kept and "--lease-fd" in argv:  # the run's lease arrives as a new descriptor: tell the worker
                argv[argv.index("--lease-fd") + 1] = str(kept[0])
            global _worker_channel
            _worker_channel = Channel(socket.socket(fileno=channel_fd), import_env, ready=True)
            from . import stageworker

            code = stageworker.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child's stderr is how its asker learns why
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run_kernel(argv: list[str], start_dir: str) -> int:
    """What ``stagekernel.LAUNCH_WITHOUT_DEBUGGER`` does in a fresh process, in this forked one."""
    if sys.path and sys.path[0] in ("", start_dir, os.getcwd()):
        del sys.path[0]  # as ipykernel_launcher does; IPython puts the kernel's directory back
    from .startup import unskip

    unskip()  # the user's code imports what it likes, as in a kernel started afresh
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # not the zygote's random state, shared by every fork
    sys.argv = ["ipykernel_launcher", *argv]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance(argv)
    return 0


def _prepare() -> None:
    """Import, once, what every worker and kernel would import on its own."""
    from .startup import skip_papermill_backends, skip_slow_optional_imports

    skip_slow_optional_imports()
    skip_papermill_backends()
    sys.modules["debugpy"] = None  # stage kernels have no debugger (see stagekernel)
    from . import stagekernel, stageworker, store  # noqa: F401
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401

    stageworker.prepare()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runner = socket.socket(fileno=int(sys.argv[1]))
    try:
        _prepare()
        return _Server(runner).serve()
    except (KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        return 0


if __name__ == "__main__":
    # Run as the package's module, not as __main__: the forked children look their channel up there.
    from jupyter_pipeline.zygote import main as package_main

    sys.exit(package_main())
