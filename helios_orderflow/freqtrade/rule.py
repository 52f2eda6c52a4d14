"""The entry and stop rule HeliosStrategy trades on, as pure functions: the same live and in backtests.

Inputs: the per-candle order-flow columns of Freqtrade's dataframe (``of_*``, docs/signals.md) and, in the
order-time callbacks, a ``MarketView`` (what is known about one pair's book at one moment: live, the feed's
state now; in backtests, the recorded features as of ``current_time``). The thresholds are
``EntryThresholds``: the strategy file's hyperoptable Parameters; the defaults are the rule's historic values.

- **Entry** (``entry_signals``), per candle, from the dataframe alone. Long:
  1. the book was usable at the candle's close (``of_book_ok == 1``);
  2. bullish absorption at a bid wall (``of_absorption_bull``) fired in this candle or in one of the
     ``absorption_candles - 1`` candles before it;
  3. RSI < ``rsi_long_below``;
  4. the nearest bid wall at the close (``of_bid_wall_price``) sits below the close by more than
     ``wall_min_bps`` basis points of the close: the wall a stop can hide behind, with room for it;
  5. the order-flow thresholds, each off at its default: the absorption counted in 2. absorbed at least
     ``absorption_frac`` of its wall (``of_absorption_bull_frac``), and the wall of 4. is at least
     ``wall_size_k`` x the median bin (``of_bid_wall_size_k``) and ``wall_min_age_s`` old (``of_bid_wall_age_s``).
     They filter the engine's own signals: only stricter than the engine's settings changes anything
     (docs/strategy.md, "Hyperoptable order-flow thresholds").
  Short (futures with ``decision.allow_short``): mirrored (``of_absorption_bear``, RSI > ``rsi_short_above``,
  an ask wall above the close). A candle that is both is a long. The tags name the reason: ``LONG_TAG``,
  ``SHORT_TAG``.
- **Confirmation** at order time (``entry_rejection``): the book is usable now, the spread is within
  ``strategy.max_spread_bps``, the rate does not cross the book (unless ``cross_book``), and a wall still
  protects a trade entered at that rate.
- **Entry price** (``entry_price``): a LIMIT joining the best bid (long) or ask (short); the far side of the
  book with ``cross_book``.
- **Stop** (``stop_plan``): behind the nearest wall protecting the trade (``risk.stop_behind_wall``: one
  tick or ``risk.stop_buffer_bps`` of the entry past the wall's far edge); ``strategy.max_loss`` of the
  entry when no wall protects it. An open trade's stop only ever tightens (``tightened_stop``).
- **Exit** (``exit_signals``): exhaustion of the trade's direction (``of_exhaustion_up`` ends a long,
  ``of_exhaustion_down`` a short) while the book is usable; with ``exhaustion_volume_frac``, only one whose
  volume ratio (``of_exhaustion_up_volume_ratio``) fell below it.

Sizing (equity x risk fraction / stop distance) is ``risk.position_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.engine.pair_state import PairState
from helios_orderflow.freqtrade.risk import Side, stop_behind_wall

LONG_TAG = "absorption_bull_rsi_oversold"
SHORT_TAG = "absorption_bear_rsi_overbought"


@dataclass(frozen=True, slots=True)
class EntryThresholds:
    """The entry rule's thresholds (the strategy file's ``buy`` Parameters). The defaults give the signals the
    rule has always given: absorption in the signal candle itself, any wall on the right side of the close."""

    #: A long needs RSI below this.
    rsi_long_below: float = 30.0
    #: A short needs RSI above this.
    rsi_short_above: float = 70.0
    #: Absorption counts when it fired in the signal candle or the ``absorption_candles - 1`` before it.
    absorption_candles: int = 1
    #: The protecting wall must sit more than this many basis points of the close beyond it.
    wall_min_bps: float = 0.0
    #: Absorption counts only when it absorbed at least this fraction of its wall's peak size
    #: (``of_absorption_*_frac``); at or below the engine's ``absorption.frac`` (and at 0): every absorption.
    absorption_frac: float = 0.0
    #: The protecting wall must be at least this many times the median bin size (``of_*_wall_size_k``); 0: off.
    wall_size_k: float = 0.0
    #: The protecting wall must have been seen this many seconds (``of_*_wall_age_s``); 0 or at most the
    #: engine's ``walls.min_age_s``: any wall.
    wall_min_age_s: float = 0.0

    def __post_init__(self) -> None:
        if self.absorption_candles < 1:
            raise ConfigError(f"absorption_candles must be >= 1, got {self.absorption_candles}")
        for name in ("wall_min_bps", "absorption_frac", "wall_size_k", "wall_min_age_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


#: Relative slack of the threshold comparisons: the engine compares ``volume >= frac x peak x (1 - 1e-12)``
#: and ``volume < volume_frac x prior average``, the rule the ratios; at the engine's own threshold the rule
#: must keep every signal the engine gave, whatever the last bit of the division.
_SLACK = 1e-9


def _side(dataframe: pd.DataFrame, flag: str, side: str, thresholds: EntryThresholds, room_bps: pd.Series) -> pd.Series:
    """Absorption ``flag`` ("bull"/"bear") counted over ``absorption_candles`` and the wall on ``side``
    ("bid"/"ask") meeting the room, size and age thresholds (a column is read only when its threshold is on)."""
    fired = dataframe[f"of_absorption_{flag}"] == 1
    if thresholds.absorption_frac > 0:
        fired &= dataframe[f"of_absorption_{flag}_frac"] >= thresholds.absorption_frac * (1 - _SLACK)
    counted = fired.astype(float).rolling(thresholds.absorption_candles, min_periods=1).max() == 1
    wall = room_bps > thresholds.wall_min_bps
    if thresholds.wall_size_k > 0:
        wall &= dataframe[f"of_{side}_wall_size_k"] >= thresholds.wall_size_k
    if thresholds.wall_min_age_s > 0:
        wall &= dataframe[f"of_{side}_wall_age_s"] >= thresholds.wall_min_age_s
    return counted & wall


def entry_signals(dataframe: pd.DataFrame, thresholds: EntryThresholds,
                  allow_short: bool = True) -> tuple[pd.Series, pd.Series]:
    """(long, short) boolean entry signals per row, from the columns ``close``, ``rsi`` and ``of_*`` only.
    NaN anywhere in a condition (no wall, RSI not warmed up) means no signal; a row that is both is a long;
    no shorts unless ``allow_short``."""
    ok = dataframe["of_book_ok"] == 1
    close = dataframe["close"]
    rsi = dataframe["rsi"]
    bid_room_bps = (close - dataframe["of_bid_wall_price"]) / close * 1e4
    ask_room_bps = (dataframe["of_ask_wall_price"] - close) / close * 1e4
    long = ok & _side(dataframe, "bull", "bid", thresholds, bid_room_bps) & (rsi < thresholds.rsi_long_below)
    short = ok & _side(dataframe, "bear", "ask", thresholds, ask_room_bps) & (rsi > thresholds.rsi_short_above)
    long = long.fillna(False).astype(bool)
    short = short.fillna(False).astype(bool) & ~long if allow_short else pd.Series(False, index=dataframe.index)
    return long, short


def exit_signals(dataframe: pd.DataFrame, exhaustion_volume_frac: float = math.inf) -> tuple[pd.Series, pd.Series]:
    """(exit long, exit short): buying exhausted (``of_exhaustion_up``) ends a long, selling exhausted
    (``of_exhaustion_down``) a short, on candles whose book was usable at the close. A finite
    ``exhaustion_volume_frac`` keeps only exhaustion whose volume ratio (``of_exhaustion_*_volume_ratio``) fell
    below it: at or above the engine's ``exhaustion.volume_frac``, every exhaustion; below, a stricter one."""
    ok = dataframe["of_book_ok"] == 1
    up = dataframe["of_exhaustion_up"] == 1
    down = dataframe["of_exhaustion_down"] == 1
    if math.isfinite(exhaustion_volume_frac):
        limit = exhaustion_volume_frac * (1 + _SLACK)
        up &= dataframe["of_exhaustion_up_volume_ratio"] < limit
        down &= dataframe["of_exhaustion_down_volume_ratio"] < limit
    return ok & up, ok & down


