"""`voxwatch anomaly nab` and `voxwatch bench detect` as a person runs them (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _voxwatch(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "voxwatch.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_nab_reference_scores_print_as_json(nab_root):
    out = _voxwatch("anomaly", "nab", "--data", str(nab_root), "--reference", "windowedGaussian", "--json")
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)
    assert {k: round(scores[k], 2) for k in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")} == {
        "standard": 39.65, "reward_low_FP_rate": 20.87, "reward_low_FN_rate": 47.41}


def test_nab_without_data_is_a_clear_error(tmp_path):
    out = _voxwatch("anomaly", "nab", "--data", str(tmp_path / "nowhere"))
    assert out.returncode == 2
    assert "no NAB data at" in out.stderr


def test_nab_setting_overrides_are_checked_before_the_run(nab_root):
    unknown = _voxwatch("anomaly", "nab", "--data", str(nab_root), "--set", "no_such_field=1")
    assert unknown.returncode == 2 and "LevelSettings field" in unknown.stderr
    bad = _voxwatch("anomaly", "nab", "--data", str(nab_root), "--artime", "--set", "artime_report_floor=3")
    assert bad.returncode == 2 and "artime_report_floor" in bad.stderr
    lone = _voxwatch("anomaly", "nab", "--data", str(nab_root), "--artime-input", "nab")
    assert lone.returncode == 2 and "needs --artime" in lone.stderr
    loud = _voxwatch("anomaly", "nab", "--data", str(nab_root), "--artime", "loud")
    assert loud.returncode == 2 and "invalid choice" in loud.stderr


@pytest.mark.slow
def test_quiet_artime_mode_scores_above_the_level_view_alone_in_the_service_form(nab_root):
    """`--artime quiet`: ARTime's far clusters beside the level view, with no file range (62.07
    measured; the level view alone 60.58) and no finding on the quiet-day series (test_artime).
    `--novelty off`: the level view alone, not the service's bank with its novelty view."""
    out = _voxwatch("anomaly", "nab", "--data", str(nab_root), "--novelty", "off", "--artime", "quiet", "--json",
                    timeout=900)
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)
    assert scores["detector"] == "robust_level+likelihood+artime(quiet)"
    assert scores["standard"] > 61.0 and scores["at_service_threshold"]["standard"] > 58.5


def test_artime_alone_with_nabs_input_reproduces_its_published_scores(nab_root):
    """NAB's scoreboard: ARTime 74.9 / 65.1 / 80.4 (the port, given each file's range and length as
    NAB's runner gives it: 74.85 / 65.15 / 80.36)."""
    out = _voxwatch("anomaly", "nab", "--data", str(nab_root), "--artime-only", "--json")
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)
    assert scores["detector"] == "artime(nab input)"
    for profile, published in (("standard", 74.9), ("reward_low_FP_rate", 65.1), ("reward_low_FN_rate", 80.4)):
        assert abs(scores[profile] - published) < 0.1, profile


@pytest.mark.slow
def test_detector_on_nab_beats_the_windowed_gaussian_baseline(nab_root):
    out = _voxwatch("anomaly", "nab", "--data", str(nab_root), "--json")
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)
    assert scores["points"] == 365_558
    assert scores["detector"] == "robust_level+context_novelty(quiet)+likelihood"  # the service's bank
    assert scores["standard"] > 39.65  # windowedGaussian's standard score
    fixed = scores["at_service_threshold"]  # the service's own operating point, no sweep
    assert fixed["threshold"] == 0.4
    assert 0 < fixed["standard"] <= scores["standard"]  # the sweep picks the best threshold after the fact


@pytest.mark.slow
def test_novelty_mode_finds_windows_the_level_detector_misses(nab_root):
    level = json.loads(_voxwatch("anomaly", "nab", "--data", str(nab_root), "--json", "--novelty", "off").stdout)
    assert level["detector"] == "robust_level+likelihood"
    out = _voxwatch("anomaly", "nab", "--data", str(nab_root), "--json", "--novelty")
    assert out.returncode == 0, out.stderr
    novelty = json.loads(out.stdout)
    assert novelty["detector"] == "robust_level+context_novelty(nab)+likelihood"
    found = novelty["details"]["standard"]["true_positives"]
    assert found > level["details"]["standard"]["true_positives"]
    assert novelty["standard"] > level["standard"]


def test_bench_detect_reports_both_paths_and_their_ratio():
    out = _voxwatch("bench", "detect", "--json", "--series", "50", "--ticks", "200", "--streaming-points", "200")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["bench"] == "detect" and r["series"] == 50
    assert r["vectorised_points_per_s"] > 0 and r["streaming_us_per_point"] > 0 and r["service_points_per_s"] > 0
    assert r["artime_mode_points_per_s"] > 0  # the opt-in ARTime mode's rate is stated beside it
    assert r["artime_bank_bytes_per_series"] > 0  # and its bank's memory
    # ... the vectorised bank's beside the per-series loop's, measured in the same run; the ratios are
    # printed to 0.1 (at this size the bank's lead can be near 2, where 0.05 is more than 1%)
    assert r["artime_loop_mode_points_per_s"] > 0 and r["speedup_artime_bank_over_loop"] == pytest.approx(
        r["artime_mode_points_per_s"] / r["artime_loop_mode_points_per_s"], abs=0.06)
    assert r["speedup_vectorised_over_streaming"] == pytest.approx(
        r["vectorised_points_per_s"] / r["streaming_points_per_s"], abs=0.06)


def test_bench_artime_memory_gives_each_series_its_own_room_against_the_padded_layout():
    """One series that keeps opening categories (the bench's chirp) among noise series: the bank
    holds each series' own room, the padded layout held the outlier's for every series."""
    out = _voxwatch("bench", "artime_memory", "--json", "--series", "50", "--ticks", "2000")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["categories_outlier"] == r["categories_max"] > 2 * r["categories_mean"]
    # the padded layout: every series room for the outlier's count (doubling from 16), 35 values each
    cap = 16
    while cap < r["categories_max"]:
        cap *= 2
    assert r["padded_category_bytes_per_series"] == cap * 35 * 8
    # the pool: about the mean count's room (35 values of 8 bytes a category, some to spare)
    assert r["categories_mean"] * 35 * 8 <= r["category_bytes_per_series"] < r["padded_category_bytes_per_series"]
    assert r["artime_bank_bytes_per_series"] >= r["category_bytes_per_series"]


def test_lead_time_replays_a_longer_normal_day_and_refuses_a_bad_duration(tmp_path):
    bad = _voxwatch("anomaly", "lead-time", "--scenario", "none", "--baseline-duration", "-60")
    assert bad.returncode != 0 and "--baseline-duration must be a positive number" in bad.stderr
    out = _voxwatch("anomaly", "lead-time", "--scenario", "none", "--calls", "200", "--baseline-duration", "600",
                    "--artime", "quiet", "--store", f"chdb://{tmp_path}", "--json", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    baseline = json.loads(out.stdout)["baseline"]
    assert baseline["scenario"] == "baseline" and baseline["duration_s"] == 600
    assert baseline["findings"] == len(baseline["findings_list"])
