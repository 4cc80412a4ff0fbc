"""A metric's cardinality is a resource: it saturates against the metric's series limit.

New label sets appearing as the system grows (an autoscaler adding a worker pool, a new region)
are not incidents; a label leak climbing towards the limit, after which label sets fold into
`__overflow__` and are lost to analysis, is one worth a forecast.
"""

from __future__ import annotations

import numpy as np

from anomaly.service import AnomalyService
from telemetry.catalog import default_catalog
from telemetry.clock import VirtualClock
from telemetry.instruments import Telemetry
from telemetry.snapshot import Snapshotter

T0 = 1_700_000_000.0
CARD, LIMIT = "voxwatch_instrument_series", "voxwatch_instrument_series_limit"


def test_the_snapshotter_publishes_each_metric_s_series_limit_beside_its_cardinality():
    tel = Telemetry(clock=VirtualClock(T0), series_limit=50)
    for pool in ("crm", "orders", "llm"):
        tel["voxwatch_pool_connections_in_use"].labels(pool=pool).set(1)
    Snapshotter(tel, sink=None).snapshot_once()
    card = tel[CARD].labels(metric="voxwatch_pool_connections_in_use")
    limit = tel[LIMIT].labels(metric="voxwatch_pool_connections_in_use")
    assert card._g._value.get() == 3
    assert limit._g._value.get() == 50


def _run(cardinality_at):
    catalog = default_catalog()
    service = AnomalyService(clock=VirtualClock(T0), catalog=catalog)
    found = []
    for i in range(480):  # two hours at the service's 15 s step
        t = T0 + 15.0 * i
        labels = {"metric": "voxwatch_autoscaler_scale_events_total"}
        found += service.observe(t, [(LIMIT, labels, 10_000.0), (CARD, labels, cardinality_at(i))])
    return service, found


def test_label_sets_appearing_in_steps_are_not_a_finding():
    # a handful of new label sets over two hours, as resources scale out: 4, then 6, then 7
    service, found = _run(lambda i: 4.0 if i < 160 else 6.0 if i < 320 else 7.0)
    assert found == []
    assert service.stats()["series"]["saturation"] == 1  # watched against its limit, not as a level


def test_a_label_leak_is_forecast_to_reach_the_series_limit():
    # a label carrying a call id: 70 new series a minute, the 10,000 limit reached in about two hours
    rng = np.random.default_rng(3)
    _service, found = _run(lambda i: 200.0 + 17.5 * i + rng.integers(0, 5))
    assert found, "a leak heading for the series limit must be forecast"
    first = found[0]
    assert first.kind == "saturation_trend" and first.metric == CARD
    assert 0 < first.time_to_exhaustion_s < 2 * 3600
    assert "exhausted in" in first.reason