@dataclass(frozen=True, slots=True)
class MarketView:
    """What a callback knows about one pair at one moment (live: now; backtest: as of ``current_time``).

    ``problems`` empty means usable. Prices in quote units; walls are active wall prices (far edges);
    ``tick`` NaN when unknown."""

    problems: tuple[str, ...]
    best_bid: float = math.nan
    best_ask: float = math.nan
    bid_walls: tuple[float, ...] = ()
    ask_walls: tuple[float, ...] = ()
    tick: float = math.nan

    @classmethod
    def of_engine(cls, state: PairState, tick: float = math.nan) -> MarketView:
        """The view of an engine state (live: the feed's newest ``PairState``): its best bid and ask and its
        active walls; a problem when its book is not usable (out of sync, crossed or one-sided). ``tick``:
        used when the engine has not inferred one."""
        if not state.health.book_ok or state.best_bid is None or state.best_ask is None:
            return cls(("the engine has no usable book (out of sync, crossed or one-sided)",), tick=tick)
        return cls((), state.best_bid, state.best_ask,
                   tuple(w.price for w in state.walls if w.side == "bid"),
                   tuple(w.price for w in state.walls if w.side == "ask"),
                   tick if math.isnan(state.tick_size) else state.tick_size)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def spread_bps(self) -> float:
        mid = (self.best_bid + self.best_ask) / 2.0
        return (self.best_ask - self.best_bid) / mid * 1e4 if mid > 0 else math.inf

    def protecting_wall(self, side: Side, rate: float) -> float | None:
        """The nearest wall on the losing side of ``rate``: a bid wall below it for a long, an ask wall above
        it for a short (None: no wall protects a trade entered at ``rate``)."""
        if side == "long":
            below = [w for w in self.bid_walls if w < rate]
            return max(below) if below else None
        above = [w for w in self.ask_walls if w > rate]
        return min(above) if above else None


