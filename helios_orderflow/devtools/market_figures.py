"""The figures that say what a market looks like to Helios, computed the same way for any stream of events.

``market_figures(events, symbol)`` replays one symbol's events through a ``PairEngine`` with the given settings
(the defaults unless told) and measures, on the book the engine rebuilt and the trades it saw:

- **depth profile**: the mean resting size (base units, both sides summed) per distance-from-mid bucket, in
  ``DEPTH_BUCKETS`` equal buckets across mid +/- ``heatmap.range_pct`` (a book sample every ``sample_s`` seconds);
- **bin sizes**: quantiles (``QUANTILES``) of the resting size per non-empty heatmap bin (``heatmap.bin_size``,
  the bin walls are found in) within mid +/- ``walls.range_pct``, over the same samples: the level-size
  distribution as the wall detector compares it. Raw price levels are reported too (``level_size_q``,
  ``levels_per_side``), but the synthetic market quotes on a coarser grid than Binance's 0.01 tick (BTC/USDT:
  0.30), so those are stated, not matched;
- **trades**: quantiles of the trade size, trades per second, taker volume per minute;
- **walls**: as the engine's wall detector sees them: confirmed walls per minute, quantiles of the lifetime
  (first seen to end) of the walls that ended within the stream, the share of candles that close with a wall
  (``bid_wall_price`` or ``ask_wall_price`` set) and the absorption signals fired.

``tests/test_demo_market.py`` and ``make bench`` (``benchmarks/market.py``) compare the synthetic market with the
real Binance BTCUSDT capture bundled in ``devtools/data/samples`` through this one function.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import Event, Trade
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.candles import CandleFeatures
from helios_orderflow.engine.pair_engine import PairEngine

#: Quantiles reported for sizes and lifetimes.
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99)
#: Buckets of the depth profile across mid +/- heatmap.range_pct.
DEPTH_BUCKETS = 5


@dataclass(frozen=True, slots=True)
class MarketFigures:
    """What a market looks like to the engine (see the module docstring; sizes in base units)."""

    seconds: float
    book_samples: int
    #: Mean resting size per bucket of distance from mid, nearest bucket first, both sides summed.
    depth_profile: tuple[float, ...]
    #: Upper edge of each depth bucket, percent of mid.
    depth_edges_pct: tuple[float, ...]
    bin_size: float
    bin_size_q: tuple[float, ...]
    bins_per_side: float
    level_size_q: tuple[float, ...]
    levels_per_side: float
    spread_bps: float
    trade_size_q: tuple[float, ...]
    trades_per_s: float
    taker_volume_per_min: float
    walls_per_min: float
    #: Median absolute change of the mid from one minute to the next, basis points.
    move_1m_bps: float
    #: Seconds from first seen to end, of the walls that ended (not by a desync).
    wall_lifetime_q: tuple[float, ...]
    #: Their peak size over the median bin, and their distance from the mid (bp), at their last scan.
    wall_ratio_q: tuple[float, ...]
    wall_distance_q: tuple[float, ...]
    walls_ended: int
    candles: int
    wall_candle_frac: float
    absorptions: int

    def lines(self, prefix: str) -> dict[str, float | int]:
        """The figures as ``make bench`` lines (``prefix.name: value``)."""
        out: dict[str, float | int] = {}
        for i, v in enumerate(self.depth_profile):
            out[f"{prefix}.depth_{self.depth_edges_pct[i]:g}pct"] = v
        for name in ("bin_size_q", "level_size_q", "trade_size_q", "wall_lifetime_q", "wall_ratio_q",
                     "wall_distance_q"):
            for q, v in zip(QUANTILES, getattr(self, name), strict=True):
                out[f"{prefix}.{name[:-2]}_p{round(q * 100)}"] = v
        for name in ("bin_size", "bins_per_side", "levels_per_side", "spread_bps", "trades_per_s",
                     "taker_volume_per_min", "move_1m_bps", "walls_per_min", "walls_ended", "candles",
                     "wall_candle_frac", "absorptions"):
            out[f"{prefix}.{name}"] = getattr(self, name)
        return out


def _quantiles(values: list[float] | np.ndarray) -> tuple[float, ...]:
    if len(values) == 0:
        return tuple(math.nan for _ in QUANTILES)
    return tuple(float(v) for v in np.quantile(np.asarray(values, dtype=np.float64), QUANTILES))


def market_figures(events: Iterable[Event], symbol: str, settings: HeliosSettings | None = None,
                   sample_s: float = 5.0, exchange: str | None = None) -> MarketFigures:
    """Measure the figures of ``symbol``'s events (other symbols' events are skipped); see the module docstring."""
    s = settings or HeliosSettings()
    s = dataclasses.replace(s, heatmap=dataclasses.replace(s.heatmap, enabled=False))
    candles: list[CandleFeatures] = []
    engine: PairEngine | None = None
    rng = s.heatmap.range_pct / 100.0
    wall_rng = min(rng, s.walls.range_pct / 100.0)
    mids: dict[int, float] = {}  # minute -> last mid sampled in it
    edges = np.linspace(0.0, rng, DEPTH_BUCKETS + 1)
    depth_sum = np.zeros(DEPTH_BUCKETS)
    bin_sizes: list[np.ndarray] = []
    level_sizes: list[np.ndarray] = []
    n_bins = n_levels = 0
    spreads: list[float] = []
    samples = 0
    sample_us = round(sample_s * 1e6)
    next_sample = -1
    trade_sizes: list[float] = []
    first_us = last_us = -1
    confirmed: set[tuple[str, int, int]] = set()
    lifetimes: list[float] = []
    wall_ratio: list[float] = []  # ended walls' peak size / the median bin at their end
    wall_dist: list[float] = []  # ended walls' distance from the mid at their last scan, bp
    ended_seen = 0
    for ev in events:
        if ev.symbol != symbol or (exchange is not None and ev.exchange != exchange):
            continue
        if engine is None:
            engine = PairEngine(ev.exchange, symbol, s, on_candle=candles.append)
        engine.on_event(ev)
        t = ev.ts_us
        if first_us < 0:
            first_us = t
        last_us = max(last_us, t)
        if type(ev) is Trade:
            trade_sizes.append(ev.amount)
        walls = engine.walls
        if walls is None:
            continue
        if walls.ended_count != ended_seen:
            new = walls.ended_count - ended_seen
            for w in list(walls.ended)[-new:]:
                if w.end_reason != "desync":
                    lifetimes.append((w.ended_us - w.first_seen_us) / 1e6)
                    wall_ratio.append(w.peak_size / walls.median)
                    wall_dist.append(w.distance_bps)
            ended_seen = walls.ended_count
        for w in walls.active():
            confirmed.add((w.side, round(w.low / walls.bin_size), w.first_seen_us))
        if t < next_sample or not engine._book_ok:
            continue
        next_sample = t + sample_us
        bids, asks = engine.book.bids.levels, engine.book.asks.levels
        bb, ba = engine.book.bids.best_price(), engine.book.asks.best_price()
        if bb is None or ba is None or bb >= ba:
            continue
        mid = (bb + ba) / 2.0
        mids[t // 60_000_000] = mid
        samples += 1
        spreads.append((ba - bb) / mid * 1e4)
        bs = engine.bin_size
        for levels, sign in ((bids, -1.0), (asks, 1.0)):
            p = np.fromiter(levels.keys(), np.float64, len(levels))
            q = np.fromiter(levels.values(), np.float64, len(levels))
            dist = sign * (p - mid) / mid
            m = (dist >= 0) & (dist <= rng)
            p, q, dist = p[m], q[m], dist[m]
            depth_sum += np.histogram(dist, bins=edges, weights=q)[0]
            level_sizes.append(q)
            n_levels += q.size
            near = dist <= wall_rng
            sums = np.bincount(np.floor(p[near] / bs + 1e-9).astype(np.int64) - int(np.floor(mid * (1 - rng) / bs)),
                               weights=q[near])
            nz = sums[sums > 0]
            bin_sizes.append(nz)
            n_bins += nz.size
    if engine is None or samples == 0:
        raise HeliosError(f"no usable book of {symbol} in the events: pass a stream with a snapshot and diffs")
    seconds = max(1e-9, (last_us - first_us) / 1e6)
    minutes = seconds / 60.0
    closed = candles
    minute_mids = [mids[k] for k in sorted(mids)]
    moves = np.abs(np.diff(np.log(minute_mids))) * 1e4 if len(minute_mids) > 1 else np.zeros(0)
    with_wall = sum(1 for c in closed if not (math.isnan(c.bid_wall_price) and math.isnan(c.ask_wall_price)))
    return MarketFigures(
        seconds=seconds,
        book_samples=samples,
        depth_profile=tuple(float(v) for v in depth_sum / samples),
        depth_edges_pct=tuple(float(e * 100) for e in edges[1:]),
        bin_size=float(engine.bin_size),
        bin_size_q=_quantiles(np.concatenate(bin_sizes)),
        bins_per_side=n_bins / samples / 2,
        level_size_q=_quantiles(np.concatenate(level_sizes)),
        levels_per_side=n_levels / samples / 2,
        spread_bps=float(np.median(spreads)),
        trade_size_q=_quantiles(trade_sizes),
        trades_per_s=len(trade_sizes) / seconds,
        taker_volume_per_min=float(sum(trade_sizes)) / minutes,
        walls_per_min=len(confirmed) / minutes,
        move_1m_bps=float(np.median(moves)) if moves.size else math.nan,
        wall_lifetime_q=_quantiles(lifetimes),
        wall_ratio_q=_quantiles(wall_ratio),
        wall_distance_q=_quantiles(wall_dist),
        walls_ended=len(lifetimes),
        candles=len(closed),
        wall_candle_frac=with_wall / len(closed) if closed else math.nan,
        absorptions=engine.absorptions,
    )


#: How close the synthetic market's figures must be to the real capture's: (figure, rule, bound). Rules:
#: "rel": |synthetic / real - 1| <= bound; "factor": synthetic / real within [1 / bound, bound];
#: "at_least_real": synthetic >= bound x real (the capture's book beyond its REST snapshot's reach, 0.33 % from
#: mid, holds only the levels that changed since: its outer depth is a lower bound). Depth buckets and bin
#: quantiles are the ones within the wall detector's +/- 0.3 %; trade sizes are heavy-tailed over 11 minutes of
#: real trades, so they are held to a factor.
TOLERANCES: tuple[tuple[str, str, float], ...] = (
    ("depth_0.1pct", "rel", 0.25),
    ("depth_0.2pct", "rel", 0.25),
    ("depth_0.3pct", "at_least_real", 1.0),
    ("depth_0.4pct", "at_least_real", 1.0),
    ("depth_0.5pct", "at_least_real", 1.0),
    ("bin_size_p50", "rel", 0.35),
    ("bin_size_p90", "rel", 0.35),
    ("trade_size_p10", "factor", 2.0),
    ("trade_size_p50", "factor", 2.0),
    ("trade_size_p90", "factor", 2.0),
    ("trade_size_p99", "factor", 2.0),
    ("trades_per_s", "rel", 0.25),
    ("taker_volume_per_min", "rel", 0.35),
    ("wall_lifetime_p10", "rel", 0.4),
    ("wall_lifetime_p50", "rel", 0.4),
    ("wall_lifetime_p90", "factor", 2.0),
    ("walls_per_min", "factor", 2.0),
)


def compare(synthetic: MarketFigures, real: MarketFigures) -> list[tuple[str, float, float, str, bool]]:
    """Each ``TOLERANCES`` figure as (name, synthetic, real, rule text, within)."""
    a, b = synthetic.lines(""), real.lines("")
    out = []
    for name, rule, bound in TOLERANCES:
        s, r = float(a[f".{name}"]), float(b[f".{name}"])
        if rule == "rel":
            ok, text = abs(s / r - 1.0) <= bound, f"within {bound:.0%}"
        elif rule == "factor":
            ok, text = 1.0 / bound <= s / r <= bound, f"within a factor {bound:g}"
        else:
            ok, text = s >= bound * r, "at least the real (a lower bound there)"
        out.append((name, s, r, text, bool(ok)))
    return out


def real_btcusdt_figures(settings: HeliosSettings | None = None) -> MarketFigures:
    """The figures of the bundled real Binance BTCUSDT capture (devtools/data/samples)."""
    from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
    from helios_orderflow.importers.binance_raw import iter_events

    return market_figures(iter_events(BINANCE_BTCUSDT_FILES, progress=False), "BTC/USDT", settings)


def synthetic_figures(seed: int = 1, minutes: float = 30.0, symbol: str = "BTC/USDT",
                      settings: HeliosSettings | None = None) -> MarketFigures:
    """The figures of ``minutes`` of the synthetic market (``helios synth``'s events, no socket)."""
    from helios_orderflow.emulator.synth import synth_events

    origin_us = 1_704_067_200_000_000  # 2024-01-01 00:00 UTC: candles start on a minute
    return market_figures(synth_events([symbol], seed, origin_us, round(minutes * 60e6)), symbol, settings)
