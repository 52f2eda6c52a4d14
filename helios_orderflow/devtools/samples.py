"""Sample data bundled with the package (real exchange data, with its notices beside it)."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent / "data" / "samples"

#: Binance spot BTCUSDT, about 11 minutes of depth diffs, trades and bookTicker (MIT, hftbacktest).
BINANCE_BTCUSDT_FILES = (
    SAMPLES_DIR / "binance-spot-btcusdt" / "btcusdt_20240808.gz",
    SAMPLES_DIR / "binance-spot-btcusdt" / "btcusdt_20240809.gz",
)
