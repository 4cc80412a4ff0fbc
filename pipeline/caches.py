"""Caches the response stage reads before it calls anything slow: common responses per intent,
customer history, product information. Entries do not change mid-call, so a TTL and an LRU bound
are enough.

Counts (hits, misses, evictions, expirations) are kept here per label (intent) and published to
the metrics once per second by `publish`, so a lookup costs a dict operation, not an instrument call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

_MISSING = object()


class TTLCache:
    def __init__(self, name: str, capacity: int, ttl_s: float, *, metrics=None) -> None:
        self.name = name
        self.capacity = int(capacity)
        self.ttl_s = float(ttl_s)
        self.metrics = metrics
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}
        self.evictions = 0
        self.expirations = 0
        self._published: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable, now: float, label: str = "") -> Any:
        """The cached value, or None on a miss (expired entries count as misses)."""
        entry = self._data.get(key, _MISSING)
        if entry is not _MISSING:
            expires, value = entry
            if expires > now:
                self._data.move_to_end(key)
                self.hits[label] = self.hits.get(label, 0) + 1
                return value
            del self._data[key]
            self.expirations += 1
        self.misses[label] = self.misses.get(label, 0) + 1
        return None

    def put(self, key: Hashable, value: Any, now: float) -> None:
        data = self._data
        if key in data:
            data.move_to_end(key)
        data[key] = (now + self.ttl_s, value)
        if len(data) > self.capacity:
            data.popitem(last=False)
            self.evictions += 1

    def invalidate(self, key: Hashable) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    @property
    def hit_ratio(self) -> float:
        h, m = sum(self.hits.values()), sum(self.misses.values())
        return h / (h + m) if h + m else 0.0

    def publish(self) -> None:
        if self.metrics is not None:
            self.metrics.cache_state(self)


class CacheSet:
    """The caches one pipeline (region) reads: responses, customer history, product info."""

    def __init__(self, caches: dict[str, TTLCache]) -> None:
        self.caches = caches

    def __getitem__(self, name: str) -> TTLCache:
        return self.caches[name]

    def __iter__(self):
        return iter(self.caches.values())

    def publish(self) -> None:
        for c in self.caches.values():
            c.publish()
