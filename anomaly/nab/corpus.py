"""Reading NAB: data files, labelled windows (as row ranges) and reference detector outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class NabFile:
    """One NAB series: its timestamps (epoch seconds), values, and windows as inclusive row ranges."""

    name: str  # "<category>/<file>.csv", the key used by the labels
    ts: np.ndarray  # float64 epoch seconds
    values: np.ndarray  # float64
    windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def probation(self) -> int:
        """Rows at the start that count for nothing: min(floor(0.15 n), 750)."""
        return min(int(np.floor(0.15 * self.n)), 750)


def _epoch_seconds(stamps: pd.Series) -> np.ndarray:
    return pd.to_datetime(stamps).astype("datetime64[ns]").astype("int64").to_numpy() / 1e9


def _window_rows(ts: np.ndarray, start: str, end: str) -> tuple[int, int]:
    lo, hi = _epoch_seconds(pd.Series([start, end]))
    a = int(np.searchsorted(ts, lo, side="left"))
    b = int(np.searchsorted(ts, hi, side="right")) - 1
    return a, b


def load_corpus(root: str | Path) -> list[NabFile]:
    """Every data file under `root/data`, sorted by name, with its labelled windows."""
    root = Path(root)
    labels_path = root / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise FileNotFoundError(f"no NAB labels at {labels_path}")
    labels = json.loads(labels_path.read_text())
    files = []
    for name in sorted(labels):
        frame = pd.read_csv(root / "data" / name)
        ts = _epoch_seconds(frame["timestamp"])
        windows = [_window_rows(ts, s, e) for s, e in labels[name]]
        windows = [(a, b) for a, b in windows if b >= a]
        files.append(NabFile(name, ts, frame["value"].to_numpy(dtype=float), windows))
    return files


def load_reference_scores(root: str | Path, detector: str, files: list[NabFile]) -> list[np.ndarray]:
    """A published detector's anomaly scores, aligned row for row with `files`."""
    root = Path(root) / "reference" / detector
    out = []
    for f in files:
        frame = pd.read_csv(root / f"{f.name}.gz")
        scores = frame["anomaly_score"].to_numpy(dtype=float)
        if len(scores) != f.n:
            raise ValueError(f"{detector}/{f.name}: {len(scores)} scores for {f.n} rows")
        out.append(scores)
    return out
