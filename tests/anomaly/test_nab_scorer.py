"""The NAB scorer reproduces the published scores of the reference detector outputs."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.nab import load_reference_scores, score_corpus
from anomaly.nab.corpus import NabFile

# README of shared/data/nab: standard / reward_low_FP_rate / reward_low_FN_rate
REFERENCE = {
    "numenta": (70.10, 63.21, 74.32),
    "windowedGaussian": (39.65, 20.87, 47.41),
}


def test_corpus_has_58_files_and_116_windows(nab_files):
    assert len(nab_files) == 58
    assert sum(f.n for f in nab_files) == 365_558
    assert sum(len(f.windows) for f in nab_files) == 116


@pytest.mark.parametrize("detector", sorted(REFERENCE))
def test_scorer_matches_reference_scores_for_every_profile(nab_root, nab_files, detector):
    scores = load_reference_scores(nab_root, detector, nab_files)
    report = score_corpus(nab_files, scores)
    got = tuple(report[p].score for p in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"))
    assert got == pytest.approx(REFERENCE[detector], abs=0.006)


def _toy(windows):
    return [NabFile("toy.csv", np.arange(1000.0), np.zeros(1000), windows)]


def test_detection_at_window_start_is_perfect_and_silence_is_null():
    files = _toy([(500, 599)])
    perfect = np.zeros(1000)
    perfect[500] = 1.0
    assert score_corpus(files, [perfect])["standard"].score == pytest.approx(100.0)
    assert score_corpus(files, [np.zeros(1000)])["standard"].score == pytest.approx(0.0)


def test_late_detection_earns_less_than_early_one():
    files = _toy([(500, 599)])
    early, late = np.zeros(1000), np.zeros(1000)
    early[510], late[590] = 1.0, 1.0
    assert score_corpus(files, [early])["standard"].raw > score_corpus(files, [late])["standard"].raw > 0


def test_each_false_positive_row_costs_and_ties_prefer_higher_threshold():
    files = _toy([(500, 599)])
    s = np.zeros(1000)
    s[500] = 1.0
    s[200:203] = 1.0  # three rows before the first window: -0.11 each at threshold 1.0
    rep = score_corpus(files, [s])["standard"]
    assert rep.false_positives == 3
    assert rep.raw == pytest.approx(1.0 - 3 * 0.11)
    assert rep.threshold == 1.0


def test_rows_in_probation_never_count():
    files = _toy([(500, 599)])
    s = np.zeros(1000)
    s[:150] = 1.0  # probation is floor(0.15 * 1000) = 150 rows
    assert score_corpus(files, [s])["standard"].false_positives == 0
