"""Every tunable of Helios, with its default and unit, in one place.

Settings are read from the ``helios`` section of the Freqtrade config (see ``HeliosSettings.from_dict``);
unknown keys and bad values stop start-up with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from helios_orderflow.core.errors import ConfigError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """How recordings are written (see README, "Recording format")."""

    enabled: bool = True
    #: Where recordings go, relative to Freqtrade's user_data dir when not absolute; or an object store's folder,
    #: e.g. "s3://bucket/prefix" (docs/recording.md, "Recordings on object storage").
    path: str = "orderflow"
    #: Endpoint of an S3-compatible store (MinIO, Ceph, R2...) for s3:// recordings, here and in
    #: backtest.recordings, e.g. "http://minio:9000"; "" = the URL's ?endpoint_override=, else the environment's
    #: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS. Credentials come from the environment (AWS_ACCESS_KEY_ID,
    #: AWS_SECRET_ACCESS_KEY), ~/.aws or the instance role, never from this file.
    endpoint_url: str = ""
    #: Buffered events are written out at least this often (seconds of wall-clock time); a crash
    #: loses at most this much.
    flush_interval_s: float = 5.0
    #: A file is closed and a new one started after this many seconds of data.
    segment_s: float = 60.0
    #: ... or after this many rows, whichever comes first (bounds memory and file size).
    segment_rows: int = 1_000_000
    #: Keep this many UTC days of recording, today included; older whole days are deleted, oldest first
    #: (0 = keep every day). Checked when recording starts and every few minutes.
    retention_days: int = 0
    #: Keep the recording under this many GB (1e9 bytes), deleting the oldest whole days first; today's day
    #: is never deleted (0 = no limit). About 0.4 GB per pair-day at Binance BTCUSDT's rate (docs/recording.md).
    max_gb: float = 0.0
    #: A pair whose recording is paused (disk full) or stopped is unhealthy (no new trades) instead of
    #: healthy with a warning.
    required: bool = False
    #: The live feed saves each pair's engine beside the recording this often (seconds of event time) and when
    #: it stops, so that a restart continues the session (CVD, VWAP, walls, candles) from the newest one plus the
    #: events recorded after it; 0 = never (a restart starts every pair fresh).
    checkpoint_every_s: float = 3600.0

    def __post_init__(self) -> None:
        _require(self.retention_days >= 0, "helios.recording.retention_days", "must be >= 0 (0 = keep every day)")
        _require(self.max_gb >= 0, "helios.recording.max_gb", "must be >= 0 (0 = no limit)")
        _require(self.checkpoint_every_s >= 0, "helios.recording.checkpoint_every_s", "must be >= 0 (0 = never)")


T = TypeVar("T", bound="DataclassInstance")


#: Keys Helios once had and no longer reads: a config that still has one loads, with a warning saying what to do
#: (a config written for an older Helios must not stop a bot for a key that now means nothing).
RETIRED_KEYS = {
    "helios.dashboard.refresh_ms": "the page no longer polls: the server pushes updates over a WebSocket; "
                                   "delete the key",
}


def from_mapping(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build settings dataclass ``cls`` from a dict, rejecting unknown keys and wrong types (``RETIRED_KEYS``
    are dropped with a warning)."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be an object, got {type(data).__name__}")
    data = dict(data or {})
    for key in [k for k in data if f"{where}.{k}" in RETIRED_KEYS]:
        log.warning("helios: %s.%s is no longer used (%s)", where, key, RETIRED_KEYS[f"{where}.{key}"])
        del data[key]
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)} in {where}; allowed: {', '.join(sorted(names))}"
        )
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[f.name] = from_mapping(hint, value, f"{where}.{f.name}")
            continue
        values[f.name] = _coerce(value, hint, f"{where}.{f.name}")
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


# --- Order-flow engine, decision and risk (issue 3; units and meaning in docs/signals.md) ---------------


def _require(ok: bool, where: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{where} {problem}")


@dataclass(frozen=True, slots=True)
class HeatmapSettings:
    """The liquidity heatmap, and the price bin that walls and absorption also use."""

    #: Build heatmap columns at all (the per-candle features never read them; ``compute_features`` turns
    #: this off to save time, which changes no feature value).
    enabled: bool = True
    #: One column is sampled every this many milliseconds of event time.
    snapshot_interval_ms: int = 500
    #: Columns cover mid +/- this many percent of the mid price (fixed when the first book arrives).
    range_pct: float = 0.5
    #: On a thin book the range widens (once, at the first book) until each side shows this many price levels
    #: (docs/signals.md, "Thin markets") ...
    min_levels: int = 10
    #: ... but never beyond mid +/- this many percent ...
    max_range_pct: float = 10.0
    #: ... nor beyond this many bins per side (memory: about 17 MB per pair at 100 with the default window).
    max_bins_per_side: int = 100
    #: Price bin in quote units (e.g. 0.5), or "auto": a whole number of ticks ({1, 2, 5} x 10^k, or 2.5 x 10^k
    #: from 10 ticks up) nearest, in ratio, to 1 basis point of the first mid price (to range / max_bins_per_side
    #: when a widened range needs wider bins); exactly one tick when the tick is 1 bp or more.
    bin_size: float | str = "auto"
    #: Price tick in quote units (every pair); 0 = the pair's own tick where the driver passes one
    #: (``PairEngine(tick_size=)``), else inferred from the decimals of the best 20 levels per side of the first book.
    tick_size: float = 0.0
    #: The ring buffer keeps this many seconds of columns (memory is fixed by this, not by run length).
    window_s: float = 3600.0

    def __post_init__(self) -> None:
        _require(self.snapshot_interval_ms > 0, "helios.heatmap.snapshot_interval_ms", "must be > 0")
        _require(0 < self.range_pct <= 50, "helios.heatmap.range_pct", "must be in (0, 50]")
        _require(self.tick_size >= 0, "helios.heatmap.tick_size", "must be >= 0 (0 = infer)")
        _require(self.min_levels >= 1, "helios.heatmap.min_levels", "must be >= 1")
        _require(0 < self.max_range_pct <= 50, "helios.heatmap.max_range_pct", "must be in (0, 50]")
        _require(1 <= self.max_bins_per_side <= 2000, "helios.heatmap.max_bins_per_side", "must be in 1..2000")
        _require(self.window_s >= self.snapshot_interval_ms / 1000, "helios.heatmap.window_s",
                 "must hold at least one column")
        b = self.bin_size
        if isinstance(b, str):
            _require(b == "auto", "helios.heatmap.bin_size", f"must be a price step like 0.5 or 'auto', got {b!r}")
        else:
            _require(isinstance(b, (int, float)) and not isinstance(b, bool) and b > 0,
                     "helios.heatmap.bin_size", f"must be a price step > 0 or 'auto', got {b!r}")


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """CVD, VWAP, order-flow imbalance, book imbalances and candles."""

    #: The session (CVD and VWAP anchor) starts every day at this UTC time, "HH:MM".
    session_anchor_utc: str = "00:00"
    #: Multi-level OFI sums the OFI of the best this many price levels per side.
    ofi_levels: int = 5
    #: Depth imbalance counts resting size within mid +/- this many basis points.
    depth_imbalance_bps: float = 10.0
    #: Closed candles the engine keeps (bounded history for the live dataframe).
    candle_history: int = 1500

    def __post_init__(self) -> None:
        hh, sep, mm = self.session_anchor_utc.partition(":")
        ok = bool(sep) and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60
        _require(ok, "helios.flow.session_anchor_utc", f"must be 'HH:MM' (UTC), got {self.session_anchor_utc!r}")
        _require(1 <= self.ofi_levels <= 50, "helios.flow.ofi_levels", "must be in 1..50")
        _require(self.depth_imbalance_bps > 0, "helios.flow.depth_imbalance_bps", "must be > 0")
        _require(self.candle_history >= 1, "helios.flow.candle_history", "must be >= 1")


@dataclass(frozen=True, slots=True)
class WallSettings:
    """Liquidity walls: price bins (heatmap bins) that hold far more resting size than their neighbours."""

    #: Walls are looked for within mid +/- this many percent ...
    range_pct: float = 0.3
    #: ... or, on a side whose this many best price levels lie farther out (a thin book), out to that side's
    #: last of them, never beyond the heatmap's range.
    min_levels: int = 10
    #: A bin is a wall candidate when its resting size >= this times the median non-empty bin size in range ...
    size_k: float = 3.0
    #: ... and >= this times the size-weighted median of the other bins of its side in range (the bin size at
    #: which half of their resting volume sits; dust, a minimum-size order repeated at every tick of a thin book,
    #: has no weight there). 0 = the median rule alone. At 1.5 the median rule decides wherever the weighted
    #: median is below size_k / 1.5 = 2 x the median, as on dense books (BTC/USDT: 1.55 x, 90 % of scans < 1.9 x).
    liquidity_k: float = 1.5
    #: ... and becomes a wall once it has stayed a candidate this many seconds.
    min_age_s: float = 10.0
    #: A wall ends when its size falls below this fraction of its peak size.
    end_frac: float = 0.25
    #: An ended wall was "traded" (through) when taker volume into or beyond it since it was first seen is at
    #: least this fraction of the size it lost (peak - size at end); otherwise it was "pulled".
    traded_frac: float = 0.5
    #: The book is scanned for walls every this many milliseconds of event time.
    scan_interval_ms: int = 2000
    #: No walls are reported when fewer non-empty bins than this are in range (the median means nothing).
    min_bins: int = 5

    def __post_init__(self) -> None:
        _require(0 < self.range_pct <= 50, "helios.walls.range_pct", "must be in (0, 50]")
        _require(self.size_k > 1, "helios.walls.size_k", "must be > 1")
        _require(self.min_levels >= 1, "helios.walls.min_levels", "must be >= 1")
        _require(self.liquidity_k >= 0, "helios.walls.liquidity_k", "must be >= 0 (0 = median rule only)")
        _require(self.min_age_s >= 0, "helios.walls.min_age_s", "must be >= 0")
        _require(0 <= self.end_frac < 1, "helios.walls.end_frac", "must be in [0, 1)")
        _require(0 <= self.traded_frac <= 1, "helios.walls.traded_frac", "must be in [0, 1]")
        _require(self.scan_interval_ms > 0, "helios.walls.scan_interval_ms", "must be > 0")
        _require(self.min_bins >= 1, "helios.walls.min_bins", "must be >= 1")


@dataclass(frozen=True, slots=True)
class AbsorptionSettings:
    """Absorption: aggressive volume into a wall that holds."""

    #: Taker volume into the wall is summed over this many seconds.
    window_s: float = 30.0
    #: Absorption fires when that sum reaches this fraction of the wall's peak size.
    frac: float = 0.5

    def __post_init__(self) -> None:
        _require(self.window_s > 0, "helios.absorption.window_s", "must be > 0")
        _require(self.frac > 0, "helios.absorption.frac", "must be > 0")


@dataclass(frozen=True, slots=True)
class ExhaustionSettings:
    """Exhaustion: a new price extreme that CVD and aggressive volume do not confirm (1 s buckets)."""

    #: The recent window, seconds (a whole number of 1 s buckets).
    window_s: int = 30
    #: The window is compared with the this many seconds before it (lookback includes the recent window).
    lookback_s: int = 300
    #: Recent taker volume in the move's direction must be below this fraction of its average per window
    #: over the earlier part of the lookback.
    volume_frac: float = 0.7

    def __post_init__(self) -> None:
        _require(self.window_s >= 1, "helios.exhaustion.window_s", "must be >= 1")
        _require(self.lookback_s >= 2 * self.window_s, "helios.exhaustion.lookback_s", "must be >= 2 x window_s")
        _require(self.volume_frac > 0, "helios.exhaustion.volume_frac", "must be > 0")


@dataclass(frozen=True, slots=True)
class VolumeProfileSettings:
    """The volume profile's value area (signals/volume_profile.py; sessions start at flow.session_anchor_utc)."""

    #: The value area holds at least this many percent of the profile's volume ...
    value_area_pct: float = 70.0
    #: ... grown from the POC this many bins at a time, towards the side whose next bins hold more volume (both
    #: sides on a tie): 2 is Market Profile's two-bins-at-a-time rule, 1 compares single bins.
    value_area_step: int = 2
    #: Price bin of the per-candle session profile columns (``session_poc`` ...), quote units, or "auto": per
    #: session, the {1, 2, 5} x 10^k nearest (in ratio) to 1 basis point of the session's first traded price.
    bin_size: float | str = "auto"

    def __post_init__(self) -> None:
        _require(0 < self.value_area_pct <= 100, "helios.volume_profile.value_area_pct", "must be in (0, 100]")
        _require(self.value_area_step in (1, 2), "helios.volume_profile.value_area_step", "must be 1 or 2")
        b = self.bin_size
        if isinstance(b, str):
            _require(b == "auto", "helios.volume_profile.bin_size",
                     f"must be a price step like 10.0 or 'auto', got {b!r}")
        else:
            _require(isinstance(b, (int, float)) and not isinstance(b, bool) and b > 0,
                     "helios.volume_profile.bin_size", f"must be a price step > 0 or 'auto', got {b!r}")


