"""The zygote process (see :mod:`.zygote`): ``python -m jupyter_pipeline.local.forkserver FD``.

It imports what stage workers and kernels need, tells the runner on socket ``FD`` that it is
ready, then forks a worker or a kernel for each request it receives (from the runner, or from a
forked worker over that worker's own socket), reaps them and reports their exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys

from . import zygote
from .zygote import _MAX_MESSAGE, IMPORT_ENV

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
            zygote._worker_channel = zygote.Channel(socket.socket(fileno=channel_fd), import_env, ready=True)
            from . import worker as stageworker

            code = stageworker.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
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
    from ..startup import unskip

    unskip()  # the user's code imports what it likes, as in a kernel started afresh
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # not the zygote's random state, shared by every fork
    sys.argv = ["ipykernel_launcher", *argv]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance(argv)
    return 0


def _prepare() -> None:
    """Import, once, what every worker and kernel would import on its own."""
    from ..startup import skip_papermill_backends, skip_slow_optional_imports

    skip_slow_optional_imports()
    skip_papermill_backends()
    sys.modules["debugpy"] = None  # stage kernels have no debugger (see stagekernel)
    # Imported once, here, for every child (the names are not used: the import is the point).
    from . import kernel as stagekernel  # noqa: F401 - imported for every child
    from . import worker as stageworker
    from ..store import base as store  # noqa: F401 - imported for every child
    import ipykernel.ipkernel
    import ipykernel.kernelapp  # noqa: F401 - imported for every child

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
    sys.exit(main())
