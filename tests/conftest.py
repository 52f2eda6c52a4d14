"""Shared test fixtures: where the real exchange data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

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