#: What a footprint's diagonal imbalance ratio compares (``helios.footprint.imbalance_basis``).
IMBALANCE_BASES = ("trades", "volume")


@dataclass(frozen=True, slots=True)
class FootprintSettings:
    """The footprint's diagonal imbalances (signals/footprint.py), by Freqtrade's order-flow rule."""

    #: A bin has a bid (ask) imbalance when its bid over the next traded bin's ask (that ask over its bid) is above
    #: this ratio (Freqtrade's orderflow.imbalance_ratio, its documented value) ...
    imbalance_ratio: float = 3.0
    #: ... and the bin holds at least this much volume, base units (orderflow.imbalance_volume).
    imbalance_volume: float = 1.0
    #: What the ratio compares: "trades" (taker trade counts, as Freqtrade does) or "volume" (base volumes).
    imbalance_basis: str = "trades"

    def __post_init__(self) -> None:
        _require(self.imbalance_ratio >= 0, "helios.footprint.imbalance_ratio", "must be >= 0")
        _require(self.imbalance_volume >= 0, "helios.footprint.imbalance_volume", "must be >= 0")
        _require(self.imbalance_basis in IMBALANCE_BASES, "helios.footprint.imbalance_basis",
                 f"must be one of {', '.join(IMBALANCE_BASES)}, got {self.imbalance_basis!r}")


