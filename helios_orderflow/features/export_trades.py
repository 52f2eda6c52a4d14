"""Recorded trades in Freqtrade's trades format, so ``freqtrade trades-to-ohlcv`` builds candles from a
Helios recording and Freqtrade's own ``use_public_trades`` order flow can read it.

Freqtrade keeps downloaded trades per pair in ``<datadir>/<PAIR>-trades.<ext>`` (futures:
``<datadir>/futures/<PAIR>-trades.<ext>``), ``<PAIR>`` being the pair with ``/ : . @ $ + space`` replaced by
``_`` (``BTC/USDT`` -> ``BTC_USDT``, ``BTC/USDT:USDT`` -> ``BTC_USDT_USDT``). The table has the columns
``timestamp`` (int64, epoch milliseconds), ``id`` (str), ``type`` (str or null), ``side`` ("buy"/"sell", the
taker's side), ``price``, ``amount`` (base units) and ``cost`` (price x amount, quote units), sorted by
timestamp. ``<ext>`` follows Freqtrade's ``dataformat_trades``: ``feather`` (its default), ``parquet``,
``json`` or ``jsongz`` (json holds a list of rows in that column order).

Caveats: Helios keeps exchange time in microseconds; Freqtrade's trades carry milliseconds, so the
timestamp is floored to the millisecond (a trade keeps the candle it belongs to). Duplicate trade ids
(a recording made of overlapping runs) are written once.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import Trade

#: Freqtrade's trades columns, in its order.
TRADES_COLUMNS = ("timestamp", "id", "type", "side", "price", "amount", "cost")
FORMATS = ("feather", "parquet", "json", "jsongz")


def pair_filename(pair: str) -> str:
    """Freqtrade's file-name form of a pair (``BTC/USDT:USDT`` -> ``BTC_USDT_USDT``)."""
    for ch in "/ .@$+:":
        pair = pair.replace(ch, "_")
    return pair


def trades_path(datadir: Path, pair: str, trading_mode: str = "spot", fmt: str = "feather") -> Path:
    """Where Freqtrade looks for ``pair``'s trades in ``datadir`` (its exchange data folder)."""
    ext = {"jsongz": "json.gz"}.get(fmt, fmt)
    base = datadir / "futures" if trading_mode == "futures" else datadir
    return base / f"{pair_filename(pair)}-trades.{ext}"


def trades_frame(trades: list[Trade]) -> pd.DataFrame:
    """Trades as Freqtrade's trades table (sorted by time, one row per trade id)."""
    ts = np.fromiter((t.ts_us // 1000 for t in trades), np.int64, len(trades))
    price = np.fromiter((t.price for t in trades), np.float64, len(trades))
    amount = np.fromiter((t.amount for t in trades), np.float64, len(trades))
    frame = pd.DataFrame({
        "timestamp": ts,
        "id": pd.Series([str(t.trade_id) for t in trades], dtype=object),
        "type": pd.Series([None] * len(trades), dtype=object),
        "side": pd.Series([t.side for t in trades], dtype=object),
        "price": price,
        "amount": amount,
        "cost": price * amount,
    }, columns=list(TRADES_COLUMNS))
    frame = frame.drop_duplicates("id", keep="first") if len(frame) else frame
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def write_trades(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if fmt == "feather":
        frame.to_feather(tmp, compression="lz4")
    elif fmt == "parquet":
        frame.to_parquet(tmp, index=False)
    elif fmt in ("json", "jsongz"):
        rows = json.dumps(frame.to_numpy().tolist(), default=_json_default)
        if fmt == "jsongz":
            with gzip.open(tmp, "wt") as fh:
                fh.write(rows)
        else:
            tmp.write_text(rows)
    else:
        raise HeliosError(f"trades format {fmt!r} is not one of {', '.join(FORMATS)}")
    os.replace(tmp, path)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {value!r} as JSON")


@dataclass(frozen=True, slots=True)
class ExportedPair:
    exchange: str
    pair: str
    path: Path
    trades: int
    first_ms: int
    last_ms: int


def export_trades(recording: str | os.PathLike[str], datadir: str | os.PathLike[str], *,
                  exchange: str | None = None, symbols: list[str] | None = None, trading_mode: str | None = None,
                  fmt: str = "feather", start_us: int | None = None, end_us: int | None = None) -> list[ExportedPair]:
    """Write every (selected) stream's trades of ``recording`` into ``datadir`` in Freqtrade's format.

    ``trading_mode``: "spot" or "futures"; default from the symbol (``BTC/USDT:USDT`` is futures). A pair
    whose file exists is replaced (the recording is the source of truth)."""
    from helios_orderflow.recording import list_streams, read_events

    if fmt not in FORMATS:
        raise HeliosError(f"--format {fmt!r} is not one of {', '.join(FORMATS)} (Freqtrade's dataformat_trades)")
    root = Path(recording)
    streams = [(e, s) for e, s in list_streams(root)
               if (exchange is None or e == exchange) and (not symbols or s in symbols)]
    if not streams:
        have = ", ".join(f"{e} {s}" for e, s in list_streams(root)) or "none"
        raise HeliosError(f"recording '{root}' has no stream for exchange={exchange or 'any'} "
                          f"symbols={','.join(symbols or []) or 'any'} (it has: {have})")
    pairs = [s for _, s in streams]
    dup = sorted({p for p in pairs if pairs.count(p) > 1})
    if dup:
        raise HeliosError(f"recording '{root}' has {', '.join(dup)} on several exchanges; choose one with --exchange")
    out: list[ExportedPair] = []
    for ex, sym in streams:
        trades = [ev for ev in read_events(root, exchange=ex, symbol=sym, start_us=start_us, end_us=end_us)
                  if type(ev) is Trade]
        if not trades:
            raise HeliosError(f"recording '{root}' has no trades for {ex} {sym}; Freqtrade's candles are built from "
                              "trades, so record with trades on")
        frame = trades_frame(trades)
        mode = trading_mode or ("futures" if ":" in sym else "spot")
        path = trades_path(Path(datadir), sym, mode, fmt)
        write_trades(frame, path, fmt)
        out.append(ExportedPair(ex, sym, path, len(frame), int(frame["timestamp"].iloc[0]),
                                int(frame["timestamp"].iloc[-1])))
    return out
