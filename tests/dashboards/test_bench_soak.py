"""The short soak `make test` runs (`voxwatch bench soak` runs the long one): live calls into the
store while the dashboard polls and an analyst queries through the API; nothing handed to the sink
is lost, every dashboard request and analyst query is answered, and memory is sampled throughout.
(Timings and growth are the benchmark's figures, not asserted here.)"""

from __future__ import annotations

import argparse

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
