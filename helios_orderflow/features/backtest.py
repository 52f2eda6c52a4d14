"""Per-candle order-flow features for Freqtrade's dataframe, from recordings (backtesting) or from the live
feed's candle history, and as-of-time lookups for callbacks.

Columns: every feature of ``features.FEATURE_COLUMNS`` except ``date`` joins the dataframe with the
prefix ``of_`` (``of_cvd``, ``of_vwap``, ``of_ofi``, ``of_bid_wall_price``, ...; units in docs/signals.md).
The prefix keeps them apart from Freqtrade's OHLCV columns and from Freqtrade's own ``use_public_trades``
columns (``delta``, ``bid``, ``ask``, ``trades``).

Neutral features: a candle with no recorded order flow gets NaN for every price, size and imbalance, 0 for
every count, flow sum and signal flag, and ``of_book_ok = 0``; entry rules require ``of_book_ok == 1`` and a
signal flag, so a candle without data can never produce an entry. Each pair without any recording, and
each pair whose recordings do not cover the whole dataframe, is warned about once, in one line.

No look-ahead: a feature row with ``date = t`` (candle open time, Freqtrade's convention) uses only events
with ``ts_us < t + timeframe`` (see features.py). ``as_of(pair, when)`` returns the newest row closed at or
before ``when``: the state a live bot would have seen at that moment, never a later one.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.candles import timeframe_us
from helios_orderflow.features.compute import FEATURE_COLUMNS, INT_COLUMNS, candles_to_frame
from helios_orderflow.features.parallel import build_features
from helios_orderflow.recording.reader import RecordingIndex, index_recording
from helios_orderflow.recording.store import Location, location

log = logging.getLogger(__name__)

PREFIX = "of_"
#: Order-flow columns added to Freqtrade's dataframe, in FEATURE_COLUMNS order.
ORDERFLOW_COLUMNS: tuple[str, ...] = tuple(PREFIX + c for c in FEATURE_COLUMNS if c != "date")
#: Columns whose neutral value is 0 (counts, flow sums, flags); all others are NaN.
_ZERO_COLUMNS = frozenset(
    PREFIX + c for c in ("volume", "trades", "buy_volume", "sell_volume", "delta", "ofi", "ofi_multi",
                         "absorption_bull", "absorption_bear", "exhaustion_up", "exhaustion_down", "book_ok",
                         "had_book", "absorption_bull_frac", "absorption_bear_frac")
)
_INT_COLUMNS = frozenset(PREFIX + c for c in INT_COLUMNS)
_DATA_TABLES = ("book", "trades", "bbo")


def neutral_value(column: str) -> float:
    return 0.0 if column in _ZERO_COLUMNS else math.nan


def prefixed(frame: pd.DataFrame) -> pd.DataFrame:
    """A feature table (``date`` + FEATURE_COLUMNS) with the ``of_`` prefix on every feature column."""
    return frame.rename(columns={c: PREFIX + c for c in frame.columns if c != "date"})


def history_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """The live feed's candle history (``CandleFeatures`` rows, oldest first) as a prefixed feature frame."""
    return prefixed(candles_to_frame(list(rows)))