@dataclass(frozen=True, slots=True)
class DecisionSettings:
    """The entry rule's RSI and shorts (the strategy file's Parameters take the RSI levels)."""

    #: TA-Lib RSI period, in candles.
    rsi_period: int = 14
    #: Sets the strategy's buy_rsi: a long needs RSI below this (and bullish absorption at a bid wall).
    rsi_buy_below: float = 30.0
    #: Sets short_rsi: a short needs RSI above this (and bearish absorption at an ask wall).
    rsi_sell_above: float = 70.0
    #: Allow short entries (futures); spot never shorts.
    allow_short: bool = True

    def __post_init__(self) -> None:
        _require(self.rsi_period >= 2, "helios.decision.rsi_period", "must be >= 2")
        _require(0 <= self.rsi_buy_below <= 100, "helios.decision.rsi_buy_below", "must be in [0, 100]")
        _require(0 <= self.rsi_sell_above <= 100, "helios.decision.rsi_sell_above", "must be in [0, 100]")


@dataclass(frozen=True, slots=True)
class RiskSettings:
    """Position risk: the 1-2 % rule with the stop behind the nearest protecting wall."""

    #: Fraction of equity risked per trade; clamped to [min_risk_fraction, max_risk_fraction].
    risk_fraction: float = 0.015
    min_risk_fraction: float = 0.01
    max_risk_fraction: float = 0.02
    #: The stop sits this many basis points of the entry price behind the wall (at least one tick).
    stop_buffer_bps: float = 2.0

    def __post_init__(self) -> None:
        _require(0 < self.min_risk_fraction <= self.max_risk_fraction < 1, "helios.risk",
                 "needs 0 < min_risk_fraction <= max_risk_fraction < 1")
        _require(self.risk_fraction > 0, "helios.risk.risk_fraction", "must be > 0")
        _require(self.stop_buffer_bps >= 0, "helios.risk.stop_buffer_bps", "must be >= 0")


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """The live feed thread (helios_orderflow/live/feed.py): which streams, book depth, reconnects."""

    #: Book levels per side the feed compares and publishes (ccxt's Binance default, and the depth of
    #: the REST snapshot ccxt starts from). A level outside the best this many is reported removed.
    book_depth: int = 1000
    #: Watch trades (the engine's CVD, VWAP, absorption need them).
    trades: bool = True
    #: Watch the venue's best bid/offer stream (Binance bookTicker) where the exchange has one.
    bbo: bool = True
    #: Use ccxt's multi-symbol watchers (watch_trades_for_symbols, watch_bids_asks) where the exchange
    #: has them; books are always one subscription per pair (see feed.py for why).
    multi_symbol: bool = True
    #: Follow Freqtrade's whitelist as it changes (dynamic pairlists): on every bot loop, pairs that joined
    #: get their books and trades, pairs that left are dropped; no other pair is disturbed.
    follow_whitelist: bool = True
    #: Also follow the pairs the strategy's ``informative_pairs()`` names (same exchange).
    follow_informative: bool = False
    #: Reconnect backoff: first delay, cap (seconds) and jitter (fraction of the delay taken off at random).
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.5
    #: stop() waits at most this long for the thread (seconds); it must stay under 5.
    stop_timeout_s: float = 4.0
    #: The websocket client pings this often (seconds) and drops a connection after two unanswered
    #: pings (ccxt's keepalive; Binance's own default is 180 s, too slow to notice a dead link).
    ws_keepalive_s: float = 20.0
    #: Pin glibc malloc's mmap threshold at this many KiB when the feed starts (0: leave malloc alone).
    #: Without it, glibc raises the threshold after the first large temporary and the heap fragments:
    #: RSS then creeps ~1 MB/min under a 20-pair feed (helios_orderflow/live/malloc.py says why). Process-wide.
    malloc_mmap_threshold_kib: int = 128
    #: Collect Python's young and middle garbage generations every this many seconds on the feed thread, and the
    #: whole heap every ``gc_full_every``-th time (0: leave it to the collector's thresholds). Freqtrade raises
    #: those thresholds so far that a full collection never comes and cyclic garbage (failed futures with
    #: their tracebacks) waits for hours: the bot's RSS then rises ~1.4 MB/min (helios_orderflow/live/gc_pacer.py).
    gc_every_s: float = 60.0
    gc_full_every: int = 10

    def __post_init__(self) -> None:
        problems = [
            (0 <= self.malloc_mmap_threshold_kib <= 32 * 1024,
             "helios.feed.malloc_mmap_threshold_kib must be in 0..32768 (0 leaves malloc alone)"),
            (1 <= self.book_depth <= 5000, "helios.feed.book_depth must be in 1..5000"),
            (0 < self.backoff_initial_s <= self.backoff_max_s,
             "helios.feed needs 0 < backoff_initial_s <= backoff_max_s"),
            (0 <= self.backoff_jitter <= 1, "helios.feed.backoff_jitter must be in 0..1"),
            (0 < self.stop_timeout_s <= 5, "helios.feed.stop_timeout_s must be in (0, 5]"),
            (self.ws_keepalive_s > 0, "helios.feed.ws_keepalive_s must be > 0"),
            (self.gc_every_s >= 0, "helios.feed.gc_every_s must be >= 0 (0 leaves the collector to its thresholds)"),
            (self.gc_full_every >= 1, "helios.feed.gc_full_every must be >= 1"),
        ]
        for ok, message in problems:
            if not ok:
                raise ConfigError(f"{message}, got {self}")


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """When a pair's live book counts as healthy (helios_orderflow/live/health.py)."""

    #: A pair with no book update for more than this many seconds is stale (unhealthy).
    stale_after_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.stale_after_s > 0:
            raise ConfigError(f"helios.health.stale_after_s must be > 0, got {self.stale_after_s}")


