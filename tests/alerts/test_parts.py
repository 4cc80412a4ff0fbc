"""Small parts: annotation templates, the metric view's windows and counters, histogram quantiles,
the Retry-After parser and the webhook body's common labels."""

from __future__ import annotations

import math

import pytest

from alerts.receivers.base import classify, parse_retry_after
from alerts.receivers.webhook import common
from alerts.series import MetricView
from alerts.templates import TemplateError, check_template, render


def test_templates_render_labels_values_and_pipes():
    labels = {"pool": "orders", "alertname": "PoolSaturationForecast"}
    assert render("Pool {{ $labels.pool }} full in {{ $value | humanizeDuration }}", labels, 754.0) == "Pool orders full in 12m34s"
    # a pool already full forecasts 0 s: Prometheus writes "0s", never "0ms"
    assert render("{{ $value | humanizeDuration }} left", labels, 0.0) == "0s left"
    assert render("{{ $value | humanizeDuration }}", labels, 0.25) == "250ms"
    assert render("{{ $value | humanizePercentage }}", labels, 0.953) == "95.3%"
    assert render('{{ $value | printf "%.1f" }}x', labels, 14.44) == "14.4x"
    assert render("{{ $value | humanize }}", labels, 15300) == "15.3k"
    assert render("{{ $labels.missing }}|{{ $alertname }}", labels, 0) == "|PoolSaturationForecast"


@pytest.mark.parametrize("bad", ["{{ $value | shout }}", "{{ .Value }}", "{{ $value", '{{ $value | printf "%q" }}'])
def test_bad_templates_are_refused(bad):
    with pytest.raises(TemplateError):
        check_template(bad)


def test_view_windows_and_counter_increase_with_a_reset():
    v = MetricView(fine_retention=100, coarse_step=10)
    for t in range(0, 60):
        v.ingest(float(t), [("c_total", {"a": "1"}, float(t if t < 30 else t - 30))])  # reset at t=30
    (s,) = v.select("c_total", {"a": "1"})
    assert s.increase(10, 20) == 10
    assert s.increase(25, 40) == 10  # the counter restarted from 0: counted from zero, not negative
    assert s.window(50, 59) == [float(t - 30) for t in range(51, 60)]


def test_view_ignores_nan_and_out_of_order_samples():
    v = MetricView()
    v.ingest(10.0, [("g", {}, 1.0)])
    v.ingest(9.0, [("g", {}, 5.0)])
    v.ingest(11.0, [("g", {}, math.nan)])
    (s,) = v.select("g")
    assert s.ts == [10.0] and s.values == [1.0]


def test_view_keeps_coarse_history_for_long_windows():
    v = MetricView(fine_retention=120, coarse_step=60)
    for t in range(0, 4000, 1):
        v.ingest(float(t), [("c_total", {}, float(t))])
    (s,) = v.select("c_total")
    assert s.ts[0] > 3000  # fine history trimmed
    assert s.increase(3999 - 3600, 3999) == pytest.approx(3600, abs=60)  # the 1 h window still answers


def test_retry_after_seconds_and_http_dates():
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now_wall=1445412470.0) == pytest.approx(10)
    assert parse_retry_after("soon") is None
    assert classify(202) == (True, False) and classify(400) == (False, False)
    assert classify(429) == (False, True) and classify(503) == (False, True)


def test_common_labels_are_those_all_alerts_share():
    assert common([{"a": "1", "b": "2"}, {"a": "1", "b": "3"}]) == {"a": "1"}
    assert common([]) == {}
