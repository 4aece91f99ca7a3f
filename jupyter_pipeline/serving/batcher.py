"""Adaptive batching: concurrent requests for one model version coalesce into one model call.

One batch runs at a time per model version, on a worker thread so the event loop keeps reading
requests. Requests that arrive while a batch runs queue up and form the next batch, so batches
grow with load and a lone request never waits. When recent batches held several requests (the
server is under concurrent load), the batcher also waits up to ``max_wait_ms`` for the next batch
to fill before calling the model. Requests whose inputs differ beyond the batch dimension (a free
sequence length, say) are batched only with requests of the same shape. A model whose calls take
less than ``inline_below`` seconds (measured) runs on the event loop itself: for such models the
hand-off to a worker thread would cost more than the call.
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class _Item:
    inputs: dict[str, np.ndarray]
    rows: int
    shape_key: tuple
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Queue requests for ``predict`` and run them in batches of at most ``max_batch_size`` rows."""

    def __init__(self, predict: Callable[[dict], list], executor: Executor, max_batch_size: int = 32,
                 max_wait_ms: float = 2.0, batchable: bool = True,
                 on_batch: Callable[[int, int, float], None] | None = None, inline_below: float = 0.0005):
        self.predict = predict
        self.executor = executor
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.batchable = batchable
        self.on_batch = on_batch  # (requests, rows, seconds) after every model call
        self.calls = 0
        self.requests = 0
        self._queue: collections.deque[_Item] = collections.deque()
        self._running = False
        self._arrival: asyncio.Future | None = None  # set while a batch waits to fill
        self._recent = 1.0  # moving average of requests per batch: > 1 means concurrent load
        self.inline_below = inline_below
        self._model_seconds = float("inf")  # moving average of one model call; unknown at first

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def submit(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs for ``inputs`` (this request's rows only), computed in some batch."""
        loop = asyncio.get_running_loop()
        rows = next(iter(inputs.values())).shape[0] if self.batchable else 0
        key = tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(inputs.items()))
        item = _Item(inputs, rows, key, loop.create_future())
        self._queue.append(item)
        if self._arrival is not None:
            _wake(self._arrival)
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return await item.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self.max_wait and self.batchable and self._recent > 1.5:
                    await self._fill(loop)
                batch = self._take()
                await self._run(loop, batch)
        finally:
            self._running = False

    async def _fill(self, loop) -> None:
        """Wait (at most ``max_wait``) for the queue to hold a full batch."""
        deadline = loop.time() + self.max_wait
        while sum(i.rows for i in self._queue) < self.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrival = waiter = loop.create_future()
            timer = loop.call_later(remaining, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._arrival = None

    def _take(self) -> list[_Item]:
        first = self._queue.popleft()
        batch = [first]
        if not self.batchable:
            return batch
        rows = first.rows
        rest = collections.deque()
        while self._queue:
            item = self._queue.popleft()
            if item.shape_key == first.shape_key and rows + item.rows <= self.max_batch_size:
                batch.append(item)
                rows += item.rows
            else:
                rest.append(item)
        self._queue.extendleft(reversed(rest))
        return batch

    def _timed(self, feed):
        started = time.perf_counter()
        outputs = self.predict(feed)
        return outputs, time.perf_counter() - started

    async def _run(self, loop, batch: list[_Item]) -> None:
        if len(batch) == 1:
            feed = batch[0].inputs
        else:
            feed = {name: np.concatenate([i.inputs[name] for i in batch]) for name in batch[0].inputs}
        try:
            if self._model_seconds < self.inline_below:
                # A thread hop costs two wake-ups (~0.1 ms, more on a busy machine); a model call
                # shorter than that is cheaper run right here, and requests arriving meanwhile
                # still queue up for the next batch.
                outputs, elapsed = self._timed(feed)
            else:
                outputs, elapsed = await loop.run_in_executor(self.executor, self._timed, feed)
        except Exception as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        finally:
            self.calls += 1
            self.requests += len(batch)
            self._recent = 0.8 * self._recent + 0.2 * len(batch)
        self._model_seconds = elapsed if self._model_seconds == float("inf") else \
            0.9 * self._model_seconds + 0.1 * elapsed
        if self.on_batch:
            self.on_batch(len(batch), sum(i.rows for i in batch), elapsed)
        start = 0
        for item in batch:
            if item.future.done():  # the client went away
                start += item.rows
                continue
            if len(batch) == 1:
                item.future.set_result(outputs)
            else:
                item.future.set_result([o[start:start + item.rows] for o in outputs])
            start += item.rows


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
