"""Shared test fixtures: where the real exchange data lives."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis: in CI (CI=true) the examples are derandomized, so a run is reproducible and one that passed
# passes again; elsewhere they are random (HYPOTHESIS_PROFILE=ci to replay CI's). Either way an example that
# takes more than 10 s fails as too slow (the fuzzed inputs are a few hundred lines: milliseconds each), so
# input that makes a parser loop cannot hang the suite.
settings.register_profile("ci", derandomize=True, deadline=timedelta(seconds=10), print_blob=True)
settings.register_profile("dev", deadline=timedelta(seconds=10), print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
BTCUSDT_FILES = [
    SHARED_DATA / "binance-spot-btcusdt" / "btcusdt_20240808.gz",
    SHARED_DATA / "binance-spot-btcusdt" / "btcusdt_20240809.gz",
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project (always present in CI). Missing it is an error, not a skip,
    so that a run without the real data cannot pass by testing nothing."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real exchange data not found at {SHARED_DATA}; these tests need ../shared/data")
    return SHARED_DATA


@pytest.fixture(scope="session")
def btcusdt_files(shared_data: Path) -> list[Path]:
    return BTCUSDT_FILES
