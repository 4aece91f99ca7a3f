"""The prediction cache: an LRU of whole responses, bounded by entry count and by bytes.

The key is the model name, the *resolved* version, the protocol, the length of a binary
request's JSON part and the exact request body, so a hit skips decoding, the model and encoding
alike, and a newly served version can never
answer from an older version's entries. Only the server's event-loop thread touches a cache, so
it takes no lock.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

# What a key tuple and an entry cost beyond the body and response bytes themselves.
_OVERHEAD = sys.getsizeof(OrderedDict()) // 4 + 200


class PredictionCache:
    """LRU mapping ``(model, version, protocol, json length, body) -> response`` (anything with a ``len``)."""

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a prediction cache needs room for at least one entry")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.bytes = 0
        self._entries: OrderedDict[tuple, bytes] = OrderedDict()

    @staticmethod
    def key(model: str, version: int, protocol: str, body: bytes, json_length: int | None = None) -> tuple:
        return (model, version, protocol, json_length, body)

    @staticmethod
    def _cost(key: tuple, value) -> int:
        return len(key[-1]) + len(value) + _OVERHEAD

    def get(self, key: tuple, count_miss: bool = True):
        """The cached response for ``key`` (marking it most recent), or ``None``; counts hit/miss
        (a caller that will ask again on a miss passes ``count_miss=False`` the first time)."""
        value = self._entries.get(key)
        if value is None:
            self.misses += count_miss
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: tuple, value) -> bool:
        """Store ``value``; evict least-recent entries to fit. Too-large values are not stored."""
        cost = self._cost(key, value)
        if cost > self.max_bytes:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= self._cost(key, old)
        self._entries[key] = value
        self.bytes += cost
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            k, v = self._entries.popitem(last=False)
            self.bytes -= self._cost(k, v)
            self.evictions += 1
        return True

    def drop_model(self, model: str, keep_versions: set[int] | None = None) -> None:
        """Forget entries of ``model`` (except ``keep_versions``): frees memory after a swap."""
        for key in [k for k in self._entries if k[0] == model and (keep_versions is None or k[1] not in keep_versions)]:
            self.bytes -= self._cost(key, self._entries.pop(key))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