@dataclass(frozen=True, slots=True)
class StrategySettings:
    """How HeliosStrategy turns signals into orders (``helios.strategy``)."""

    #: confirm_trade_entry rejects an entry when the spread is wider than this many basis points of the mid.
    max_spread_bps: float = 10.0
    #: custom_entry_price may cross the book (pay the spread, fill at once) instead of joining the best
    #: bid (long) or ask (short).
    cross_book: bool = False
    #: Stop distance, as a fraction of the entry price, when no wall protects the trade.
    max_loss: float = 0.02
    #: The risk rule's stake is capped by "proposed": Freqtrade's stake for this trade (stake_amount, or the
    #: balance split over max_open_trades with "unlimited"), or "max": Freqtrade's max stake (the balance).
    stake_cap: str = "proposed"
    #: Leverage asked for in futures (capped by the exchange's maximum).
    leverage: float = 1.0
    #: Exit a long when buying exhausts (exhaustion_up), a short when selling exhausts (exhaustion_down).
    exit_on_exhaustion: bool = True
    #: Add Freqtrade's order-flow columns (trades, orderflow, imbalances, stacked_imbalances_bid/_ask, bid, ask,
    #: delta, min_delta, max_delta, total_trades) from the feed's trades live and the recordings' in backtests,
    #: with the config's orderflow section; no REST trade download (exchange.use_public_trades stays off).
    freqtrade_orderflow: bool = False

    def __post_init__(self) -> None:
        _require(self.max_spread_bps > 0, "helios.strategy.max_spread_bps", "must be > 0")
        _require(0 < self.max_loss < 1, "helios.strategy.max_loss", "must be in (0, 1), e.g. 0.02 for 2 %")
        _require(self.leverage >= 1, "helios.strategy.leverage", "must be >= 1")
        _require(self.stake_cap in ("proposed", "max"), "helios.strategy.stake_cap",
                 f"must be 'proposed' or 'max', got {self.stake_cap!r}")


