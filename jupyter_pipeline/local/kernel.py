"""The kernel a stage runs in: started by its worker ahead of the job, and a client that is ready
as soon as the kernel is.

jupyter_client's ``wait_for_ready`` ends with a fixed wait: it reads IOPub until 0.2 s pass
without a message, on every kernel start. :class:`ReadyClient` waits for exactly what readiness
means instead: the kernel's reply to ``kernel_info`` on the shell channel, and its ``idle`` status
for that request on IOPub (which proves the IOPub subscription is live, so no output of the first
cell can be lost). Its sockets retry a connection to a kernel that is still starting every few
milliseconds rather than zmq's default 100 ms.

:class:`StageKernelManager` starts IPython kernels as stages need them: without the debugger
(ipykernel imports debugpy at start, most of a second of CPU per stage, for a notebook nobody
will attach a debugger to; ``import debugpy`` fails in stage kernels) and with the IPython
history in memory (no SQLite file shared by kernels running side by side).
"""

from __future__ import annotations

import math
import os
import sys
import time
from queue import Empty

import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets import default

from . import zygote

#: How long to wait for the IOPub status that follows a kernel_info reply before asking again
#: (only reached while the IOPub subscription is still being set up).
IOPUB_SETTLE_SECONDS = 0.2
#: zmq's interval between connection attempts to a kernel not listening yet (zmq's default: 100).
RECONNECT_MS = 5
#: What ``python -m ipykernel_launcher`` does, with debugpy made unimportable first.
LAUNCH_WITHOUT_DEBUGGER = (
    "import sys, os\n"
    "sys.modules['debugpy'] = None  # a stage kernel has no debugger: skip importing it\n"
    "if sys.path[0] in ('', os.getcwd()):\n"
    "    del sys.path[0]  # as ipykernel_launcher does; IPython puts it back\n"
    "from ipykernel import kernelapp\n"
    "kernelapp.launch_new_instance()"
)


class ReadyClient(AsyncKernelClient):
    """An asynchronous kernel client whose ``wait_for_ready`` has no fixed waits."""

    @default("context")
    def _quick_reconnect_context(self) -> zmq.asyncio.Context:
        self._created_context = True
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        return context

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else math.inf)
        while True:
            msg_id = self.kernel_info()
            reply = await self._first(self.shell_channel, min(1.0, max(0.0, deadline - time.monotonic())),
                                      lambda msg, msg_id=msg_id: msg["parent_header"].get("msg_id") == msg_id)
            idle = reply is not None and await self._first(
                self.iopub_channel, IOPUB_SETTLE_SECONDS,
                lambda msg, msg_id=msg_id: msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                and msg["parent_header"].get("msg_id") == msg_id)
            if idle:
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    @staticmethod
    async def _first(channel, within: float, matches) -> dict | None:
        """The first message on ``channel`` that ``matches`` (others are skipped); None after ``within`` s."""
        end = time.monotonic() + within
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await channel.get_msg(timeout=left)
            except Empty:
                return None
            if matches(msg):
                return msg
        return None


class StageKernelManager(AsyncKernelManager):
    """Starts a stage's IPython kernel without the debugger and with its history in memory.

    Only the standard launch (``python -m ipykernel_launcher``) is changed; other kernels start
    as their kernel spec says.
    """

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        """Fork the kernel from the zygote when this worker was forked from it (see :mod:`.zygote`)."""
        if kernel_cmd[:3] == [sys.executable, "-c", LAUNCH_WITHOUT_DEBUGGER] and type(self.provisioner) is LocalProvisioner:
            # As jupyter_client's launcher sets it: the process that started the kernel.
            env = {**(kw.get("env") or os.environ), "JPY_PARENT_PID": str(os.getpid())}
            try:
                process = zygote.fork_kernel(kernel_cmd[3:], kw.get("cwd"), env, tuple(kw.get("pass_fds") or ()))
            except OSError:
                pass  # not forked, or the zygote is gone: start it afresh
            else:
                provisioner = self.provisioner
                provisioner.process, provisioner.pid, provisioner.pgid = process, process.pid, process.pid
                provisioner.cwd = kw.get("cwd") or os.getcwd()
                self._reconcile_connection_info(provisioner.connection_info)
                return
        await super()._async_launch_kernel(kernel_cmd, **kw)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if cmd[1:3] == ["-m", "ipykernel_launcher"]:
            cmd[1:3] = ["-c", LAUNCH_WITHOUT_DEBUGGER]
            cmd.append("--HistoryManager.hist_file=:memory:")
        return cmd


def start_kernel(kernel_name: str, cwd: str | None, sockets: str, pass_fds: tuple[int, ...] = ()):
    """Start the stage's kernel in ``cwd``, talking over unix sockets in the folder ``sockets``.

    Returns its (asynchronous) kernel manager, already started: papermill connects a
    :class:`ReadyClient` to it when the job arrives.
    """
    from jupyter_core.utils import run_sync

    # IPC sockets under a private folder rather than TCP ports: jupyter_client picks TCP ports by
    # binding and releasing them, so a busy machine (other kernels, test servers) can take one
    # before the kernel binds it, and the kernel dies at start ("Kernel died before replying to
    # kernel_info"). Unix sockets with a unique path cannot collide.
    # The asynchronous manager matters too: with a blocking client nbclient waits for a cell's
    # reply in a blocking read that neither notices a dead kernel nor lets SIGTERM in.
    km = StageKernelManager(kernel_name=kernel_name, transport="ipc", ip=os.path.join(sockets, "k"),
                            client_factory=ReadyClient)
    run_sync(km.start_kernel)(cwd=cwd, **({"pass_fds": pass_fds} if pass_fds else {}))
    return km
