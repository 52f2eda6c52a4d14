"""The base class of HeliosStrategy: the machinery that brings order flow into Freqtrade's callbacks.

``user_data/strategies/HeliosStrategy.py`` subclasses ``HeliosBase`` and holds the trading idea in
Freqtrade's own shape: declarations, hyperoptable Parameters, ``populate_*`` and the callbacks. This module
holds what that file should not have to show:

- **Where the order flow comes from.** ``live`` / ``dry_run``: ``bot_start`` starts one ``Feed`` thread
  (idempotently: FreqUI chart requests call ``bot_start`` again) that keeps the whitelist's books and trades
  and publishes a ``SharedState``; ``add_orderflow`` merges the feed's closed candles into the dataframe and
  ``market_view`` reads SharedState at call time. Every other mode (backtesting, hyperopt, plot-dataframe,
  FreqUI charts of the webserver): the recordings under ``user_data/orderflow/``
  (``helios.backtest.recordings``) through ``compute_features`` (cached), looked up as of ``current_time``,
  with no look-ahead. Both run the same engine on the same events, so the ``of_*`` columns and the entry
  signals are equal live and in backtests; live callbacks add what only a live bot can check (health,
  spread, the book now).
- **No waiting in callbacks.** Live, the newest candle Freqtrade hands over may not be closed by the engine
  yet (no event past its close has been processed: the kline and book streams race). ``add_orderflow`` does
  not wait for it: that row gets neutral order flow (``of_book_ok = 0``, so no entry on it), and since
  ``process_only_new_candles`` is False Freqtrade analyzes again on its next loop (every
  ``internals.process_throttle_secs``, 5 s by default), when the row gets the engine's values.
- **State kept per trade**: the stop each trade was sized with and where it has moved (Freqtrade's trade
  custom data, ``helios_stop`` ...), so a restart keeps the stops.
- **The helios config** (``helios`` section, ``HeliosConfig``): bad values stop start-up naming the key. Its
  ``decision.rsi_buy_below`` / ``rsi_sell_above`` set the strategy file's ``buy_rsi`` / ``short_rsi``
  Parameters when given (``config_parameters``).

``HeliosBase`` is itself a complete strategy: the rule (``rule.py``) at the thresholds of the helios config.
``HeliosStrategy`` is kept as its name here and in ``helios_orderflow.strategy`` for older strategy files
that subclass it without overriding anything.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from datetime import datetime
from typing import Any, ClassVar

import pandas as pd
import talib.abstract as ta
from freqtrade.strategy import IntParameter, IStrategy, stoploss_from_absolute
from freqtrade.strategy.parameters import BaseParameter

from helios_orderflow.engine.candles import timeframe_us
from helios_orderflow.features.backtest import (
    ORDERFLOW_COLUMNS,
    RecordedFeatures,
    find_recordings,
    history_frame,
    merge_features,
)
from helios_orderflow.features.freqai import freqai_features
from helios_orderflow.freqtrade import registry
from helios_orderflow.freqtrade.config import HeliosConfig, load_config
from helios_orderflow.freqtrade.credentials import install_redaction, secret_values_from_config
from helios_orderflow.freqtrade.orderflow_columns import OrderflowParams
from helios_orderflow.freqtrade.orderflow_trades import OrderflowCells
from helios_orderflow.freqtrade.risk import Side, clamp_risk, position_size
from helios_orderflow.freqtrade.rule import (
    LONG_TAG,
    SHORT_TAG,
    EntryThresholds,
    MarketView,
    entry_price,
    entry_rejection,
    entry_signals,
    exit_signals,
    stop_plan,
    tightened_stop,
)
from helios_orderflow.recording.store import Location

log = logging.getLogger(__name__)


class HeliosBase(IStrategy):
    """Order-flow machinery for a Freqtrade strategy, and the rule at the helios config's thresholds; see the
    module doc. Subclass it in a strategy file and override the idea (user_data/strategies/HeliosStrategy.py)."""

    INTERFACE_VERSION = 3

    timeframe = "1m"
    can_short = False  # set in __init__: True in futures when helios.decision.allow_short
    minimal_roi: ClassVar[dict[str, float]] = {"0": 0.01, "30": 0.005, "120": 0.0}
    # The hard floor under every stop; custom_stoploss normally sits much closer (behind the wall).
    stoploss = -0.10
    use_custom_stoploss = True
    trailing_stop = False
    # False: Freqtrade analyzes every loop, so a candle the engine closes after Freqtrade's first look at it
    # gets its order flow on the next loop instead of waiting (module doc).
    process_only_new_candles = False
    use_exit_signal = True
    startup_candle_count = 50
    order_types: ClassVar[dict[str, Any]] = {
        "entry": "limit",
        "exit": "limit",
        "stoploss": "market",
        "stoploss_on_exchange": False,
    }
    order_time_in_force: ClassVar[dict[str, str]] = {"entry": "GTC", "exit": "GTC"}

    #: Parameters of the strategy file that a key of the ``helios`` config sets when the config gives it
    #: (as Freqtrade's ``buy_params`` would; a parameter file written by hyperopt still wins, as in Freqtrade).
    config_parameters: ClassVar[dict[str, tuple[str, str]]] = {
        "buy_rsi": ("decision", "rsi_buy_below"),
        "short_rsi": ("decision", "rsi_sell_above"),
    }

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
        self._own_parameters(config.get("helios") or {})
        self._live_key: tuple[Any, ...] | None = None
        self._recorded: RecordedFeatures | None = None
        #: Per pair, the feed's last candle history and its feature frame (rebuilt when a candle closes).
        self._live_frames: dict[str, tuple[tuple[Any, ...], pd.DataFrame]] = {}
        #: Per pair, the stop plan made at sizing time (custom_stake_amount), used by the first stoploss call.
        self._plans: dict[str, dict[str, float]] = {}
        #: Stops kept per trade when the trade cannot store custom data.
        self._stops: dict[str, float] = {}
        #: Freqtrade's order-flow columns (``add_freqtrade_orderflow``): made at the first call.
        self._ft_orderflow: OrderflowCells | None = None
        if self.helios.strategy.freqtrade_orderflow:
            self.freqtrade_orderflow_cells()  # a missing or bad orderflow section stops start-up, naming the key
            if (config.get("exchange") or {}).get("use_public_trades"):
                log.warning("helios: exchange.use_public_trades and helios.strategy.freqtrade_orderflow are both "
                            "on: Freqtrade downloads trades over REST and its columns replace Helios's; turn "
                            "exchange.use_public_trades off to take them from Helios's trades")

    def _own_parameters(self, section: dict[str, Any]) -> None:
        """Give this instance its own copy of every hyperoptable Parameter (Freqtrade keeps their values on the
        class, shared by every instance: tests and FreqUI's webserver build several with different configs),
        then set those ``config_parameters`` names from the keys the helios ``section`` gives."""
        cls = type(self)
        for name in dir(cls):
            value = getattr(cls, name, None)
            if not name.startswith("__") and isinstance(value, BaseParameter):
                setattr(self, name, copy.copy(value))
        for name, (group, key) in self.config_parameters.items():
            param = getattr(self, name, None)
            if not isinstance(param, BaseParameter) or key not in (section.get(group) or {}):
                continue
            value = getattr(getattr(self.helios.settings, group), key)
            if isinstance(param, IntParameter) and float(value).is_integer():
                value = int(value)
            param.value = value
            space = f"{param.space or 'buy'}_params"
            setattr(self, space, {**getattr(self, space, {}), name: value})

    # ---- pickling (hyperopt) --------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # The feed thread lives in registry.LIVE, never here; the recorded-feature frames reload from the
        # disk cache. Hyperopt pickles the strategy file by value (cloudpickle), so no lock or thread may be
        # a global of this module or of that file either.
        state["_live_key"] = None
        state["_live_frames"] = {}
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

    # ---- start-up and shutdown ----------------------------------------------------------------------------

    def bot_start(self, **kwargs: Any) -> None:
        """Start the live feed (and dashboard) in live and dry-run only; a no-op when already running."""
        if self.is_live:
            self._live_key = self._ensure_live()

    def bot_loop_start(self, current_time: datetime, **kwargs: Any) -> None:
        """Live: the feed follows the whitelist (``helios.feed.follow_whitelist``): a pair a dynamic pairlist
        added gets its order flow, a pair it removed stops costing. Returns at once (the change is made on the
        feed's thread)."""
        if not self.is_live or self._live_key is None or not self.helios.settings.feed.follow_whitelist:
            return
        handle = registry.LIVE.get(self._live_key)
        if handle is None:
            return
        pairs = self._pairs()
        if set(pairs) != set(handle.feed.symbols):
            handle.feed.set_pairs(pairs)  # logs which pairs joined and left

    def _pairs(self) -> list[str]:
        """The pairs the feed follows: the whitelist now (the configured one before the pairlist has run),
        plus the informative pairs with ``helios.feed.follow_informative``."""
        dp = getattr(self, "dp", None)
        try:
            pairs = list(dp.current_whitelist()) if dp is not None else []
        except Exception:  # no pairlist yet: fall back to the configured whitelist
            pairs = []
        pairs = pairs or list(self.helios.pairs)
        if self.helios.settings.feed.follow_informative:
            try:
                pairs += [str(p[0]) for p in self.informative_pairs()]
            except Exception:  # a strategy whose informative_pairs needs what is not there yet
                log.exception("helios: informative_pairs() failed; the feed follows the whitelist only")
        return list(dict.fromkeys(pairs))

    def _ensure_live(self) -> tuple[Any, ...]:
        from helios_orderflow.live.feed import Feed

        h = self.helios
        pairs = tuple(self._pairs())
        record_to = h.recording_dir
        keep_trades_us = self._keep_trades_us()
        # the pairs are not part of the key: the feed follows the whitelist (``bot_loop_start``)
        key = (h.exchange, str(record_to), h.timeframe, keep_trades_us)

        def make() -> registry.LiveHandle:
            return registry.LiveHandle(Feed(h.exchange, pairs, h.settings, ccxt_config=dict(h.ccxt_config),
                                         record_to=record_to, timeframe=h.timeframe, keep_trades_us=keep_trades_us))

        handle, started = registry.LIVE.ensure(key, make)
        if not started and set(pairs) != set(handle.feed.symbols):
            handle.feed.set_pairs(pairs)
        if started:
            log.info("helios: live order-flow feed started for %s on %s (%s), recording to %s",
                     ", ".join(pairs), h.exchange, h.timeframe, record_to or "nowhere (recording off)")
            if h.dashboard.enabled and handle.dashboard is None:
                handle.dashboard = self._start_dashboard(handle.feed)
        return key

    def _keep_trades_us(self) -> int:
        """How much of each pair's trades the feed keeps for Freqtrade's order-flow columns: ``max_candles``
        candles when ``helios.strategy.freqtrade_orderflow`` is on or the config has an ``orderflow`` section
        (a strategy may call ``add_freqtrade_orderflow`` itself), else none."""
        if not self.helios.strategy.freqtrade_orderflow and not isinstance(self.config.get("orderflow"), dict):
            return 0
        params = self.freqtrade_orderflow_cells().params
        return params.max_candles * params.candle_us

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
        handle = registry.LIVE.get(key) if key is not None else None
        return handle.feed.state if handle is not None else None

    def ft_bot_cleanup(self) -> None:
        """Freqtrade's cleanup on exit and on config reload: stop the feed cleanly (flushes the recording)."""
        super().ft_bot_cleanup()
        self.stop_live()

    def stop_live(self) -> None:
        """Stop this strategy's feed and dashboard (flushes the recording). Idempotent."""
        key, self._live_key = self._live_key, None
        if key is not None:
            registry.LIVE.stop(key)

    def recorded(self) -> RecordedFeatures:
        if self._recorded is None:
            h = self.helios
            self._recorded = RecordedFeatures(h.recordings_dir, h.recorded_exchange, self.timeframe, h.settings,
                                              cache=h.backtest.cache)
            if self.runmode in ("backtest", "hyperopt"):
                # Freqtrade asks for one pair at a time: build the whole whitelist's features at once, in
                # parallel (helios.backtest.workers / dask; docs/research.md).
                self._recorded.prefetch(self._pairs())
        return self._recorded

    # ---- the order flow in the dataframe ------------------------------------------------------------------

    def add_orderflow(self, dataframe: pd.DataFrame, pair: str) -> pd.DataFrame:
        """``dataframe`` with the ``of_*`` columns: live, the feed's closed candles; otherwise the recordings.
        Never waits: a candle without features yet (live: not closed by the engine; offline: not recorded)
        gets neutral values (``of_book_ok = 0``: the rule never enters on it)."""
        if self.is_live:
            merged, _ = merge_features(dataframe, self._live_features(pair))
            return merged
        return self.recorded().merge(dataframe, pair)

    def add_freqai_orderflow(self, dataframe: pd.DataFrame, pair: str, timeframe: str | None = None) -> pd.DataFrame:
        """``dataframe`` with the order-flow columns as FreqAI features (``%-of_...``, no NaN;
        ``features/freqai.py``), for ``feature_engineering_standard``, or ``feature_engineering_expand_basic`` at
        the strategy's timeframe (pass ``metadata["tf"]`` there: the order flow exists at that timeframe only, the
        live feed builds candles of it). Same source as ``add_orderflow``: the feed live, the recordings otherwise."""
        if timeframe is not None and timeframe != self.timeframe:
            raise ValueError(f"helios: order-flow features exist at the strategy's timeframe {self.timeframe}, not "
                             f"{timeframe}; add them in feature_engineering_standard, or in "
                             f"feature_engineering_expand_basic only when metadata['tf'] == self.timeframe")
        return freqai_features(self.add_orderflow(dataframe, pair))

    def freqtrade_orderflow_cells(self) -> OrderflowCells:
        """The order-flow config (``timeframe``, the ``orderflow`` section) and the cells kept between calls."""
        if self._ft_orderflow is None:
            section = self.config.get("orderflow")
            params = OrderflowParams.from_config({"timeframe": self.timeframe, "orderflow": section})
            self._ft_orderflow = OrderflowCells(params)
        return self._ft_orderflow

    def add_freqtrade_orderflow(self, dataframe: pd.DataFrame, pair: str) -> pd.DataFrame:
        """``dataframe`` with Freqtrade's order-flow columns (``trades``, ``orderflow``, ``imbalances``,
        ``stacked_imbalances_bid`` / ``_ask``, ``max_delta``, ``min_delta``, ``bid``, ``ask``, ``delta``,
        ``total_trades``: Freqtrade's names, dtypes and values; ``helios_orderflow.freqtrade_orderflow``) from
        the config's ``orderflow`` section. Live: the feed's websocket trades (kept for ``max_candles``
        candles; never waits: trades not yet received are not there); otherwise the recordings' trades. No
        REST trade download. ``helios.strategy.freqtrade_orderflow: true`` calls this before
        ``populate_indicators``; a strategy may call it in ``populate_indicators`` instead."""
        cells = self.freqtrade_orderflow_cells()
        if self.is_live:
            key = self._live_key
            handle = registry.LIVE.get(key) if key is not None else None
            # None for a pair the feed does not follow (yet): NaN columns (the feed keeps trades for every pair
            # it follows, since the config has the orderflow section)
            tape = handle.feed.trade_tape(pair) if handle is not None else None
            return cells.add_from_tape(dataframe, pair, tape, self._live_recordings, self.helios.exchange)
        h = self.helios
        return cells.add_from_recordings(dataframe, pair, find_recordings(h.recordings_dir), h.recorded_exchange)

    def _live_recordings(self) -> list[Location]:
        """Where trades from before the live feed started are: the feed's recording folder (earlier runs) and
        the backtest recordings, when they exist."""
        h = self.helios
        roots = dict.fromkeys(p for p in (h.recording_dir, h.recordings_dir) if p is not None)
        return [rec for root in roots for rec in find_recordings(root)]

    def advise_indicators(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        """Freqtrade's order-flow columns first (``helios.strategy.freqtrade_orderflow``), where Freqtrade puts
        its own: a strategy written for Freqtrade's order flow finds them in ``populate_indicators``."""
        if self.helios.strategy.freqtrade_orderflow:
            dataframe = self.add_freqtrade_orderflow(dataframe, metadata["pair"])
        return super().advise_indicators(dataframe, metadata)

    def _live_features(self, pair: str) -> pd.DataFrame:
        """The feed's closed candles of ``pair`` as a feature frame, as published now (no waiting)."""
        state = self.shared_state
        rows: tuple[Any, ...] = state.history(pair) if state is not None else ()
        cached = self._live_frames.get(pair)
        if cached is not None and cached[0] is rows:  # the feed publishes a new tuple when a candle closes
            return cached[1]
        frame = history_frame(rows)
        self._live_frames[pair] = (rows, frame)
        return frame

    def entry_thresholds(self) -> EntryThresholds:
        """The rule's thresholds for this class: the helios config's RSI levels, the rule's other defaults
        (the strategy file passes its Parameters instead)."""
        d = self.helios.settings.decision
        return EntryThresholds(rsi_long_below=d.rsi_buy_below, rsi_short_above=d.rsi_sell_above)

    # ---- the market as a callback sees it -----------------------------------------------------------------

    def market_view(self, pair: str, current_time: datetime) -> MarketView:
        """Live: SharedState now (health checked at read time). Otherwise: the recorded features as of
        ``current_time`` (the last candle closed at or before it)."""
        tick = self._tick(pair)
        if self.is_live:
            return self._live_view(pair, tick)
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

    def _live_view(self, pair: str, tick: float) -> MarketView:
        state = self.shared_state
        if state is None:
            return MarketView(("the live feed is not running",), tick=tick)
        # One publication, one health record: the feed's PairHealth carries the engine's book verdict too, and
        # the engine state read below is the one published with it.
        snap = state.get(pair)
        if snap is None:
            return MarketView(state.problems(pair), tick=tick)
        now = state.clock()
        problems = snap.health.problems(now, state.health_settings)
        if problems or not snap.health.is_healthy(now, state.health_settings):
            return MarketView(problems or ("unhealthy book",), tick=tick)
        if snap.engine is None:
            return MarketView(("the engine has no usable book (out of sync, crossed or one-sided)",), tick=tick)
        return MarketView.of_engine(snap.engine, tick)

    def _tick(self, pair: str) -> float:
        dp = getattr(self, "dp", None)
        try:
            market = dp.market(pair) if dp is not None else None
            tick = float(market["precision"]["price"]) if market else math.nan
        except Exception:  # no markets in this mode: the stop buffer alone applies
            tick = math.nan
        return tick if tick > 0 else math.nan

    # ---- stops and sizing: the rule with the helios settings, and what is kept per trade -------------------

    def stop_plan(self, side: Side, entry: float, view: MarketView) -> tuple[float, float | None]:
        """(stop price, protecting wall price or None) for a ``side`` trade entered at ``entry``: ``rule.stop_plan``
        with ``risk.stop_buffer_bps`` and ``strategy.max_loss``."""
        return stop_plan(view, side, entry, self.helios.settings.risk.stop_buffer_bps,
                         self.helios.strategy.max_loss)

    def risk_stake(self, pair: str, side: Side, rate: float, stop: float, wall: float | None, proposed_stake: float,
                   min_stake: float | None, max_stake: float, leverage: float) -> float:
        """The stake by the risk rule: equity x ``risk.risk_fraction`` (clamped to 1-2 %) / |rate - stop| x rate,
        capped by Freqtrade's proposed stake (``strategy.stake_cap`` "proposed") or its max stake ("max"), divided
        by the leverage; 0 (no trade) below Freqtrade's minimum stake. The plan is kept for the trade's first
        stop."""
        risk = self.helios.settings.risk
        equity = self.equity()
        cap = min(proposed_stake, max_stake) if self.helios.strategy.stake_cap == "proposed" else max_stake
        size = position_size(equity, risk.risk_fraction, rate, stop, cap, risk)
        # Leverage multiplies exposure per unit of stake: the risk rule is about exposure.
        stake = size.stake / max(leverage, 1.0)
        if min_stake is not None and stake < min_stake:
            log.info("helios: %s %s skipped: the risk rule allows a stake of %.4g, below the minimum %.4g",
                     side, pair, stake, min_stake)
            return 0.0
        fraction = clamp_risk(risk.risk_fraction, risk)
        self._plans[pair] = {"stop": stop, "wall": wall if wall is not None else math.nan, "entry": rate,
                             "equity": equity, "risk": fraction, "stake": stake, "capped": float(size.capped),
                             "stake_cap": cap, "side": 1.0 if side == "long" else -1.0}
        log.info("helios: stake %s %s = %.6g (equity %.6g x risk %.4g, entry %.8g, stop %.8g, wall %s%s)",
                 side, pair, stake, equity, fraction, rate, stop,
                 f"{wall:.8g}" if wall is not None else "none", f", capped at {cap:.6g}" if size.capped else "")
        return stake

    def equity(self) -> float:
        """Freqtrade's total stake-currency equity (the dry-run wallet before wallets exist)."""
        wallets = getattr(self, "wallets", None)
        if wallets is None:
            return float(self.config.get("dry_run_wallet", 0.0) or 0.0)
        return float(wallets.get_total_stake_amount())

    def stored_stop(self, trade: Any) -> float | None:
        """The stop kept for ``trade`` (its custom data, or memory), None before its first stop."""
        try:
            value = trade.get_custom_data("helios_stop")
        except Exception:  # a trade without custom-data storage
            value = None
        if value is None:
            value = self._stops.get(_trade_key(trade))
        return float(value) if value is not None else None

    def initial_stop(self, trade: Any, view: MarketView) -> float:
        """The stop of a trade whose entry just filled: the one its stake was sized with (custom_stake_amount)
        when that is still on the losing side of the fill, else ``stop_plan`` from the (average) entry. Kept."""
        side: Side = "short" if trade.is_short else "long"
        entry = float(trade.open_rate)
        plan = self._plans.pop(trade.pair, None) if self.stored_stop(trade) is None else None
        if plan is not None and (plan["side"] > 0) == (side == "long") and (
                (side == "long" and plan["stop"] < entry) or (side == "short" and plan["stop"] > entry)):
            stop, meta = plan["stop"], {**plan, "initial_stop": plan["stop"]}
        else:
            stop, wall = self.stop_plan(side, entry, view)
            meta = {"wall": wall if wall is not None else math.nan, "initial_stop": stop}
        self._store(trade, stop, meta)
        return stop

    def move_stop(self, trade: Any, stop: float, wall: float) -> float:
        """Keep ``stop`` (behind ``wall``) as ``trade``'s stop if it changed; returns it."""
        if stop != self.stored_stop(trade):
            self._store(trade, stop, {"wall": wall})
        return stop

    def _store(self, trade: Any, stop: float, plan: dict[str, float]) -> None:
        self._stops[_trade_key(trade)] = stop
        try:
            trade.set_custom_data("helios_stop", stop)
            for k in ("wall", "equity", "risk", "stake", "entry", "stake_cap", "initial_stop"):
                v = plan.get(k)
                if v is not None and math.isfinite(v):
                    trade.set_custom_data(f"helios_{k}", v)
        except Exception:  # kept in memory instead
            pass

    # ---- the rule at the helios config's thresholds (the strategy file overrides these) -------------------

    def populate_indicators(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=self.helios.settings.decision.rsi_period)
        return self.add_orderflow(dataframe, metadata["pair"])

    def populate_entry_trend(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        long, short = entry_signals(dataframe, self.entry_thresholds(), self.can_short)
        dataframe.loc[long, ["enter_long", "enter_tag"]] = (1, LONG_TAG)
        dataframe.loc[short, ["enter_short", "enter_tag"]] = (1, SHORT_TAG)
        return dataframe

    def populate_exit_trend(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        if self.helios.strategy.exit_on_exhaustion:
            exit_long, exit_short = exit_signals(dataframe)
            dataframe.loc[exit_long, ["exit_long", "exit_tag"]] = (1, "exhaustion_up")
            dataframe.loc[exit_short, ["exit_short", "exit_tag"]] = (1, "exhaustion_down")
        return dataframe

    def confirm_trade_entry(self, pair: str, order_type: str, amount: float, rate: float, time_in_force: str,
                            current_time: datetime, entry_tag: str | None, side: Side, **kwargs: Any) -> bool:
        reason = entry_rejection(self.market_view(pair, current_time), side, rate,
                                 self.helios.strategy.max_spread_bps, self.helios.strategy.cross_book)
        if reason:
            log.info("helios: entry %s %s at %.8g rejected: %s", side, pair, rate, reason)
        return not reason

    def custom_entry_price(self, pair: str, trade: Any, current_time: datetime, proposed_rate: float,
                           entry_tag: str | None, side: Side, **kwargs: Any) -> float:
        return entry_price(self.market_view(pair, current_time), side, self.helios.strategy.cross_book,
                           proposed_rate)

    def custom_stake_amount(self, pair: str, current_time: datetime, current_rate: float, proposed_stake: float,
                            min_stake: float | None, max_stake: float, leverage: float, entry_tag: str | None,
                            side: Side, **kwargs: Any) -> float:
        stop, wall = self.stop_plan(side, current_rate, self.market_view(pair, current_time))
        return self.risk_stake(pair, side, current_rate, stop, wall, proposed_stake, min_stake, max_stake, leverage)

    def custom_stoploss(self, pair: str, trade: Any, current_time: datetime, current_rate: float,
                        current_profit: float, after_fill: bool, **kwargs: Any) -> float | None:
        side: Side = "short" if trade.is_short else "long"
        view = self.market_view(pair, current_time)
        stop = self.stored_stop(trade)
        if stop is None or after_fill:
            stop = self.initial_stop(trade, view)
        else:
            candidate, wall = self.stop_plan(side, current_rate, view)
            if wall is not None:
                stop = self.move_stop(trade, tightened_stop(side, stop, candidate), wall)
        return stoploss_from_absolute(stop, current_rate, is_short=trade.is_short,
                                      leverage=float(getattr(trade, "leverage", 1.0) or 1.0))

    def leverage(self, pair: str, current_time: datetime, current_rate: float, proposed_leverage: float,
                 max_leverage: float, entry_tag: str | None, side: str, **kwargs: Any) -> float:
        return min(self.helios.strategy.leverage, max_leverage)


#: The kept name: ``helios_orderflow.strategy.HeliosStrategy`` and older strategy files subclass it.
HeliosStrategy = HeliosBase


def _trade_key(trade: Any) -> str:
    tid = getattr(trade, "id", None)
    return f"{trade.pair}:{tid}" if tid is not None else f"{trade.pair}:{trade.open_date_utc.isoformat()}"


def _epoch_us(when: datetime) -> int:
    return int(pd.Timestamp(when).timestamp() * 1_000_000)


__all__ = ["LONG_TAG", "ORDERFLOW_COLUMNS", "SHORT_TAG", "HeliosBase", "HeliosStrategy", "MarketView"]
