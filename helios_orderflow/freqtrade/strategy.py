"""HeliosStrategy: order flow inside Freqtrade, live and in backtesting on recorded L2.

The trading idea (defaults in ``HeliosSettings.decision`` / ``risk`` and ``StrategySettings``):

- **Enter long** on a candle in which bullish absorption happened at a bid wall (aggressive selling into a
  wall that held) while RSI(14) < 30 and a bid wall still protects the price at the close; **short**
  mirrored (futures only). ``enter_tag`` names the reason, e.g. ``absorption_bull_rsi_oversold``.
- **Entry price**: a LIMIT that joins the best bid (long) or ask (short), never crossing the book unless
  ``helios.strategy.cross_book``.
- **Stop**: behind the nearest wall that protects the trade (``risk.stop_behind_wall``), recomputed as walls
  move, only ever tightening; ``helios.strategy.max_loss`` of the entry when no wall protects it.
- **Size**: equity x risk fraction / |entry - stop| (the 1-2 % rule), within Freqtrade's min and max stake.
- **Exit**: ROI table, the stop, and (``exit_on_exhaustion``) exhaustion of the trade's direction.

Where the order flow comes from:

- ``live`` / ``dry_run``: ``bot_start`` starts one ``Feed`` thread (idempotently: FreqUI chart requests call
  ``bot_start`` again) that keeps the whitelist's books and trades and publishes a ``SharedState``; the
  dataframe's ``of_*`` columns are the feed's per-candle history; callbacks re-read SharedState at call time.
- every other mode (backtesting, hyperopt, plot-dataframe, FreqUI charts of the webserver): the recordings
  under ``user_data/orderflow/`` (``helios.backtest.recordings``) through ``compute_features`` (cached);
  callbacks look the state up as of ``current_time``, with no look-ahead.

Both paths run the same engine on the same events, so the per-candle columns and the entry signals are
equal live and in backtests. The entry rule reads only the per-candle columns; live callbacks add what
only a live bot can check (health, spread, the book now).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import pandas as pd
import talib.abstract as ta
from freqtrade.strategy import IStrategy, stoploss_from_absolute

from helios_orderflow.engine.candles import timeframe_us
from helios_orderflow.features.backtest import ORDERFLOW_COLUMNS, RecordedFeatures, history_frame, merge_features
from helios_orderflow.freqtrade import config as modes
from helios_orderflow.freqtrade.config import HeliosConfig, load_config
from helios_orderflow.freqtrade.credentials import install_redaction, secret_values_from_config
from helios_orderflow.freqtrade.risk import clamp_risk, position_size, stop_behind_wall

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class MarketView:
    """What a callback knows about one pair at one moment (live: now; backtest: as of ``current_time``).

    ``problems`` empty means usable. Prices in quote units; walls are active wall prices, nearest first."""

    problems: tuple[str, ...]
    best_bid: float = math.nan
    best_ask: float = math.nan
    bid_walls: tuple[float, ...] = ()
    ask_walls: tuple[float, ...] = ()
    tick: float = math.nan

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def spread_bps(self) -> float:
        mid = (self.best_bid + self.best_ask) / 2.0
        return (self.best_ask - self.best_bid) / mid * 1e4 if mid > 0 else math.inf

    def protecting_wall(self, side: str, rate: float) -> float | None:
        """The nearest wall on the losing side of ``rate``: a bid wall below it for a long, an ask wall above
        it for a short."""
        if side == "long":
            below = [w for w in self.bid_walls if w < rate]
            return max(below) if below else None
        above = [w for w in self.ask_walls if w > rate]
        return min(above) if above else None


class HeliosStrategy(IStrategy):
    """Order-flow entries (absorption at walls + RSI), wall-based stops and risk sizing; see module doc."""

    INTERFACE_VERSION = 3

    timeframe = "1m"
    can_short = False  # set in __init__: True in futures when helios.decision.allow_short
    minimal_roi: ClassVar[dict[str, float]] = {"0": 0.01, "30": 0.005, "120": 0.0}
    # The hard floor under every stop; custom_stoploss normally sits much closer (behind the wall).
    stoploss = -0.10
    use_custom_stoploss = True
    trailing_stop = False
    process_only_new_candles = True
    use_exit_signal = True
    startup_candle_count = 50
    order_types: ClassVar[dict[str, Any]] = {
        "entry": "limit",
        "exit": "limit",
        "stoploss": "market",
        "stoploss_on_exchange": False,
    }
    order_time_in_force: ClassVar[dict[str, str]] = {"entry": "GTC", "exit": "GTC"}

    plot_config: ClassVar[dict[str, Any]] = {
        "main_plot": {
            "of_vwap": {"color": "#f0b90b"},
            "of_vwap_upper_1": {"color": "rgba(240,185,11,0.4)"},
            "of_vwap_lower_1": {"color": "rgba(240,185,11,0.4)"},
            "of_bid_wall_price": {"color": "#26a69a", "type": "scatter"},
            "of_ask_wall_price": {"color": "#ef5350", "type": "scatter"},
        },
        "subplots": {
            "CVD": {"of_cvd": {"color": "#42a5f5"}},
            "Delta": {"of_delta": {"color": "#90caf9", "type": "bar"}},
            "OFI": {"of_ofi": {"color": "#ab47bc", "type": "bar"}, "of_ofi_multi": {"color": "#ce93d8"}},
            "RSI": {"rsi": {"color": "#ffa726"}},
        },
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        # From here on no exchange key or API password from the config or environment reaches a log line.
        install_redaction(secret_values_from_config(config, os.environ))
        # Bad helios settings stop start-up here, with the key named (ConfigError).
        self.helios: HeliosConfig = load_config(config)
        self.timeframe = config.get("timeframe") or self.timeframe
        self.can_short = self.helios.trading_mode != "spot" and self.helios.settings.decision.allow_short
        self._live_key: tuple[Any, ...] | None = None
        self._recorded: RecordedFeatures | None = None
        #: Per pair, the stop plan made at sizing time (custom_stake_amount), used by the first stoploss call.
        self._plans: dict[str, dict[str, float]] = {}
        #: Stops kept per trade when the trade cannot store custom data.
        self._stops: dict[str, float] = {}
        self._warned: set[str] = set()

    # ---- pickling (hyperopt) --------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # The feed thread lives in strategy_config.LIVE, never here; the recorded-feature frames reload
        # from the disk cache. Hyperopt pickles this module by value (cloudpickle, for strategy
        # inheritance across files), so no lock or thread may be a global of this module either.
        state["_live_key"] = None
        return state

    # ---- mode ---------------------------------------------------------------------------------------------

    @property
    def runmode(self) -> str:
        dp = getattr(self, "dp", None)
        mode = getattr(dp, "runmode", None) if dp is not None else None
        if mode is None:
            return self.helios.runmode
        return str(getattr(mode, "value", mode))

    @property
    def is_live(self) -> bool:
        return self.runmode in ("live", "dry_run")

    # ---- start-up -----------------------------------------------------------------------------------------

    def bot_start(self, **kwargs: Any) -> None:
        """Start the live feed (and dashboard) in live and dry-run only; a no-op when already running."""
        if self.is_live:
            self._live_key = self._ensure_live()

    def _pairs(self) -> list[str]:
        dp = getattr(self, "dp", None)
        try:
            pairs = list(dp.current_whitelist()) if dp is not None else []
        except Exception:  # no pairlist yet: fall back to the configured whitelist
            pairs = []
        return pairs or list(self.helios.pairs)

    def _ensure_live(self) -> tuple[Any, ...]:
        from helios_orderflow.live.feed import Feed

        h = self.helios
        pairs = tuple(self._pairs())
        record_to = h.recording_dir
        key = (h.exchange, pairs, str(record_to), h.timeframe)

        def make() -> modes.LiveHandle:
            return modes.LiveHandle(Feed(h.exchange, pairs, h.settings, ccxt_config=dict(h.ccxt_config),
                                         record_to=record_to, timeframe=h.timeframe))

        handle, started = modes.LIVE.ensure(key, make)
        if started:
            log.info("helios: live order-flow feed started for %s on %s (%s), recording to %s",
                     ", ".join(pairs), h.exchange, h.timeframe, record_to or "nowhere (recording off)")
            if h.dashboard.enabled and handle.dashboard is None:
                handle.dashboard = self._start_dashboard(handle.feed)
        return key

    def _start_dashboard(self, feed: Any) -> Any:
        """The in-process liquidity page on the feed's SharedState; a failure is logged, never raised (the
        page must not stop the bot)."""
        try:
            from dashboard.app import run_in_thread
            from dashboard.sources import SharedStateSource
        except ImportError as exc:
            log.warning("helios: the dashboard is enabled but cannot be imported (%s); trading goes on without it",
                        exc)
            return None
        d = self.helios.dashboard
        try:
            source = SharedStateSource(feed.state, settings=self.helios.settings, dashboard=d)
            handle = run_in_thread(source, d)
        except Exception as exc:
            log.warning("helios: the dashboard did not start: %s; trading goes on without it", exc)
            return None
        log.info("helios: liquidity dashboard at %s", handle.url)
        return handle

    @property
    def shared_state(self) -> Any:
        """The live SharedState (None outside live/dry-run or before bot_start)."""
        key = self._live_key
        handle = modes.LIVE.get(key) if key is not None else None
        return handle.feed.state if handle is not None else None

    def ft_bot_cleanup(self) -> None:
        """Freqtrade's cleanup on exit and on config reload: stop the feed cleanly (flushes the recording)."""
        super().ft_bot_cleanup()
        self.stop_live()

    def stop_live(self) -> None:
        """Stop this strategy's feed and dashboard (flushes the recording). Idempotent."""
        key, self._live_key = self._live_key, None
        if key is not None:
            modes.LIVE.stop(key)

    def recorded(self) -> RecordedFeatures:
        if self._recorded is None:
            h = self.helios
            self._recorded = RecordedFeatures(h.recordings_dir, h.recorded_exchange, self.timeframe, h.settings,
                                              cache=h.backtest.cache)
        return self._recorded

    # ---- dataframe ----------------------------------------------------------------------------------------

    def populate_indicators(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        d = self.helios.settings.decision
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=d.rsi_period)
        pair = metadata["pair"]
        if self.is_live:
            rows = self._live_rows(pair, dataframe)
            dataframe, _ = merge_features(dataframe, history_frame(rows))
            return dataframe
        return self.recorded().merge(dataframe, pair)

    def _live_rows(self, pair: str, dataframe: pd.DataFrame) -> tuple[Any, ...]:
        """The feed's candle history; when Freqtrade already has a candle the engine has not closed yet (no
        event past its close has arrived), wait up to ``strategy.live_candle_wait_s`` for it, so that the
        newest row is not left neutral by a race between the kline and the book streams."""
        state = self.shared_state
        if state is None:
            return ()
        rows = state.history(pair)
        if not len(dataframe) or not state.is_healthy(pair):
            return rows
        tf = timeframe_us(self.timeframe)
        newest_us = _epoch_us(dataframe["date"].iloc[-1])
        deadline = time.monotonic() + self.helios.strategy.live_candle_wait_s
        while (not rows or rows[-1].open_time_us < newest_us) and time.monotonic() < deadline:
            snap = state.get(pair)
            engine = snap.engine if snap is not None else None
            if engine is not None and engine.ts_us >= newest_us + tf:
                break  # the engine is past that candle's close: its row will be in the next publication
            time.sleep(0.05)
            rows = state.history(pair)
        return state.history(pair)

    def populate_entry_trend(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        long, short = entry_signals(dataframe, self.helios)
        dataframe.loc[long, ["enter_long", "enter_tag"]] = (1, LONG_TAG)
        if self.can_short:
            dataframe.loc[short & ~long, ["enter_short", "enter_tag"]] = (1, SHORT_TAG)
        return dataframe

    def populate_exit_trend(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        if self.helios.strategy.exit_on_exhaustion:
            ok = dataframe["of_book_ok"] == 1
            dataframe.loc[ok & (dataframe["of_exhaustion_up"] == 1), ["exit_long", "exit_tag"]] = (1, "exhaustion_up")
            dataframe.loc[ok & (dataframe["of_exhaustion_down"] == 1), ["exit_short", "exit_tag"]] = (
                1, "exhaustion_down")
        return dataframe

    # ---- the market as a callback sees it -----------------------------------------------------------------

    def market_view(self, pair: str, current_time: datetime) -> MarketView:
        """Live: SharedState now (health checked at read time). Otherwise: the recorded features as of
        ``current_time`` (the last candle closed at or before it)."""
        tick = self._tick(pair)
        if self.is_live:
            state = self.shared_state
            if state is None:
                return MarketView(("the live feed is not running",), tick=tick)
            if not state.is_healthy(pair):
                return MarketView(tuple(state.problems(pair)) or ("unhealthy book",), tick=tick)
            snap = state.get(pair)
            es = snap.engine if snap is not None else None
            if es is None or not es.health.book_ok or es.best_bid is None or es.best_ask is None:
                return MarketView(("the engine has no usable book (out of sync, crossed or one-sided)",), tick=tick)
            if not math.isnan(es.tick_size):
                tick = es.tick_size
            return MarketView(
                (), es.best_bid, es.best_ask,
                tuple(w.price for w in es.walls if w.side == "bid"),
                tuple(w.price for w in es.walls if w.side == "ask"),
                tick,
            )
        row = self.recorded().as_of(pair, current_time)
        if row is None:
            return MarketView((f"no recorded order flow for {pair} as of {current_time:%Y-%m-%d %H:%M:%S}",), tick=tick)
        tf = timeframe_us(self.timeframe)
        age_us = _epoch_us(current_time) - (int(row["open_time_us"]) + tf)
        if age_us >= tf:
            return MarketView((f"stale: the newest recorded candle closed {age_us / 1e6:.0f} s before "
                               f"{current_time:%Y-%m-%d %H:%M:%S}",), tick=tick)
        if row["of_book_ok"] != 1:
            return MarketView(("the recorded book was not usable at the last candle close",), tick=tick)
        mid, spread = row["of_mid"], row["of_spread"]
        bw, aw = row["of_bid_wall_price"], row["of_ask_wall_price"]
        return MarketView(
            (), mid - spread / 2.0, mid + spread / 2.0,
            (bw,) if math.isfinite(bw) else (), (aw,) if math.isfinite(aw) else (), tick,
        )

    def _tick(self, pair: str) -> float:
        dp = getattr(self, "dp", None)
        try:
            market = dp.market(pair) if dp is not None else None
            tick = float(market["precision"]["price"]) if market else math.nan
        except Exception:  # no markets in this mode: the stop buffer alone applies
            tick = math.nan
        return tick if tick > 0 else math.nan

    def stop_plan(self, pair: str, side: str, entry: float, view: MarketView) -> tuple[float, float | None]:
        """(stop price, protecting wall price or None) for a trade entered at ``entry``."""
        wall = view.protecting_wall(side, entry) if view.ok else None
        if wall is not None:
            stop = stop_behind_wall(side, wall, entry, view.tick, self.helios.settings.risk.stop_buffer_bps)  # type: ignore[arg-type]
            if stop is not None:
                return stop, wall
        loss = self.helios.strategy.max_loss
        return (entry * (1 - loss) if side == "long" else entry * (1 + loss)), None

    # ---- callbacks -----------------------------------------------------------------------------------------

    def confirm_trade_entry(self, pair: str, order_type: str, amount: float, rate: float, time_in_force: str,
                            current_time: datetime, entry_tag: str | None, side: str, **kwargs: Any) -> bool:
        """Reject (and log why) when the book is stale or unhealthy, the spread is above the limit, or the
        signal no longer holds at ``rate`` (no wall protects a trade entered there)."""
        view = self.market_view(pair, current_time)
        reason = entry_rejection(view, side, rate, self.helios.strategy.max_spread_bps,
                                 self.helios.strategy.cross_book)
        if reason:
            log.info("helios: entry %s %s at %.8g rejected: %s", side, pair, rate, reason)
            return False
        return True

    def custom_entry_price(self, pair: str, trade: Any, current_time: datetime, proposed_rate: float,
                           entry_tag: str | None, side: str, **kwargs: Any) -> float:
        """The LIMIT price: the best bid (long) or ask (short) now, never crossing the book unless
        ``cross_book``; Freqtrade's proposed rate when no usable book is known (confirm then rejects)."""
        view = self.market_view(pair, current_time)
        if not view.ok:
            return proposed_rate
        if self.helios.strategy.cross_book:
            return view.best_ask if side == "long" else view.best_bid
        return view.best_bid if side == "long" else view.best_ask

    def custom_stake_amount(self, pair: str, current_time: datetime, current_rate: float, proposed_stake: float,
                            min_stake: float | None, max_stake: float, leverage: float, entry_tag: str | None,
                            side: str, **kwargs: Any) -> float:
        """Stake by the risk rule: equity x risk / |entry - stop| x entry, capped by Freqtrade's proposed stake
        (``strategy.stake_cap`` "proposed") or its max stake ("max"); 0 (no trade) when the risk rule allows
        less than Freqtrade's minimum stake."""
        view = self.market_view(pair, current_time)
        stop, wall = self.stop_plan(pair, side, current_rate, view)
        risk = self.helios.settings.risk
        equity = self._equity()
        cap = min(proposed_stake, max_stake) if self.helios.strategy.stake_cap == "proposed" else max_stake
        size = position_size(equity, risk.risk_fraction, current_rate, stop, cap, risk)
        # Leverage multiplies exposure per unit of stake: the risk rule is about exposure.
        stake = size.stake / max(leverage, 1.0)
        if min_stake is not None and stake < min_stake:
            log.info("helios: %s %s skipped: the risk rule allows a stake of %.4g, below the minimum %.4g",
                     side, pair, stake, min_stake)
            return 0.0
        self._plans[pair] = {"stop": stop, "wall": wall if wall is not None else math.nan, "entry": current_rate,
                             "equity": equity, "risk": clamp_risk(risk.risk_fraction, risk), "stake": stake,
                             "capped": float(size.capped), "stake_cap": cap,
                             "side": 1.0 if side == "long" else -1.0}
        log.info("helios: stake %s %s = %.6g (equity %.6g x risk %.4g, entry %.8g, stop %.8g, wall %s%s)",
                 side, pair, stake, equity, clamp_risk(risk.risk_fraction, risk), current_rate, stop,
                 f"{wall:.8g}" if wall is not None else "none", f", capped at {cap:.6g}" if size.capped else "")
        return stake

    def _equity(self) -> float:
        wallets = getattr(self, "wallets", None)
        if wallets is None:
            return float(self.config.get("dry_run_wallet", 0.0) or 0.0)
        return float(wallets.get_total_stake_amount())

    def custom_stoploss(self, pair: str, trade: Any, current_time: datetime, current_rate: float,
                        current_profit: float, after_fill: bool, **kwargs: Any) -> float | None:
        """Behind the nearest wall protecting the trade, recomputed as walls move, only ever tightening;
        ``max_loss`` of the entry without a wall. The first call (the entry filled) takes the stop the stake
        was sized with; a later ``after_fill`` (another entry moved the average price) starts over from
        the new average entry."""
        side = "short" if trade.is_short else "long"
        entry = float(trade.open_rate)
        key = _trade_key(trade)
        stored = self._stored_stop(trade, key)
        view = self.market_view(pair, current_time)
        if stored is None or after_fill:
            plan = self._plans.pop(pair, None) if stored is None else None
            if plan is not None and (plan["side"] > 0) == (side == "long") and (
                    (side == "long" and plan["stop"] < entry) or (side == "short" and plan["stop"] > entry)):
                stop, meta = plan["stop"], {**plan, "initial_stop": plan["stop"]}
            else:
                stop, wall = self.stop_plan(pair, side, entry, view)
                meta = {"wall": wall if wall is not None else math.nan, "initial_stop": stop}
            self._store(trade, key, stop, meta)
        else:
            stop = stored
            candidate, wall = self.stop_plan(pair, side, current_rate, view)
            if wall is not None:  # no protecting wall now: keep the stop we have (never loosen)
                stop = max(stored, candidate) if side == "long" else min(stored, candidate)
            if stop != stored:
                self._store(trade, key, stop, {"wall": wall if wall is not None else math.nan})
        return stoploss_from_absolute(stop, current_rate, is_short=trade.is_short,
                                      leverage=float(getattr(trade, "leverage", 1.0) or 1.0))

    def _stored_stop(self, trade: Any, key: str) -> float | None:
        try:
            value = trade.get_custom_data("helios_stop")
        except Exception:  # a trade without custom-data storage
            value = None
        if value is None:
            value = self._stops.get(key)
        return float(value) if value is not None else None

    def _store(self, trade: Any, key: str, stop: float, plan: dict[str, float]) -> None:
        self._stops[key] = stop
        try:
            trade.set_custom_data("helios_stop", stop)
            for k in ("wall", "equity", "risk", "stake", "entry", "stake_cap", "initial_stop"):
                v = plan.get(k)
                if v is not None and math.isfinite(v):
                    trade.set_custom_data(f"helios_{k}", v)
        except Exception:  # kept in memory instead
            pass

    def leverage(self, pair: str, current_time: datetime, current_rate: float, proposed_leverage: float,
                 max_leverage: float, entry_tag: str | None, side: str, **kwargs: Any) -> float:
        return min(self.helios.strategy.leverage, max_leverage)


LONG_TAG = "absorption_bull_rsi_oversold"
SHORT_TAG = "absorption_bear_rsi_overbought"


def entry_signals(dataframe: pd.DataFrame, helios: HeliosConfig) -> tuple[pd.Series, pd.Series]:
    """(long, short) boolean entry signals from the per-candle columns only (the same live and backtest):
    absorption at a wall during the candle, RSI beyond its threshold, the book usable at the close and a
    wall still protecting the close (a bid wall below it for a long, an ask wall above it for a short)."""
    d = helios.settings.decision
    ok = dataframe["of_book_ok"] == 1
    close = dataframe["close"]
    rsi = dataframe["rsi"]
    long = ok & (dataframe["of_absorption_bull"] == 1) & (rsi < d.rsi_buy_below) & (
        dataframe["of_bid_wall_price"] < close)
    short = ok & (dataframe["of_absorption_bear"] == 1) & (rsi > d.rsi_sell_above) & (
        dataframe["of_ask_wall_price"] > close)
    if not d.allow_short:
        short = short & False
    return long.fillna(False).astype(bool), short.fillna(False).astype(bool)


def entry_rejection(view: MarketView, side: str, rate: float, max_spread_bps: float, cross_book: bool) -> str:
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


def _trade_key(trade: Any) -> str:
    tid = getattr(trade, "id", None)
    return f"{trade.pair}:{tid}" if tid is not None else f"{trade.pair}:{trade.open_date_utc.isoformat()}"


def _epoch_us(when: datetime) -> int:
    return int(pd.Timestamp(when).timestamp() * 1_000_000)


__all__ = ["ORDERFLOW_COLUMNS", "HeliosStrategy", "MarketView", "entry_rejection", "entry_signals"]