def merge_features(dataframe: pd.DataFrame, features: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``dataframe`` with the order-flow columns of ``features`` (prefixed, keyed by ``date``) joined on
    ``date``; rows without a feature row get neutral values. Returns (frame, rows without features).
    Existing ``of_*`` columns in ``dataframe`` are replaced."""
    base = dataframe.drop(columns=[c for c in ORDERFLOW_COLUMNS if c in dataframe.columns])
    feats = features.loc[:, ["date", *ORDERFLOW_COLUMNS]]
    if len(feats):
        feats = feats.drop_duplicates("date", keep="first")
        feats["date"] = _utc(feats["date"])
    dates = _utc(base["date"]) if len(base) else base["date"]
    indexed = feats.set_index("date")
    joined = indexed.reindex(pd.DatetimeIndex(dates)) if len(base) else indexed.iloc[0:0]
    missing = int(joined[PREFIX + "book_ok"].isna().sum()) if len(base) else 0
    out = base.copy()
    for col in ORDERFLOW_COLUMNS:
        values = joined[col].to_numpy(dtype=np.float64, na_value=np.nan) if len(base) else np.empty(0)
        fill = neutral_value(col)
        if not math.isnan(fill):
            values = np.where(np.isnan(values), fill, values)
        out[col] = values.astype(np.int64) if col in _INT_COLUMNS else values
    return out, missing


def _utc(dates: pd.Series) -> pd.Series:
    d = pd.to_datetime(dates)
    if getattr(d.dt, "tz", None) is None:
        return d.dt.tz_localize("UTC")
    return d.dt.tz_convert("UTC")


def dates_us(dates: pd.Series) -> np.ndarray:
    """Epoch microseconds of a datetime column (whatever its unit)."""
    if not len(dates):
        return np.empty(0, np.int64)
    return _utc(dates).dt.as_unit("us").astype("int64").to_numpy()


def find_recordings(root: Location) -> list[Location]:
    """``root`` when it is a recording, plus every direct subfolder that is one (sorted by name). ``root`` may
    be an object store's folder (``RemotePath``, recording/store.py)."""
    if not root.is_dir():
        return []

    def is_recording(p: Location) -> bool:
        return any((p / t).is_dir() for t in _DATA_TABLES)

    found = [root] if is_recording(root) else []
    children: list[Location] = list(root.iterdir())
    found.extend(p for p in sorted(children, key=lambda p: p.name)
                 if p.is_dir() and not p.name.startswith((".", "_")) and is_recording(p))
    return found


class RecordedFeatures:
    """Per-pair feature tables from the recordings under ``root``, computed once per pair (and cached on
    disk by ``compute_features``), for backtesting, hyperopt, plotting and FreqUI charts.

    ``exchange``: the ccxt id to prefer when a pair was recorded on several exchanges.
    ``warn``: where the one-line warnings go (default this module's logger).
    """

    def __init__(self, root: Location, exchange: str, timeframe: str, settings: HeliosSettings | None = None, *,
                 cache: bool = True) -> None:
        self.root = location(root)
        self.exchange = exchange
        self.timeframe = timeframe
        self.tf_us = timeframe_us(timeframe)
        self.settings = settings or HeliosSettings()
        self.cache = cache
        self._frames: dict[str, pd.DataFrame] = {}
        self._index: dict[str, np.ndarray] = {}
        #: How many times ``merge`` served each pair's table (the reuse line below).
        self._merged: dict[str, int] = {}
        self._warned: set[tuple[str, str]] = set()
        self._recordings: list[Location] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Hyperopt pickles the strategy: send settings only; frames are reloaded from the disk cache.
        state = {k: getattr(self, k) for k in ("root", "exchange", "timeframe", "tf_us", "settings", "cache")}
        state.update(_frames={}, _index={}, _merged={}, _warned=set(self._warned), _recordings=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def recordings(self) -> list[Location]:
        if self._recordings is None:
            self._recordings = find_recordings(self.root)
        return self._recordings

    def _streams(self, pair: str) -> list[tuple[RecordingIndex, str]]:
        """(recording, exchange) pairs that hold ``pair``: the preferred exchange where recorded there. Each
        recording's folders are walked once here; the index serves the lookup, the cache key and the read."""
        out: list[tuple[RecordingIndex, str]] = []
        for rec in self.recordings():
            try:
                index = index_recording(rec)
            except HeliosError:
                continue
            exchanges = sorted({e for e, s in index.files if s == pair})
            if not exchanges:
                continue
            out.append((index, self.exchange if self.exchange in exchanges else exchanges[0]))
        return out

    def warn_once(self, pair: str, kind: str, message: str) -> None:
        if (pair, kind) not in self._warned:
            self._warned.add((pair, kind))
            log.warning(message)

    def frame(self, pair: str) -> pd.DataFrame:
        """The prefixed feature table of ``pair`` over all recordings (empty when it has none)."""
        if pair not in self._frames:
            self.prefetch([pair])
        return self._frames[pair]

    def prefetch(self, pairs: Iterable[str]) -> None:
        """Build the tables of ``pairs`` at once: every (pair, day) chunk of every recording in one pool of
        ``helios.backtest.workers`` local processes, or on the Dask cluster ``helios.backtest.dask``
        (``features/parallel.py``; the same frames as one replay, bit for bit)."""
        todo = [p for p in dict.fromkeys(pairs) if p not in self._frames]
        requests: list[tuple[RecordingIndex, str, str]] = []
        for pair in todo:
            requests.extend((rec, exchange, pair) for rec, exchange in self._streams(pair))
        b = self.settings.backtest
        built = build_features(requests, self.timeframe, self.settings, workers=b.workers, dask=b.dask,
                               cache=self.cache, progress=sys.stderr.isatty()) if requests else []
        parts: dict[str, list[pd.DataFrame]] = {p: [] for p in todo}
        for (rec, _, pair), f in zip(requests, built, strict=True):
            # One line per table built: hyperopt's epochs must not build again (tests/test_hyperopt.py).
            log.info("helios: order-flow features of %s from %s: cache %s (%d candles)", pair, rec.base,
                     f.attrs.get("helios_cache", "off"), len(f))
            if len(f):
                parts[pair].append(f)
        for pair in todo:
            self._keep(pair, parts[pair])

    def _keep(self, pair: str, parts: list[pd.DataFrame]) -> None:
        if parts:
            frame = pd.concat(parts, ignore_index=True).sort_values("date", kind="stable")
            frame = prefixed(frame.drop_duplicates("date", keep="first").reset_index(drop=True))
        else:
            frame = prefixed(candles_to_frame([]))
            self.warn_once(
                pair, "none",
                f"helios: no order-flow recording for {pair} under {self.root} (looked in "
                f"{len(self.recordings())} recording(s)); its order-flow features are neutral and it gets no "
                f"order-flow entries. Record with 'helios record', import with 'helios import' or synthesize "
                f"with 'helios synth' into {self.root}",
            )
        self._frames[pair] = frame
        self._index[pair] = dates_us(frame["date"])

    def merge(self, dataframe: pd.DataFrame, pair: str) -> pd.DataFrame:
        """``dataframe`` (Freqtrade's, with ``date``) with the pair's order-flow columns; one warning per
        pair when some candles have no recorded order flow."""
        frame = self.frame(pair)
        uses = self._merged[pair] = self._merged.get(pair, 0) + 1
        if uses > 1:
            # hyperopt --analyze-per-epoch calls populate_indicators every epoch: say that the table was served
            # from memory, not built or read again (tests/test_hyperopt.py counts these lines).
            log.info("helios: order-flow features of %s: in memory, use %d (%d candles)", pair, uses, len(frame))
        out, missing = merge_features(dataframe, frame)
        if missing and len(frame) and len(dataframe):
            first, last = frame["date"].iloc[0], frame["date"].iloc[-1]
            self.warn_once(
                pair, "partial",
                f"helios: {missing} of {len(dataframe)} {self.timeframe} candles of {pair} have no recorded order "
                f"flow (recordings cover {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC); those candles get "
                f"neutral features and no order-flow entries",
            )
        return out

    def as_of(self, pair: str, when: datetime | int) -> dict[str, float] | None:
        """The newest feature row of ``pair`` whose candle closed at or before ``when`` (a datetime, or
        epoch µs), as a dict of prefixed columns; None when there is none. No look-ahead."""
        frame = self.frame(pair)
        idx = self._index[pair]
        if not len(idx):
            return None
        when_us = when if isinstance(when, int) else int(pd.Timestamp(when).timestamp() * 1_000_000)
        # Rows are candles by open time; candle i closed at open + tf <= when.
        i = int(np.searchsorted(idx, when_us - self.tf_us, side="right")) - 1
        if i < 0:
            return None
        row = frame.iloc[i]
        out = {c: float(row[c]) for c in ORDERFLOW_COLUMNS}
        out["open_time_us"] = float(idx[i])
        return out


def rows_as_of(rows: Iterable[Any], when_us: int, tf_us: int) -> Any | None:
    """The newest of ``rows`` (``CandleFeatures``, oldest first) closed at or before ``when_us``."""
    best = None
    for r in rows:
        if r.open_time_us + tf_us <= when_us:
            best = r
        else:
            break
    return best
