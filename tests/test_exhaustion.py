"""Exhaustion: a new extreme that CVD and aggressive volume do not confirm, both directions, worked by hand
with window 2 s, lookback 6 s, volume_frac 0.5 (1 s buckets); and on the real stream."""

from __future__ import annotations

import _btcusdt
from _scenario import T0, Feed, S

from helios_orderflow.core.events import Trade
from helios_orderflow.core.settings import ExhaustionSettings, HeliosSettings
from helios_orderflow.engine.pair_engine import PairEngine


def _trend(f: Feed, side: str, prices: list[float]) -> None:
    """Seconds 0..3 (the prior window): one 1.0 taker trade per second at the given prices."""
    for s, p in enumerate(prices):
        f.trade(s * S + 100_000, p, 1.0, side)


def test_up_exhaustion_new_high_without_cvd_and_with_fading_buying() -> None:
    f = Feed()
    _trend(f, "buy", [100.0, 101.0, 102.0, 103.0])  # CVD 1, 2, 3, 4; prior buy volume 4
    f.trade(4 * S + 100_000, 103.0, 0.5, "sell")  # CVD 3.5
    f.trade(5 * S + 100_000, 104.0, 0.4, "buy")  # new high 104 > 103; CVD 3.9 <= 4; buy 0.4
    f.tick(5 * S + 900_000)
    assert f.engine.exhaustions == 0  # the bucket [5 s, 6 s) has not closed yet
    f.tick(6 * S)
    sig = f.engine.snapshot().exhaustion
    assert f.engine.exhaustions == 1 and sig is not None
    # threshold = 0.5 x (prior buy 4.0 per 4 s) x 2 s = 1.0; recent CVD max 4.0 (the level carried into
    # second 4) is not above the prior max 4.0
    assert (sig.direction, sig.ts_us, sig.price, sig.prior_price) == ("up", T0 + 6 * S, 104.0, 103.0)
    assert (sig.cvd, sig.prior_cvd, sig.volume, sig.volume_threshold) == (4.0, 4.0, 0.4, 1.0)
    f.tick(60 * S)
    assert f.engine.last_candle is not None and f.engine.last_candle.exhaustion_up == 1
    assert f.engine.last_candle.exhaustion_down == 0


def test_down_exhaustion_new_low_without_cvd_and_with_fading_selling() -> None:
    f = Feed()
    _trend(f, "sell", [104.0, 103.0, 102.0, 101.0])  # CVD -1 .. -4
    f.trade(4 * S + 100_000, 101.0, 0.5, "buy")  # CVD -3.5
    f.trade(5 * S + 100_000, 100.0, 0.4, "sell")  # new low; CVD -3.9 >= -4; sell 0.4 < 1.0
    f.tick(6 * S)
    sig = f.engine.snapshot().exhaustion
    assert sig is not None
    assert (sig.direction, sig.price, sig.prior_price, sig.cvd, sig.prior_cvd) == ("down", 100.0, 101.0, -4.0, -4.0)
    assert abs(sig.volume - 0.4) < 1e-12 and sig.volume_threshold == 1.0


def test_no_exhaustion_when_cvd_confirms_the_high() -> None:
    f = Feed()
    _trend(f, "buy", [100.0, 101.0, 102.0, 103.0])
    f.trade(4 * S + 100_000, 103.0, 0.5, "sell")
    f.trade(5 * S + 100_000, 104.0, 0.9, "buy")  # CVD 4.4 > 4: confirmed (and 0.9 < 1.0 alone would not do)
    f.tick(6 * S)
    assert f.engine.exhaustions == 0


def test_no_exhaustion_when_buying_does_not_fade() -> None:
    f = Feed()
    _trend(f, "buy", [100.0, 101.0, 102.0, 103.0])
    f.trade(4 * S + 100_000, 103.0, 1.0, "sell")  # CVD 3
    f.trade(5 * S + 100_000, 104.0, 1.0, "buy")  # CVD 4 (not above 4) but buy 1.0 is not < 1.0
    f.tick(6 * S)
    assert f.engine.exhaustions == 0


def test_no_exhaustion_before_a_full_lookback() -> None:
    f = Feed()
    _trend(f, "buy", [100.0, 101.0, 102.0])
    f.trade(3 * S + 100_000, 103.0, 0.5, "sell")
    f.trade(4 * S + 100_000, 104.0, 0.4, "buy")
    f.tick(5 * S)  # only 5 buckets closed (lookback 6)
    assert f.engine.exhaustions == 0


def test_real_stream_exhaustion_signals_hold_their_definition() -> None:
    s = HeliosSettings(exhaustion=ExhaustionSettings(window_s=10, lookback_s=60, volume_frac=1.0))
    engine = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, s)
    clock = -1
    trades: list[tuple[int, float, float, bool]] = []
    signals = []
    last = None
    for ev in _btcusdt.events():
        engine.on_event(ev)
        clock = max(clock, ev.ts_us)
        if type(ev) is Trade:
            trades.append((clock, ev.price, ev.amount, ev.side == "buy"))
        if engine.last_exhaustion is not last:
            last = engine.last_exhaustion
            signals.append(last)
    assert len(signals) == engine.exhaustions >= 5
    assert {x.direction for x in signals} == {"up", "down"}
    w, lb = 10 * S, 60 * S
    for sig in signals:
        t = sig.ts_us
        recent = [x for x in trades if t - w <= x[0] < t]
        prior = [x for x in trades if t - lb <= x[0] < t - w]
        if sig.direction == "up":
            assert sig.price == max(p for _, p, _, _ in recent) > sig.prior_price == max(p for _, p, _, _ in prior)
            vol = sum(a for _, _, a, buy in recent if buy)
            thr = sum(a for _, _, a, buy in prior if buy) * w / (lb - w)
            assert sig.cvd <= sig.prior_cvd
        else:
            assert sig.price == min(p for _, p, _, _ in recent) < sig.prior_price == min(p for _, p, _, _ in prior)
            vol = sum(a for _, _, a, buy in recent if not buy)
            thr = sum(a for _, _, a, buy in prior if not buy) * w / (lb - w)
            assert sig.cvd >= sig.prior_cvd
        assert abs(sig.volume - vol) < 1e-9 and abs(sig.volume_threshold - thr) < 1e-9 and vol < thr