@dataclass(frozen=True, slots=True)
class BacktestSettings:
    """Where backtesting, hyperopt, plot-dataframe and FreqUI charts find recorded L2 (``helios.backtest``)."""

    #: A recording, or a folder of recordings (each subfolder one recording); relative to Freqtrade's
    #: user_data dir when not absolute; or an object store's folder, e.g. "s3://bucket/prefix" (endpoint:
    #: recording.endpoint_url).
    recordings: str = "orderflow"
    #: ccxt id of the recorded exchange; "" = the config's exchange name (a pair recorded on only one
    #: exchange is used whatever this says).
    exchange: str = ""
    #: Use and fill the per-candle feature cache (``<recording>/.cache/features``).
    cache: bool = True
    #: Local worker processes that build the features, one (pair, UTC day) chunk each (docs/research.md);
    #: 0 = one per CPU core, 1 = in Freqtrade's process. Results are the same, bit for bit.
    workers: int = 0
    #: Address of a Dask scheduler (e.g. "tcp://scheduler:8786") to build the features on instead of local
    #: processes; "" = local. Needs the research extra and the recordings at the same path on every worker.
    dask: str = ""

    def __post_init__(self) -> None:
        _require(self.workers >= 0, "helios.backtest.workers", f"must be 0 (one per CPU core) or more, got "
                 f"{self.workers}")
        _require(not self.dask or "://" in self.dask, "helios.backtest.dask",
                 f"must be a scheduler address like 'tcp://scheduler:8786' or empty, got {self.dask!r}")


