"""Stage workers forked from a process that has already imported what they need.

A stage worker (``python -m jupyter_pipeline.stageworker --serve``) spends about 0.65 CPU-seconds
importing papermill, nbclient, jupyter_client and nbformat (and compiling nbformat's validator)
before it can run a stage: more than its kernel's start and the stage's own work together. On a
machine with two cores that, not waiting, is what limits a chain of short stages.

The *zygote* pays for those imports once. It is a small process, started once per runner
process (the CLI, a Jupyter server, a test session), that imports everything a worker needs and
then waits for requests on a Unix socket. For each request it forks; the child is a worker as if
started afresh: its own session (so it can be signalled as a group), the pipes it was sent as
stdin, stdout and stderr, the working directory and environment of the request, and the run's
lease. Forking takes about 5 ms.

The zygote is single-threaded and holds no ZeroMQ context, so forking it is safe; it never runs a
stage itself. It reports each child's pid, and later its exit status (it is the child's parent),
to the runner, which drives the child through :class:`ForkedProcess`, a ``subprocess.Popen``
look-alike. When the runner process exits, the zygote sees its socket close and exits too.

Where forking is not possible (not Linux, or ``JUPYTER_PIPELINE_ZYGOTE=0``), or while the zygote is
still importing, workers start as ordinary processes.
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
_MAX_MESSAGE = 1 << 20  # a request carries the environment: a few kilobytes


def available() -> bool:
    return sys.platform.startswith("linux") and os.environ.get(ENV_SWITCH, "1") != "0"


# -- runner side ------------------------------------------------------------------------------------
class ForkedProcess:
    """A worker forked by the zygote, driven like the ``subprocess.Popen`` of a worker.

    Its exit status arrives from the zygote (its parent). Should the zygote itself be gone, the
    process is watched through its pid until it disappears.
    """

    def __init__(self, pid: int, stdin, stdout):
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self.returncode: int | None = None
        self._exited = threading.Event()

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        if not self._exited.is_set() and _zygote_lost(self):
            self._set_exit(-signal.SIGKILL)  # ended while nobody could tell how
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while not self._exited.wait(0.05):
            if self.poll() is not None:
                break
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"stage worker {self.pid}", timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _zygote_lost(proc: ForkedProcess) -> bool:
    """True when the zygote that forked ``proc`` is gone and ``proc`` no longer exists either."""
    zygote = _instance
    if zygote is not None and not zygote.lost:
        return False
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Zygote:
    """The runner's handle on its zygote process: ``fork()`` returns a :class:`ForkedProcess`."""

    def __init__(self):
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_pipeline.zygote", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        theirs.close()
        self.ready = threading.Event()
        self.lost = False
        self._lock = threading.Lock()  # one request and its reply at a time
        self._replies: list = []
        self._reply = threading.Condition()
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._on_ready: list = []
        threading.Thread(target=self._listen, daemon=True, name="jp-zygote").start()

    def when_ready(self, fn) -> None:
        """Call ``fn()`` once the zygote can fork (at once if it can)."""
        with self._reply:
            if not self.ready.is_set():
                self._on_ready.append(fn)
                return
        fn()

    def fork(self, argv: list[str], cwd: str, env: dict, stderr, pass_fds: tuple[int, ...] = ()) -> ForkedProcess:
        """A new worker running ``stageworker.main(argv)`` in ``cwd`` with ``env``; raises OSError if
        the zygote cannot fork one (the caller then starts the worker afresh)."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        request = json.dumps({"argv": argv, "cwd": cwd, "env": env, "keep": len(pass_fds)}).encode()
        try:
            with self._lock:
                if self.lost or not self.ready.is_set():
                    raise OSError("the zygote is not ready")
                socket.send_fds(self._sock, [request], [stdin_r, stdout_w, stderr.fileno(), *pass_fds])
                pid = self._next_reply()
        except BaseException:
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            raise
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        proc = ForkedProcess(pid, open(stdin_w, "w", buffering=1), open(stdout_r))
        with self._reply:
            self._children[pid] = proc
            if pid in self._early_exits:
                proc._set_exit(self._early_exits.pop(pid))
        return proc

    def _next_reply(self) -> int:
        with self._reply:
            while not self._replies:
                if self.lost:
                    raise OSError("the zygote ended")
                self._reply.wait(1)
            reply = self._replies.pop(0)
        if "error" in reply:
            raise OSError(reply["error"])
        return reply["pid"]

    def _listen(self) -> None:
        """Read the zygote's messages: ready, the pid of each fork, each child's exit."""
        try:
            while message := self._sock.recv(_MAX_MESSAGE):
                msg = json.loads(message)
                if "ready" in msg:
                    with self._reply:
                        self.ready.set()
                        callbacks, self._on_ready = self._on_ready, []
                    for fn in callbacks:  # off this thread: they fork, and forks wait for replies read here
                        threading.Thread(target=fn, daemon=True, name="jp-zygote-ready").start()
                elif "exit" in msg:
                    with self._reply:
                        child = self._children.pop(msg["exit"], None)
                        if child is None:
                            self._early_exits[msg["exit"]] = msg["code"]
                    if child is not None:
                        child._set_exit(msg["code"])
                else:
                    with self._reply:
                        self._replies.append(msg)
                        self._reply.notify_all()
        except OSError:
            pass
        with self._reply:
            self.lost = True
            self._reply.notify_all()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)


_instance: Zygote | None = None
_instance_lock = threading.Lock()


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


# -- zygote side ------------------------------------------------------------------------------------
def _serve(sock: socket.socket) -> int:
    from .startup import skip_slow_optional_imports

    skip_slow_optional_imports()
    from . import stagekernel, stageworker, store  # noqa: F401 - imported once, here, for every child

    stageworker.prepare()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop below through wake_r
    sock.send(json.dumps({"ready": True}).encode())
    while True:
        readable, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
            _reap(sock)
        if sock in readable:
            try:
                data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 16)
            except OSError:
                return 0
            if not data:
                return 0  # the runner process is gone
            request = json.loads(data)
            session_r, session_w = os.pipe()
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in (*fds, session_r, session_w):
                    os.close(fd)
                sock.send(json.dumps({"error": f"fork failed: {exc}"}).encode())
                continue
            if pid == 0:
                os.close(session_r)
                _become_worker(request, fds, session_w, (sock.fileno(), wake_r, wake_w))
            for fd in (*fds, session_w):
                os.close(fd)
            os.read(session_r, 1)  # until the child leads its own session: the runner may signal the group
            os.close(session_r)
            sock.send(json.dumps({"pid": pid}).encode())
            _reap(sock)


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with contextlib.suppress(OSError):
            sock.send(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def _become_worker(request: dict, fds: list[int], session_w: int, zygote_fds: tuple[int, ...]) -> None:
    """In the forked child: turn into a stage worker, as ``python -m jupyter_pipeline.stageworker``
    would start, and never return into the zygote's loop."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a freshly started Python has it
        for fd in zygote_fds:
            os.close(fd)
        os.setsid()
        os.close(session_w)  # tells the zygote this process leads its session now
        stdin, stdout, stderr, *kept = fds
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        argv = list(request["argv"])
        if kept and "--lease-fd" in argv:  # the run's lease arrives as a new descriptor: tell the worker its number
            argv[argv.index("--lease-fd") + 1] = str(kept[0])
        from . import stageworker

        code = stageworker.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the worker's stderr is how its runner learns why
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        return _serve(sock)
    except (KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
