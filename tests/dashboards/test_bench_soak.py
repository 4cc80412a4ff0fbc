"""The short soak `make test` runs (`voxwatch bench soak` runs the long one): live calls into the
store while the dashboard polls and an analyst queries through the API; nothing handed to the sink
is lost, every dashboard request and analyst query is answered, and memory is sampled throughout.
(Timings and growth are the benchmark's figures, not asserted here.)"""

from __future__ import annotations

import argparse
import os

import pytest

from voxwatch.bench import soak


def test_short_soak_loses_nothing_and_answers_everyone(store_url):
    p = argparse.ArgumentParser()
    soak.add_arguments(p)
    args = p.parse_args(["--minutes", "0.25", "--calls", "200", "--poll-s", "1", "--analyst-s", "2", "--store", store_url])
    r = soak.run(args)
    assert r["turns"] > 0 and r["handed"]["metric_samples"] > 0 and r["handed"]["calls"] > 0
    assert r["dropped"] == 0 and r["rejected"] == 0 and r["handed"] == r["stored"]
    assert set(r["dashboard_requests"]) == {200} and sum(r["dashboard_requests"].values()) >= 4
    assert set(r["analyst_queries"]) <= {200, 429} and r["analyst_queries"].get(200, 0) >= 1
    assert len(r["rss_mb"]) >= 5 and all(mb > 0 for _, mb in r["rss_mb"])
    assert r["loop_lag"]["samples"] > 0


@pytest.mark.server
def test_short_soak_on_the_server_engine_uses_a_database_of_its_own(clickhouse_server):
    """`--store clickhouse://...`: the same soak against the 18.16 server, in a database the bench
    makes for itself and drops afterwards (the server's other databases are not touched)."""
    from clickhouse_driver import Client

    client = Client("127.0.0.1", port=clickhouse_server.tcp_port)
    before = {r[0] for r in client.execute("SHOW DATABASES")}
    p = argparse.ArgumentParser()
    soak.add_arguments(p)
    url = f"clickhouse://default@127.0.0.1:{clickhouse_server.tcp_port}/voxwatch"
    r = soak.run(p.parse_args(["--minutes", "0.25", "--calls", "200", "--poll-s", "1", "--analyst-s", "2", "--store", url]))
    assert r["store"].startswith("clickhouse://") and r["store"].endswith(f"/voxwatch_bench_soak_{os.getpid()}")
    assert r["handed"]["calls"] > 0 and r["dropped"] == 0 and r["handed"] == r["stored"]
    assert set(r["dashboard_requests"]) == {200}
    assert r["engine_memory_mb"] is None  # the server's memory is not this process's
    assert {r[0] for r in client.execute("SHOW DATABASES")} == before


def test_memory_growth_is_the_fitted_trend_not_two_samples():
    """A flat RSS that wobbles (+-2%) has no growth by the fitted line even when its last sample is
    its highest; a steady leak of 1 MB a minute shows as its slope and its growth over the run."""
    import numpy as np

    seconds = np.arange(0, 1800)
    wobble = 700 * 2**20 * (1 + 0.02 * np.sin(seconds / 7.0))
    flat = [(float(s), int(b)) for s, b in zip(seconds, wobble)]
    flat[-1] = (flat[-1][0], int(714 * 2**20))  # the last sample at the top of the wobble
    m = soak._memory_trend(flat, warmup=300)
    assert abs(m["rss_growth_after_warmup_pct"]) < 0.5 and m["rss_growth_first_last_sample_pct"] > 1.5
    leak = [(float(s), int(700 * 2**20 + s / 60 * 2**20)) for s in seconds]
    m = soak._memory_trend(leak, warmup=300)
    assert m["rss_slope_after_warmup_mb_per_min"] == 1.0
    assert abs(m["rss_growth_after_warmup_pct"] - 25 / 705 * 100) < 0.05
