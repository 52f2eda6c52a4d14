"""The demo market looks like a real one: the synthetic market against the real Binance BTCUSDT capture, both
measured by one function (``helios_orderflow/devtools/market_figures.py``), with default engine settings; and
the demo configs carry no special settings to make signals appear (``make bench`` prints the same figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helios_orderflow.devtools.market_figures import (
    TOLERANCES,
    MarketFigures,
    compare,
    real_btcusdt_figures,
    synthetic_figures,
)
from helios_orderflow.emulator.synth import synth_events
from helios_orderflow.features.compute import compute_features

ROOT = Path(__file__).resolve().parent.parent
ORIGIN_US = 1_704_067_200_000_000  # 2024-01-01 00:00 UTC
SEED = 1


@pytest.fixture(scope="module")
def real() -> MarketFigures:
    return real_btcusdt_figures()


@pytest.fixture(scope="module")
def synthetic() -> MarketFigures:
    return synthetic_figures(seed=SEED, minutes=30.0)


def test_the_real_capture_gives_the_figures_the_synthetic_market_is_calibrated_on(real: MarketFigures) -> None:
    # 11 minutes of Binance spot BTCUSDT (2024-08-08/09), default settings: 5 USD bins, +/- 0.5 % heatmap range.
    assert real.bin_size == 5.0 and real.candles == 11
    # depth both sides summed, BTC per 0.1 % of distance from mid (complete out to the snapshot's 0.33 %)
    assert [round(v) for v in real.depth_profile] == [90, 85, 39, 15, 11]
    assert [round(v, 2) for v in real.bin_size_q] == [0.33, 2.6, 5.57, 9.56]
    assert real.trade_size_q == pytest.approx((0.00009, 0.00067, 0.0576, 0.324), rel=0.01)
    assert real.trades_per_s == pytest.approx(30.6, abs=0.1)
    assert real.taker_volume_per_min == pytest.approx(40.4, abs=0.1)  # 437.9 BTC taker volume in 10.8 minutes
    assert real.walls_ended == 18
    assert real.wall_lifetime_q[:3] == pytest.approx((18.2, 38.0, 128.8), abs=0.05)
    assert real.walls_per_min == pytest.approx(1.75, abs=0.01)
    assert real.wall_candle_frac == pytest.approx(9 / 11)


def test_the_synthetic_market_matches_the_real_capture_within_the_stated_tolerances(
        synthetic: MarketFigures, real: MarketFigures) -> None:
    rows = compare(synthetic, real)
    assert [r[0] for r in rows] == [t[0] for t in TOLERANCES]
    missed = [f"{name}: synthetic {s:.4g} vs real {r:.4g}, wanted {text}" for name, s, r, text, ok in rows if not ok]
    assert missed == []
    # depth across the whole +/- 0.5 % heatmap range: the outermost bucket holds at least a third of the first
    assert min(synthetic.depth_profile) >= synthetic.depth_profile[0] / 3
    assert synthetic.levels_per_side < 1000  # a venue's 1000-level snapshot holds the whole range


def test_a_30_minute_synthetic_run_with_default_settings_has_walls_in_half_the_candles_and_absorption() -> None:
    f = compute_features(synth_events(["BTC/USDT"], SEED, ORIGIN_US, 30 * 60_000_000), "BTC/USDT",
                         include_partial=False)
    assert len(f) == 30
    with_wall = (f.bid_wall_price.notna() | f.ask_wall_price.notna()).sum()
    assert with_wall >= 15, with_wall
    assert int(f.absorption_bull.sum() + f.absorption_bear.sum()) >= 1
    assert int(f.trades.min()) > 0  # trades in every minute
    # the first wall within the first three minutes
    first = next(i for i, v in enumerate(f.bid_wall_price.notna() | f.ask_wall_price.notna()) if v)
    assert first <= 2


def test_the_synthetic_figures_are_a_function_of_the_seed() -> None:
    a, b = synthetic_figures(seed=SEED, minutes=3.0), synthetic_figures(seed=SEED, minutes=3.0)
    assert repr(a) == repr(b)  # repr: NaN figures (no wall ended yet) compare equal too
    assert synthetic_figures(seed=SEED + 1, minutes=3.0).trade_size_q != a.trade_size_q


@pytest.mark.parametrize("name", ["config.dryrun.json", "config.backtest.json"])
def test_the_demo_configs_use_the_default_bin_size_and_rsi_levels(name: str) -> None:
    helios = json.loads((ROOT / "user_data" / name).read_text())["helios"]
    assert "bin_size" not in helios.get("heatmap", {})
    assert not {"rsi_buy_below", "rsi_sell_above"} & set(helios.get("decision", {}))
