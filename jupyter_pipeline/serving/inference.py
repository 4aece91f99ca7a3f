"""The one path from a request's bytes to a response's bytes, shared by REST and gRPC.

Resolve the model version, look in the prediction cache, decode with the protocol's
:class:`Codec`, await the version's batcher, encode, remember. Per-version counts and cumulative
times (:class:`ModelStats`, the shape of Triton's statistics) and the Prometheus metrics are kept
here too, so every front counts the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..exceptions import PipelineError
from ..registry import Registry
from . import oip, tfserving
from .errors import PredictionFailed
from .protocol import Answer, InferRequest, Signature

log = logging.getLogger("jupyter_pipeline.serving")


@dataclass(frozen=True)
class Codec:
    """A protocol's request decoder and response encoder; ``name`` labels metrics and cache keys."""

    name: str
    decode: Callable[[bytes, Signature, int | None], InferRequest]
    encode: Callable[[str, int, Signature, InferRequest, list[np.ndarray]], Answer]


#: Codecs by protocol name.
codecs: Registry[Codec] = Registry("inference protocol")


class ModelStats:
    """Counts and cumulative nanoseconds of one model version (Triton's statistics extension)."""

    _KINDS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit",
              "cache_miss")

    def __init__(self):
        self.times = {k: [0, 0] for k in self._KINDS}  # kind -> [count, ns]
        self.inference_count = 0  # rows (samples) answered
        self.last_inference = 0  # ms since the epoch

    def add(self, kind: str, ns: int) -> None:
        entry = self.times[kind]
        entry[0] += 1
        entry[1] += ns

    def to_json(self, name: str, version: int, execution_count: int) -> dict:
        return {"name": name, "version": str(version), "last_inference": self.last_inference,
                "inference_count": self.inference_count, "execution_count": execution_count,
                "inference_stats": {k: {"count": c, "ns": ns} for k, (c, ns) in self.times.items()},
                "batch_stats": []}


class Inference:
    """Answers inference requests for a server's repository, cache and metrics."""

    def __init__(self, repository, cache, metrics):
        self.repository = repository
        self.cache = cache
        self.metrics = metrics

    def cached(self, name: str, version: str | None, codec: Codec, body: bytes,
               header_length: int | None = None) -> tuple[Answer, object] | None:
        """The cached answer, without waiting for anything, or None (then call the inference itself).

        Counts a hit as :meth:`__call__` does; a miss is left for that call to count.
        """
        cache = self.cache
        if cache is None:
            return None
        started = time.perf_counter_ns()
        try:
            served = self.repository.get(name, version)
        except PipelineError:
            return None  # the full path answers with the error
        if served is None:
            return None
        answer = cache.get(cache.key(name, served.version, codec.name, body, header_length), count_miss=False)
        if answer is None:
            return None
        self._hit(served.stats, time.perf_counter_ns() - started)
        return answer, served

    def _hit(self, stats: "ModelStats", ns: int) -> None:
        self.metrics.cache_hits.inc()
        stats.add("cache_hit", ns)
        stats.add("success", ns)
        stats.last_inference = time.time_ns() // 1_000_000

    async def __call__(self, name: str, version: str | None, codec: Codec, body: bytes,
                       header_length: int | None = None) -> tuple[Answer, object, str]:
        """``(answer, served model version, cache state)`` for one request body."""
        started = time.perf_counter_ns()
        served = await self.repository.resolve(name, version)
        stats: ModelStats = served.stats
        cache, key, state = self.cache, None, "-"
        try:
            if cache is not None:
                key = cache.key(name, served.version, codec.name, body, header_length)
                answer = cache.get(key)
                now = time.perf_counter_ns()
                if answer is not None:
                    self._hit(stats, now - started)
                    return answer, served, "hit"
                self.metrics.cache_misses.inc()
                stats.add("cache_miss", now - started)
                state = "miss"
            t0 = time.perf_counter_ns()
            request = codec.decode(body, served.signature, header_length)
            t1 = time.perf_counter_ns()
            outputs = await self._predict(served, request)
            t2 = time.perf_counter_ns()
            answer = codec.encode(name, served.version, served.signature, request, outputs)
            t3 = time.perf_counter_ns()
        except BaseException:
            stats.add("fail", time.perf_counter_ns() - started)
            raise
        if key is not None:
            cache.put(key, answer)
        stats.add("compute_input", t1 - t0)
        stats.add("compute_infer", t2 - t1)
        stats.add("compute_output", t3 - t2)
        stats.add("success", t3 - started)
        stats.inference_count += request.rows or 1
        stats.last_inference = time.time_ns() // 1_000_000
        return answer, served, state

    @staticmethod
    async def _predict(served, request: InferRequest) -> list[np.ndarray]:
        try:
            return await served.batcher.submit(request.inputs)
        except PipelineError:
            raise
        except Exception as exc:
            log.error("model %s version %s failed on a request", served.name, served.version, exc_info=exc)
            detail = " ".join(str(exc).split())[:300]
            raise PredictionFailed(f"Model '{served.name}' version {served.version} failed on this input: "
                                   f"{detail}") from None


codecs.register("v2", Codec("v2", oip.decode_v2, oip.encode_v2))
codecs.register("v1", Codec("v1", lambda body, signature, _length: tfserving.decode_v1(body, signature),
                            tfserving.encode_v1))
