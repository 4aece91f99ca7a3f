"""Inside a ``workers:N`` stage: who this replica is, the gang barrier, and Keras 3's distribution API.

A stage tagged ``workers:N`` runs its notebook as N replicas started together (a gang). Each
replica's kernel gets ``{"rank", "world_size", "coordinator", "barrier", ...}`` in its run
context; user code reads it through :func:`distributed`::

    import jupyter_pipeline as jp
    dist = jp.distributed()                      # rank 0 of 1 outside a workers: stage
    dist.initialize_keras()                      # JAX multi-process + keras DataParallel
    x_part, y_part = dist.shard(x_train, y_train)
    model.fit(x_part, y_part, batch_size=64 // dist.world_size)

The generated stage notebook calls :func:`join` before any of the user's cells (no replica runs
its code until all are up), :func:`leave` after them (rank 0 saves the stage's values on its
own) and :func:`end` last (every replica leaves JAX's distributed runtime together).

Kept import-light: JAX and Keras are imported only when a helper needs them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from dataclasses import dataclass

from . import context
from ..exceptions import DistributedError
from ..store.records import stage_key

#: Ports a replica pod listens on for JAX's coordinator and the gang barrier (rank 0 only).
COORDINATOR_PORT = 29500
BARRIER_PORT = 29501
#: Seconds a replica waits for the others to come up before it gives up.
DEFAULT_BARRIER_TIMEOUT = 600
_RETRY_SECONDS = 0.2

_timings: dict[str, float] = {}


@dataclass(frozen=True)
class Distributed:
    """This replica's place in its gang: ``rank`` of ``world_size``, and the coordinator's address
    (``host:port`` of JAX's coordination service on rank 0; None outside a ``workers:`` stage)."""

    rank: int = 0
    world_size: int = 1
    coordinator: str | None = None

    @property
    def is_primary(self) -> bool:
        """Whether this is rank 0, whose values become the stage's outputs."""
        return self.rank == 0

    def shard(self, *arrays):
        """This replica's contiguous part of each array (rows along the first axis).

        Every replica gets the same number of rows (a remainder of at most ``world_size - 1``
        rows is left out), so all of them run the same number of training steps: a collective
        step that one replica never reaches would wait forever. Returns one array for one
        argument, a tuple otherwise.
        """
        parts = []
        for array in arrays:
            size = len(array) // self.world_size
            parts.append(array[self.rank * size:(self.rank + 1) * size])
        return parts[0] if len(parts) == 1 else tuple(parts)

    def initialize_jax(self) -> None:
        """Join JAX's multi-process runtime (``jax.distributed.initialize``, CPU collectives over
        gloo) so that ``jax.devices()`` lists every replica's devices. Does nothing in a stage of
        one replica, or when already done. Call it before any JAX computation."""
        if self.world_size == 1:
            return
        import jax

        if not jax.distributed.is_initialized():
            self._join(lambda: jax.distributed.initialize(coordinator_address=self.coordinator,
                                                          num_processes=self.world_size, process_id=self.rank))

    def initialize_keras(self):
        """Set up Keras 3's distribution API for this replica: JAX multi-process (with the random
        seed agreed across replicas) and ``keras.distribution.DataParallel`` over every replica's
        devices. Feed each replica its own :meth:`shard` of the data. Returns the distribution."""
        import keras

        if keras.backend.backend() != "jax":
            raise DistributedError(
                f"initialize_keras() needs Keras on JAX, but KERAS_BACKEND is {keras.backend.backend()!r}; set "
                "os.environ['KERAS_BACKEND'] = 'jax' in a setup cell, before Keras is imported")
        import jax

        if self.world_size > 1 and not jax.distributed.is_initialized():
            # Keras's own initialize also agrees on one random seed across the replicas.
            self._join(lambda: keras.distribution.initialize(self.coordinator, self.world_size, self.rank))
        # The data arrive already split (shard()), so Keras must not split them again.
        distribution = keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
        keras.distribution.set_distribution(distribution)
        return distribution

    def _join(self, initialize) -> None:
        import jax

        # gloo is JAX's default CPU collectives now; older releases had none unless asked.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            initialize()
        except RuntimeError as exc:
            raise DistributedError(
                f"replica {self.rank} could not join JAX's distributed runtime: {exc}. Call "
                "jp.distributed().initialize_keras() (or initialize_jax()) at the top of the stage, before "
                "anything computes with JAX or Keras") from None
        _timings["initialized"] = time.time()


def distributed() -> Distributed:
    """This replica's rank, world size and coordinator; rank 0 of 1 outside a ``workers:`` stage."""
    ctx = context.current()
    gang = ctx.gang if ctx else None
    if not gang:
        return Distributed()
    return Distributed(int(gang["rank"]), int(gang["world_size"]), gang.get("coordinator"))


# -- the gang's life in a stage notebook ---------------------------------------------------------
def join() -> None:
    """Wait until every replica of the gang is up (the first generated cell of a ``workers:`` stage)."""
    ctx = context.current()
    if not (ctx and ctx.gang):
        return
    gang = ctx.gang
    rank, size = int(gang["rank"]), int(gang["world_size"])
    # Keras's and JAX's own initialize() read these when called without arguments.
    os.environ.update(KERAS_DISTRIBUTION_JOB_ADDRESSES=gang["coordinator"], KERAS_DISTRIBUTION_NUM_PROCESSES=str(size),
                      KERAS_DISTRIBUTION_PROCESS_ID=str(rank), JAX_COORDINATOR_ADDRESS=gang["coordinator"])
    _timings["up"] = time.time()
    rendezvous(rank, size, gang["barrier"], bind=gang.get("bind", ""),
               timeout=float(gang.get("timeout") or DEFAULT_BARRIER_TIMEOUT))
    _timings["released"] = time.time()
    print(f"replica {rank} of {size}: all replicas are up (waited {_timings['released'] - _timings['up']:.2f} s)")


def leave() -> None:
    """After the stage's code: drop Keras's distribution, so that rank 0 can save a model on its own
    (saving makes a variable, which under a multi-process distribution every replica must join)."""
    if "keras" in sys.modules:
        import keras

        keras.distribution.set_distribution(None)


@contextlib.contextmanager
def saving_alone():
    """Within: Keras's distribution is off, so one replica can save a model without the others."""
    keras = sys.modules.get("keras")
    current = keras.distribution.distribution() if keras is not None else None
    if current is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def end() -> None:
    """The last generated cell: leave JAX's distributed runtime together, record this replica's timings."""
    if "jax" in sys.modules:
        import jax

        if jax.distributed.is_initialized():
            jax.distributed.shutdown()  # a barrier: rank 0 may still be saving the stage's values
    ctx = context.current()
    if ctx and ctx.gang:
        ctx.store.put_json(stage_key(ctx.run_id, ctx.stage, "gang.json", replica=ctx.rank), dict(_timings))


# -- the barrier -------------------------------------------------------------------------------------
def rendezvous(rank: int, world_size: int, address: str, *, bind: str = "", timeout: float = DEFAULT_BARRIER_TIMEOUT) -> None:
    """Block until all ``world_size`` replicas have called this: rank 0 listens on ``address``'s port,
    the others connect, say their rank and wait for rank 0's "go" once all are in."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    if rank == 0:
        _lead(world_size, (bind, int(port)), deadline, timeout)
    else:
        _follow(rank, (host, int(port)), deadline, timeout)


def _lead(world_size: int, where: tuple[str, int], deadline: float, timeout: float) -> None:
    joined: dict[int, socket.socket] = {}
    with socket.create_server(where) as server:
        while len(joined) < world_size - 1:
            server.settimeout(max(0.0, deadline - time.monotonic()))
            try:
                conn, _ = server.accept()
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                line = conn.makefile("rb").readline()
            except (socket.timeout, OSError):
                missing = sorted(set(range(1, world_size)) - set(joined))
                for conn in joined.values():
                    conn.close()
                raise DistributedError(f"replica(s) {', '.join(map(str, missing))} of {world_size} did not come up "
                                       f"within {timeout:.0f} s") from None
            joined[int(line.strip() or -1)] = conn
        for conn in joined.values():
            with conn:
                conn.sendall(b"go\n")


def _follow(rank: int, where: tuple[str, int], deadline: float, timeout: float) -> None:
    while True:
        try:
            conn = socket.create_connection(where, timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            break
        except OSError:
            if time.monotonic() >= deadline:
                raise DistributedError(f"replica {rank} could not reach rank 0 at {where[0]}:{where[1]} within "
                                       f"{timeout:.0f} s") from None
            time.sleep(_RETRY_SECONDS)
    with conn:
        conn.sendall(f"{rank}\n".encode())
        conn.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            answer = conn.makefile("rb").readline()
        except (socket.timeout, OSError):
            answer = b""
    if answer.strip() != b"go":
        raise DistributedError(f"replica {rank}: rank 0 stopped before every replica was up")


def timings() -> dict:
    """When this replica came up, was released by the barrier and joined JAX (``time.time()`` values)."""
    return dict(_timings)


def gang_json(store, run_id: str, stage: str, rank: int) -> dict:
    """The timings replica ``rank`` recorded (empty if it did not finish)."""
    key = stage_key(run_id, stage, "gang.json", replica=rank)
    return store.get_json(key) if store.exists(key) else {}


__all__ = ["Distributed", "distributed", "COORDINATOR_PORT", "BARRIER_PORT"]
