"""The arithmetic behind the query API: histogram quantiles as Prometheus computes them, counter
increases across restarts, label matchers and time ranges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from telemetry.quantiles import histogram_quantiles
from telemetry.store import reads


def test_histogram_quantile_interpolates_inside_the_bucket_like_prometheus():
    bounds = np.array([0.1, 0.2, 0.3, np.inf])
    cum = np.array([[10.0, 30.0, 60.0, 100.0]])
    # rank 50 falls in (0.2, 0.3] with 30 below and 30 inside: 0.2 + 0.1 * 20/30
    assert histogram_quantiles(0.5, bounds, cum)[0] == pytest.approx(0.2 + 0.1 * 20 / 30)
    # rank 5 falls in the first bucket, interpolated from 0
    assert histogram_quantiles(0.05, bounds, cum)[0] == pytest.approx(0.05)
    # rank 99 falls in +Inf: the answer is the largest finite bound
    assert histogram_quantiles(0.99, bounds, cum)[0] == pytest.approx(0.3)
    # no observations: no answer
    assert np.isnan(histogram_quantiles(0.5, bounds, np.zeros((1, 4)))[0])


def test_counter_increase_counts_a_restart_from_zero():
    df = pd.DataFrame({"fingerprint": [1, 1, 1, 2], "t": [0, 60, 120, 0], "min_v": [100.0, 110, 3, 5],
                       "last_v": [110.0, 130, 7, 9]})
    # series 1: 110-100, 130-110, then a restart (7 < 130) counts 7; series 2 starts fresh: 9-5
    assert list(reads._increase(df)) == [10.0, 20.0, 7.0, 4.0]


def test_label_matchers_parse_prometheus_operators_and_quotes():
    ms = reads.parse_matchers(['pool="crm"', "region!=eu-west", "stage=~stt|tts", "le!~0\\.1"])
    assert [(m.name, m.op, m.value) for m in ms] == [("pool", "=", "crm"), ("region", "!=", "eu-west"),
                                                     ("stage", "=~", "stt|tts"), ("le", "!~", "0\\.1")]
    params: dict = {}
    sql = reads._matcher_sql(ms[2:3], params)
    assert "match(" in sql and params["lv0"] == "^(?:stt|tts)$"  # anchored like Prometheus


def test_time_range_defaults_and_step_rounding():
    tr = reads.time_range(None, None, None, now_ms=10 * 86_400_000)
    assert tr.end_ms - tr.start_ms == 3_600_000 and tr.step_ms == 15_000
    day = reads.time_range(0, 86_400_000, None, now_ms=0)
    assert day.step_ms == 360_000 and day.step_ms % 60_000 == 0  # whole minutes: the rollups answer
    assert reads.choose_source(day, "auto") == "rollup"
    assert reads.choose_source(tr, "auto") == "raw"
    with pytest.raises(reads.BadQuery, match="at least 1 second"):
        reads.time_range(0, 1000, 0.5, now_ms=0)


def test_percentiles_accept_fractions_and_percent():
    assert reads.parse_quantiles("0.5, 95,99.9") == [0.5, 0.95, pytest.approx(0.999)]
    with pytest.raises(reads.BadQuery, match="at most 10"):
        reads.parse_quantiles(",".join(["0.5"] * 11))