def entry_rejection(view: MarketView, side: Side, rate: float, max_spread_bps: float, cross_book: bool) -> str:
    """Why an entry at ``rate`` must not go ahead ("" = it may)."""
    if not view.ok:
        return "; ".join(view.problems)
    spread = view.spread_bps
    if spread > max_spread_bps:
        return f"spread {spread:.2f} bps above the limit {max_spread_bps:g} bps"
    if not cross_book and ((side == "long" and rate > view.best_ask) or (side == "short" and rate < view.best_bid)):
        return (f"rate {rate:.8g} would cross the book (best bid {view.best_bid:.8g}, ask {view.best_ask:.8g}); "
                "set helios.strategy.cross_book to allow")
    if view.protecting_wall(side, rate) is None:
        where = "below" if side == "long" else "above"
        return f"signal gone: no {'bid' if side == 'long' else 'ask'} wall {where} {rate:.8g} protects the trade"
    return ""


def entry_price(view: MarketView, side: Side, cross_book: bool, proposed_rate: float) -> float:
    """The LIMIT price: the best bid for a long, the best ask for a short (the far side with ``cross_book``);
    ``proposed_rate`` when the book is not usable (``entry_rejection`` then refuses the entry)."""
    if not view.ok:
        return proposed_rate
    joins_bid = (side == "long") != cross_book
    return view.best_bid if joins_bid else view.best_ask


def stop_plan(view: MarketView, side: Side, entry: float, stop_buffer_bps: float,
              max_loss: float) -> tuple[float, float | None]:
    """(stop price, protecting wall price or None) for a trade entered at ``entry``: behind the nearest wall
    that protects it, else ``max_loss`` (a fraction) of the entry away. Always on the losing side of ``entry``."""
    wall = view.protecting_wall(side, entry) if view.ok else None
    if wall is not None:
        stop = stop_behind_wall(side, wall, entry, view.tick, stop_buffer_bps)
        if stop is not None:
            return stop, wall
    return (entry * (1 - max_loss) if side == "long" else entry * (1 + max_loss)), None


def tightened_stop(side: Side, stop: float, candidate: float) -> float:
    """The tighter of the trade's stop and a new candidate: a stop only ever moves toward the price."""
    return max(stop, candidate) if side == "long" else min(stop, candidate)


__all__ = ["LONG_TAG", "SHORT_TAG", "EntryThresholds", "MarketView", "Side", "entry_price", "entry_rejection",
           "entry_signals", "exit_signals", "stop_plan", "tightened_stop"]
