"""`voxwatch bench alerts` at a small size: both evaluators watch one replay, each page reaches the
bench's receiver over real HTTP, and the run ends cleanly (the baseline engine's keep-alive
connections are closed on the replay's own loop; closing them after it crashed the bench).
(The delays are the benchmark's figures, not asserted here.)"""

from __future__ import annotations

import argparse

from voxwatch.bench import alerts as bench_alerts


def test_small_alerting_delay_run_pages_both_evaluators():
    p = argparse.ArgumentParser()
    bench_alerts.add_arguments(p)
    r = bench_alerts.run(p.parse_args(["--scenario", "october-3", "--calls", "200", "--duration", "1500"]))
    s = r["scenarios"]["october-3"]
    assert s["voxwatch"]["first_page_s"] is not None and s["prometheus_defaults"]["first_page_s"] is not None
    assert s["voxwatch"]["first_page_s"] >= s["condition_first_held_s"]
    assert set(s["targets"]) == {"page_within_30s_of_condition", "action_within_3s_of_page"}
