"""The TTL cache's warm start: a simulated mid-day cache that starts empty must not expire in one wave."""

from __future__ import annotations

import numpy as np

from pipeline.caches import TTLCache


def _expiry_times(cache: TTLCache, keys, now: float) -> np.ndarray:
    for k in keys:
        cache.put(k, k, now)
    return np.array([cache._data[k][0] for k in keys])


def test_a_cold_cache_fills_in_one_wave_that_expires_together():
    cache = TTLCache("product_info", capacity=10_000, ttl_s=3600)
    expires = _expiry_times(cache, range(1000), now=0.0)
    assert np.all(expires == 3600.0)
    assert cache.get(1, 3599.0) == 1 and cache.get(1, 3600.0) is None


def test_a_warm_started_cache_spreads_its_first_fill_over_one_ttl_then_caches_for_the_full_ttl():
    cache = TTLCache("product_info", capacity=10_000, ttl_s=3600)
    cache.warm_start(0.0, seed=11)
    expires = _expiry_times(cache, range(1000), now=10.0)
    assert np.all((expires > 10.0) & (expires <= 3610.0))
    # remaining lives spread evenly over the TTL: each tenth of it holds about a tenth of the entries
    counts, _ = np.histogram(expires - 10.0, bins=10, range=(0, 3600))
    assert counts.min() > 60 and counts.max() < 140
    # a second cache with the same seed draws the same lives (replays are reproducible)
    again = TTLCache("product_info", capacity=10_000, ttl_s=3600)
    again.warm_start(0.0, seed=11)
    assert np.array_equal(_expiry_times(again, range(1000), now=10.0), expires)
    # past the first TTL a fill is an ordinary one
    assert _expiry_times(cache, ["late"], now=3600.0)[0] == 7200.0