#: Environment variables holding the dashboard's basic-auth credentials (they win over the config).
DASHBOARD_ENV_USER = "HELIOS_DASHBOARD_USER"
DASHBOARD_ENV_PASSWORD = "HELIOS_DASHBOARD_PASSWORD"
DASHBOARD_SCALES = ("percentile", "log")
#: Colour ramps of the heatmap (``helios.dashboard.heatmap_colors``; dashboard/scaling.py).
DASHBOARD_COLORS = ("bookmap", "black-yellow-red")


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """The liquidity page (``helios.dashboard``). Memory per pair is fixed by ``history_columns``."""

    #: Start the page beside the bot (live and dry-run).
    enabled: bool = False
    #: Address and TCP port to bind (0 = any free port). Anything but a loopback address needs credentials.
    host: str = "127.0.0.1"
    port: int = 8050
    #: Basic-auth credentials; the environment variables HELIOS_DASHBOARD_USER/_PASSWORD take precedence.
    username: str = ""
    password: str = ""
    #: Heatmap colour scaling: "percentile" (each colour step holds the same share of cells: walls are the
    #: top steps) or "log" (colour proportional to log size).
    heatmap_scale: str = "percentile"
    #: Heatmap colours: "bookmap" (black, blue, cyan, green, yellow, red, white) or the design's
    #: "black-yellow-red"; the page has a control to switch.
    heatmap_colors: str = "bookmap"
    #: The page shows at most this much history per pair (seconds) ...
    window_s: float = 3600.0
    #: ... kept as at most this many time columns per pair (their width is window_s / history_columns,
    #: never below the engine's snapshot interval).
    history_columns: int = 3600
    #: A figure has at most this many time columns on screen (older columns are averaged together).
    max_display_columns: int = 480
    #: Trade bubbles drawn at most per figure: the largest (a volume filter; the browser draws each one).
    max_bubbles: int = 1500

    def __post_init__(self) -> None:
        w = "helios.dashboard."
        _require(0 <= self.port <= 65535, w + "port", "must be in 0..65535")
        _require(self.heatmap_scale in DASHBOARD_SCALES, w + "heatmap_scale",
                 f"must be one of {', '.join(DASHBOARD_SCALES)}")
        _require(self.heatmap_colors in DASHBOARD_COLORS, w + "heatmap_colors",
                 f"must be one of {', '.join(DASHBOARD_COLORS)}, got {self.heatmap_colors!r}")
        _require(self.window_s > 0, w + "window_s", "must be > 0")
        _require(10 <= self.history_columns <= 100_000, w + "history_columns", "must be in 10..100000")
        _require(10 <= self.max_display_columns <= 5000, w + "max_display_columns", "must be in 10..5000")
        _require(self.max_bubbles >= 0, w + "max_bubbles", "must be >= 0")
        _require(bool(self.username) == bool(self.password), w + "username",
                 "and password must be set together (or neither)")

    def credentials(self, environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """(user, password) from the environment, else from the config; None when neither has both."""
        import os

        env = os.environ if environ is None else environ
        user = env.get(DASHBOARD_ENV_USER, "") or self.username
        password = env.get(DASHBOARD_ENV_PASSWORD, "") or self.password
        if user and password:
            return user, password
        return None


@dataclass(frozen=True, slots=True)
class HeliosSettings:
    """The ``helios`` section of the Freqtrade config."""

    recording: RecordingSettings = field(default_factory=RecordingSettings)
    heatmap: HeatmapSettings = field(default_factory=HeatmapSettings)
    flow: FlowSettings = field(default_factory=FlowSettings)
    walls: WallSettings = field(default_factory=WallSettings)
    absorption: AbsorptionSettings = field(default_factory=AbsorptionSettings)
    exhaustion: ExhaustionSettings = field(default_factory=ExhaustionSettings)
    volume_profile: VolumeProfileSettings = field(default_factory=VolumeProfileSettings)
    footprint: FootprintSettings = field(default_factory=FootprintSettings)
    decision: DecisionSettings = field(default_factory=DecisionSettings)
    risk: RiskSettings = field(default_factory=RiskSettings)
    feed: FeedSettings = field(default_factory=FeedSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    strategy: StrategySettings = field(default_factory=StrategySettings)
    backtest: BacktestSettings = field(default_factory=BacktestSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> HeliosSettings:
        return from_mapping(cls, data, "helios")
