"""Shared fixtures for the anomaly room's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

NAB_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"


@pytest.fixture(scope="session")
def nab_root() -> Path:
    if not (NAB_ROOT / "labels" / "combined_windows.json").is_file():
        pytest.skip(f"NAB data not present at {NAB_ROOT}")
    return NAB_ROOT


@pytest.fixture(scope="session")
def nab_files(nab_root):
    from anomaly.nab import load_corpus

    return load_corpus(nab_root)
