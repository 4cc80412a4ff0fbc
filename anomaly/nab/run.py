"""Streams the anomaly detector over NAB and scores it.

All 58 files tick together through the vectorised path (file k's i-th row is series k's i-th
point; a file that has ended is missing from later ticks), so each point is seen once, in order,
with no look-ahead, and every file shares one parameter set: the service's own level settings.
A row's anomaly score is the findings stage's likelihood score, held at 0 while that series is
cooling down after a finding, because the service would not page again then either.

Besides the sweep (NAB's own rule: the best threshold over the corpus, picked after the fact) the
run is scored at the service's fixed finding threshold (`LevelSettings.threshold`): a row is a
detection exactly when the service would page, which is what the score means in operation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from anomaly.artime import ARTime, LevelWithArtime
from anomaly.artime_bank import ARTimeVectorBank
from anomaly.nab.corpus import NabFile, load_corpus
from anomaly.nab.scoring import ScoreReport, score_corpus
from anomaly.service import AnomalySettings, LevelSettings


@dataclass
class NabRun:
    reports: dict[str, ScoreReport]
    at_threshold: dict[str, ScoreReport]  # rows at or above the service's fixed threshold, no sweep
    threshold: float
    scores: list[np.ndarray]
    seconds: float
    points: int
    skipped: dict[str, int]


def nab_input_artime(f: NabFile, max_match: float = 1.0) -> ARTime:
    """ARTime as NAB runs it (nab/detectors/ARTime): told the file's minimum, maximum and length
    (its probation is 15% of the file, at most 750 points). Look-ahead NAB allows ARTime; a
    service cannot have it."""
    return ARTime(probation=f.probation, low=float(np.min(f.values)), high=float(np.max(f.values)),
                  max_match=max_match)


def nab_input_bank(files: list[NabFile], max_match: float = 1.0) -> ARTimeVectorBank:
    """`nab_input_artime` for every file at once: the vectorised bank, each file's own range and
    probation (the same scores as one ARTime per file)."""
    return ARTimeVectorBank(len(files), probation=[f.probation for f in files],
                            low=[float(np.min(f.values)) for f in files],
                            high=[float(np.max(f.values)) for f in files], max_match=max_match)


def artime_scores(files: list[NabFile], vectorised: bool = True) -> list[np.ndarray]:
    """ARTime alone, with NAB's input: its anomaly score per row. All files tick together through
    the vectorised bank (file k's i-th row is series k's i-th point, every row as NAB hands it), or
    with `vectorised` off, one ARTime per file, one row at a time (the reference)."""
    if not vectorised:
        out = []
        for f in files:
            det = nab_input_artime(f)
            out.append(np.array([det.process_one(v) for v in f.values]))
        return out
    bank, lengths = nab_input_bank(files), np.array([f.n for f in files])
    values = np.full((int(lengths.max()), len(files)), np.nan)
    for k, f in enumerate(files):
        values[: f.n, k] = f.values
    scores = np.array([bank.update(row, np.flatnonzero(i < lengths)) for i, row in enumerate(values)])
    return [scores[: f.n, k] for k, f in enumerate(files)]


def detector_scores(files: list[NabFile], settings: LevelSettings | None = None,
                    artime_nab_input: bool = False) -> tuple[list[np.ndarray], dict]:
    s = settings or AnomalySettings().level  # the service's own
    n = len(files)
    length = max(f.n for f in files)
    ts = np.full((length, n), np.nan)
    values = np.full((length, n), np.nan)
    for k, f in enumerate(files):
        ts[: f.n, k], values[: f.n, k] = f.ts, f.values
    det, gate = s.detector(n), s.gate(n)
    if artime_nab_input:
        if not isinstance(det, LevelWithArtime):
            raise ValueError("NAB's input for ARTime needs the settings' artime on")
        det.artime = nab_input_bank(files, s.artime_max_match)
        det.every_value = True
    out = np.zeros((length, n))
    for i in range(length):
        raw = det.update(ts[i], values[i])
        g = gate.update(ts[i], raw.score, calibrated=raw.calibrated, episodic=raw.episodic)
        out[i] = np.where(g.cooling, 0.0, np.nan_to_num(g.score))
    return [out[: f.n, k] for k, f in enumerate(files)], dict(det.skipped)


def run_nab(root, settings: LevelSettings | None = None, artime_nab_input: bool = False,
            artime_only: bool = False) -> NabRun:
    """The level bank over NAB (with ARTime beside it where the settings say so; given each file's
    range and length as NAB gives ARTime with `artime_nab_input`), or ARTime alone with NAB's input
    (`artime_only`)."""
    s = settings or AnomalySettings().level  # the service's own
    files = load_corpus(root)
    started = time.perf_counter()
    if artime_only:
        scores, skipped = artime_scores(files), {}
    else:
        scores, skipped = detector_scores(files, s, artime_nab_input)
    seconds = time.perf_counter() - started
    fixed = [(x >= s.threshold).astype(float) for x in scores]
    return NabRun(score_corpus(files, scores), score_corpus(files, fixed), s.threshold, scores, seconds,
                  sum(f.n for f in files), skipped)
