"""Prometheus metrics of one server, in a registry of its own (two servers in one process, as in
tests, do not share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """Request, batch, cache and model-version metrics, exported at ``/metrics``."""

    def __init__(self, cache=None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("jp_serving_requests", "Inference requests by model, protocol and HTTP status.",
                                ["model", "protocol", "status"], registry=r)
        self.latency = Histogram("jp_serving_request_seconds", "Inference request latency in seconds.",
                                 ["model", "protocol", "status"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_requests = Histogram("jp_serving_batch_requests", "Requests coalesced into one model call.",
                                        ["model"], buckets=_BATCH_BUCKETS, registry=r)
        self.batch_rows = Histogram("jp_serving_batch_rows", "Rows (samples) in one model call.",
                                    ["model"], buckets=_BATCH_BUCKETS, registry=r)
        self.model_seconds = Histogram("jp_serving_model_seconds", "Time in the model per call.",
                                       ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.loaded = Gauge("jp_serving_model_version_loaded", "1 for each loaded model version.",
                            ["model", "version"], registry=r)
        self.load_failures = Counter("jp_serving_model_load_failures", "Model versions that failed to load.",
                                     ["model"], registry=r)
        self.in_flight = Gauge("jp_serving_requests_in_flight", "Requests being handled now.", registry=r)
        self.cache_hits = Counter("jp_serving_cache_hits", "Prediction cache hits.", registry=r)
        self.cache_misses = Counter("jp_serving_cache_misses", "Prediction cache misses.", registry=r)
        self.cache_entries = Gauge("jp_serving_cache_entries", "Entries in the prediction cache.", registry=r)
        self.cache_bytes = Gauge("jp_serving_cache_bytes", "Bytes held by the prediction cache.", registry=r)
        self.cache_ratio = Gauge("jp_serving_cache_hit_ratio", "Hits / lookups since start.", registry=r)
        if cache is not None:
            self.cache_entries.set_function(lambda: len(cache))
            self.cache_bytes.set_function(lambda: cache.bytes)
            self.cache_ratio.set_function(lambda: cache.hit_ratio)

    # -- hooks --------------------------------------------------------------------------------
    def observe_request(self, model: str, protocol: str, status: int, seconds: float) -> None:
        self.requests.labels(model, protocol, str(status)).inc()
        self.latency.labels(model, protocol, str(status)).observe(seconds)

    def batch_hook(self, model: str):
        requests = self.batch_requests.labels(model)
        rows = self.batch_rows.labels(model)
        seconds = self.model_seconds.labels(model)

        def on_batch(n_requests: int, n_rows: int, elapsed: float) -> None:
            requests.observe(n_requests)
            rows.observe(n_rows)
            seconds.observe(elapsed)
        return on_batch

    def versions_changed(self, model: str, before: set[int], after: set[int]) -> None:
        for v in before - after:
            self.loaded.remove(model, str(v))
        for v in after - before:
            self.loaded.labels(model, str(v)).set(1)

    def load_failed(self, model: str, version: int) -> None:
        self.load_failures.labels(model).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
