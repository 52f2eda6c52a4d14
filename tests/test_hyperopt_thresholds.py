"""Hyperoptable order-flow thresholds (issue 19, item 3): the engine publishes per candle what its signals
compare with their thresholds, and the rule applied to those measurements at the engine's own thresholds
gives exactly the engine's signals, on the real BTCUSDT stream and on a synthetic recording; stricter
thresholds keep a subset. The real ``freqtrade hyperopt`` over these Parameters is in tests/test_hyperopt.py.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import _btcusdt
import pandas as pd
import pytest
from _scenario import Feed, S, bid_wall_confirmed
from test_strategy_file import config, strategy_file_class

from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.emulator.synth import write_synthetic
from helios_orderflow.features.compute import compute_features
from helios_orderflow.freqtrade.rule import EntryThresholds, entry_signals, exit_signals

LOOSE = {"walls": {"min_age_s": 2.0}, "absorption": {"frac": 0.05},
         "exhaustion": {"window_s": 10, "lookback_s": 60, "volume_frac": 0.9}}
SYNTH_ORIGIN_US = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000


# ---- the measurements, worked by hand ----------------------------------------------------------------------


def test_absorbed_fraction_is_the_largest_an_absorption_that_fired_in_the_candle_reached() -> None:
    f = bid_wall_confirmed()  # bid wall 10.0 in [995, 996), absorption at 0.5 x peak 10
    f.trade(3 * S + 200_000, 995.5, 3.0, "sell")  # 0.3 of the wall: no absorption yet
    f.delta(3 * S + 300_000, bids=[(995.5, 12.0)])  # refilled (peak 12 at the next scan)
    f.trade(3 * S + 400_000, 995.2, 2.5, "sell")  # 5.5 / 10 = 0.55: fires
    f.tick(4 * S)  # scan: peak 12
    f.trade(4 * S + 100_000, 995.5, 1.3, "sell")  # 6.8 / 12 = 0.567 of the new peak: the largest
    f.tick(60 * S)
    c = f.engine.last_candle
    assert c is not None and c.absorption_bull == 1
    assert c.absorption_bull_frac == pytest.approx(6.8 / 12.0, rel=1e-12)
    assert c.absorption_bear_frac == 0.0
    # The wall still absorbs in the next candle, but that absorption fired in the last one: not this candle's.
    f.trade(61 * S, 995.5, 1.0, "sell")
    f.tick(120 * S)
    assert f.engine.last_candle is not None
    assert (f.engine.last_candle.absorption_bull, f.engine.last_candle.absorption_bull_frac) == (0, 0.0)


def test_exhaustion_volume_ratio_is_the_smallest_while_the_exhaustion_that_fired_held() -> None:
    f = Feed()  # exhaustion window 2 s, lookback 6 s, volume_frac 0.5
    for s, p in enumerate([100.0, 101.0, 102.0, 103.0]):
        f.trade(s * S + 100_000, p, 1.0, "buy")
    f.trade(4 * S + 100_000, 103.0, 0.5, "sell")
    f.trade(5 * S + 100_000, 104.0, 0.4, "buy")
    f.tick(6 * S)  # fires: buying 0.4 against 4.0 per 4 s = 2.0 per window: ratio 0.2
    f.tick(7 * S)  # still holds: 0.4 against 3.0 per 4 s = 1.5 per window: 0.267 (the smallest stays 0.2)
    f.tick(60 * S)
    c = f.engine.last_candle
    assert c is not None and c.exhaustion_up == 1 and c.exhaustion_down == 0
    assert c.exhaustion_up_volume_ratio == pytest.approx(0.2, rel=1e-12)
    assert math.isnan(c.exhaustion_down_volume_ratio)
    f.tick(120 * S)
    assert f.engine.last_candle is not None and math.isnan(f.engine.last_candle.exhaustion_up_volume_ratio)


def test_wall_size_over_the_median_and_age_of_the_nearest_wall_at_the_close() -> None:
    f = bid_wall_confirmed()  # the 10.0 wall was first seen at the scan at T0 + 1 s
    f.tick(60 * S)
    c = f.engine.last_candle
    walls = f.engine.walls
    assert c is not None and walls is not None and c.bid_wall_price == 995.0
    assert c.bid_wall_size_k == pytest.approx(10.0 / walls.median, rel=1e-12) and c.bid_wall_size_k >= 3.0
    assert c.bid_wall_age_s == 59.0  # last scan at T0 + 60 s (before the close's event) ... minus 1 s
    assert math.isnan(c.ask_wall_size_k) and math.isnan(c.ask_wall_age_s)


# ---- at the engine's thresholds the rule on the measurements is the engine's signals ---------------------------


def _check_reproduces(frame: pd.DataFrame, s: HeliosSettings) -> dict[str, int]:
    """Assert the measurements give the engine's flags at its own thresholds, and the rule with the order-flow
    thresholds at the engine's settings gives the same entries and exits as without them; stricter ones a
    subset. Returns the signal counts."""
    frac, vf = s.absorption.frac, s.exhaustion.volume_frac
    for d in ("bull", "bear"):
        measured = frame[f"absorption_{d}_frac"] >= frac * (1 - 1e-9)
        assert measured.tolist() == (frame[f"absorption_{d}"] == 1).tolist(), d
    for d in ("up", "down"):
        measured = frame[f"exhaustion_{d}_volume_ratio"] < vf * (1 + 1e-9)
        assert measured.tolist() == (frame[f"exhaustion_{d}"] == 1).tolist(), d
    for side in ("bid", "ask"):
        has = frame[f"{side}_wall_price"].notna()
        assert (frame.loc[has, f"{side}_wall_age_s"] >= s.walls.min_age_s).all()
        assert frame.loc[~has, [f"{side}_wall_age_s", f"{side}_wall_size_k"]].isna().all().all()
    df = frame.rename(columns={c: "of_" + c for c in frame.columns if c not in ("date", "close")})
    df["rsi"] = 50.0  # RSI is not what is checked here: open it
    base = EntryThresholds(rsi_long_below=100.0, rsi_short_above=0.0)
    at_engine = EntryThresholds(rsi_long_below=100.0, rsi_short_above=0.0, absorption_frac=frac,
                                wall_min_age_s=s.walls.min_age_s)
    want = entry_signals(df, base)
    got = entry_signals(df, at_engine)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
    assert [e.tolist() for e in exit_signals(df, vf)] == [e.tolist() for e in exit_signals(df)]
    strict = entry_signals(df, EntryThresholds(rsi_long_below=100.0, rsi_short_above=0.0, absorption_frac=frac * 1.6,
                                               wall_size_k=3.0, wall_min_age_s=s.walls.min_age_s + 20))
    assert not (strict[0] & ~want[0]).any() and not (strict[1] & ~want[1]).any()
    stricter_exit = exit_signals(df, vf / 2)
    assert not (stricter_exit[0] & ~exit_signals(df)[0]).any()
    return {"absorption": int(frame["absorption_bull"].sum() + frame["absorption_bear"].sum()),
            "exhaustion": int(frame["exhaustion_up"].sum() + frame["exhaustion_down"].sum()),
            "entries": int(want[0].sum() + want[1].sum())}


@pytest.mark.parametrize("sections", [{}, LOOSE], ids=["defaults", "loose"])
def test_measurements_reproduce_the_engines_signals_on_the_real_btcusdt_stream(sections: dict) -> None:
    s = HeliosSettings.from_dict(sections)
    frame = compute_features(_btcusdt.events(), _btcusdt.SYMBOL, "1m", s)
    counts = _check_reproduces(frame, s)
    if sections:  # the 12 real minutes fire nothing at the defaults; loosened, they do
        assert counts["absorption"] >= 3 and counts["exhaustion"] >= 3 and counts["entries"] >= 1, counts


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rec = tmp_path_factory.mktemp("synth") / "rec"
    write_synthetic(str(rec), ["BTC/USDT"], 3, SYNTH_ORIGIN_US, 30 * 60_000_000)
    return rec


def test_measurements_reproduce_the_engines_signals_on_a_synthetic_recording(synthetic: Path) -> None:
    s = HeliosSettings()
    counts = _check_reproduces(compute_features(synthetic, "BTC/USDT", "1m", s, cache=False), s)
    assert counts["absorption"] >= 2 and counts["exhaustion"] >= 2 and counts["entries"] >= 2, counts


# ---- the rule and the strategy file ------------------------------------------------------------------------


def _frame(**columns: list[float]) -> pd.DataFrame:
    """Candles with a usable book, RSI 20, bullish absorption at 0.6 of a 4 x median wall 30 s old 5 bps below
    the close; ``columns`` override per row."""
    n = len(next(iter(columns.values())))
    base = {"close": [1000.0] * n, "rsi": [20.0] * n, "of_book_ok": [1] * n, "of_absorption_bull": [1] * n,
            "of_absorption_bull_frac": [0.6] * n, "of_absorption_bear": [0] * n, "of_absorption_bear_frac": [0.0] * n,
            "of_bid_wall_price": [999.5] * n, "of_bid_wall_size_k": [4.0] * n, "of_bid_wall_age_s": [30.0] * n,
            "of_ask_wall_price": [math.nan] * n, "of_ask_wall_size_k": [math.nan] * n,
            "of_ask_wall_age_s": [math.nan] * n, "of_exhaustion_up": [0] * n, "of_exhaustion_down": [0] * n,
            "of_exhaustion_up_volume_ratio": [math.nan] * n, "of_exhaustion_down_volume_ratio": [math.nan] * n}
    base.update(columns)
    return pd.DataFrame(base)


def test_each_order_flow_threshold_filters_the_long_on_its_own_measurement() -> None:
    f = _frame(of_absorption_bull_frac=[0.6, 0.8, 0.8, 0.8], of_bid_wall_size_k=[4.0, 2.0, 4.0, math.nan],
               of_bid_wall_age_s=[30.0, 30.0, 12.0, 30.0], of_bid_wall_price=[999.5, 999.5, 999.5, math.nan])

    def longs(**t: float) -> list[bool]:
        return entry_signals(f, EntryThresholds(**t))[0].tolist()  # type: ignore[arg-type]

    assert longs() == [True, True, True, False]
    assert longs(absorption_frac=0.5) == longs(absorption_frac=0.6) == [True, True, True, False]
    assert longs(absorption_frac=0.7) == [False, True, True, False]
    assert longs(wall_size_k=3.0) == [True, False, True, False]
    assert longs(wall_min_age_s=20.0) == [True, True, False, False]
    # With absorption_candles 2 the candle after a strong absorption still counts; a weak one never does.
    g = _frame(of_absorption_bull=[1, 0, 0], of_absorption_bull_frac=[0.9, 0.0, 0.0])
    assert entry_signals(g, EntryThresholds(absorption_candles=2, absorption_frac=0.8))[0].tolist() == [True, True,
                                                                                                          False]
    with pytest.raises(Exception, match="absorption_frac must be >= 0"):
        EntryThresholds(absorption_frac=-0.1)


def test_a_stricter_exhaustion_volume_frac_exits_only_on_the_drier_exhaustion() -> None:
    f = _frame(of_exhaustion_up=[1, 1, 0], of_exhaustion_up_volume_ratio=[0.2, 0.6, math.nan],
               of_exhaustion_down=[0, 0, 1], of_exhaustion_down_volume_ratio=[math.nan, math.nan, 0.1])
    assert [e.tolist() for e in exit_signals(f)] == [[True, True, False], [False, False, True]]
    assert [e.tolist() for e in exit_signals(f, 0.7)] == [[True, True, False], [False, False, True]]
    assert [e.tolist() for e in exit_signals(f, 0.5)] == [[True, False, False], [False, False, True]]


def test_engine_settings_set_the_order_flow_parameters_so_the_defaults_keep_every_signal(tmp_path: Path) -> None:
    cls = strategy_file_class()
    (tmp_path / "orderflow").mkdir()
    plain = cls(config(tmp_path))
    assert (plain.buy_absorption_frac.value, plain.sell_exhaustion_volume_frac.value) == (0.5, 0.7)
    assert (plain.buy_wall_size_k.value, plain.buy_wall_min_age_s.value) == (0.0, 0)
    tuned = cls(config(tmp_path, absorption={"frac": 0.3}, exhaustion={"volume_frac": 0.9}))
    assert (tuned.buy_absorption_frac.value, tuned.sell_exhaustion_volume_frac.value) == (0.3, 0.9)
    assert tuned.buy_params == {"buy_absorption_frac": 0.3} and tuned.sell_params == {
        "sell_exhaustion_volume_frac": 0.9}
    assert cls.buy_absorption_frac.value == 0.5  # the class's Parameter is untouched
    for name, space in (("buy_absorption_frac", "buy"), ("buy_wall_size_k", "buy"), ("buy_wall_min_age_s", "buy"),
                        ("sell_exhaustion_volume_frac", "sell")):
        assert getattr(cls, name).space == space


def test_the_strategy_file_applies_a_stricter_value_and_leaves_the_engines_own_off(tmp_path: Path) -> None:
    (tmp_path / "orderflow").mkdir()
    strategy = strategy_file_class()(config(tmp_path))
    meta = {"pair": "BTC/USDT"}
    # 0.0: a row without the measurement (an engine checkpoint from before it existed) keeps its signal
    f = _frame(of_absorption_bull_frac=[0.0, 0.6, 0.9])
    assert strategy.populate_entry_trend(f.copy(), meta)["enter_long"].fillna(0).tolist() == [1, 1, 1]
    strategy.buy_absorption_frac.value = 0.8
    assert strategy.populate_entry_trend(f.copy(), meta)["enter_long"].fillna(0).tolist() == [0, 0, 1]
    g = _frame(of_exhaustion_up=[1, 1], of_exhaustion_up_volume_ratio=[0.6, 0.3])
    assert strategy.populate_exit_trend(g.copy(), meta)["exit_long"].fillna(0).tolist() == [1, 1]
    strategy.sell_exhaustion_volume_frac.value = 0.5
    assert strategy.populate_exit_trend(g.copy(), meta)["exit_long"].fillna(0).tolist() == [0, 1]
