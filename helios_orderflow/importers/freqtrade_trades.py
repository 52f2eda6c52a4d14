"""Import Freqtrade's own downloaded trades (``freqtrade download-data --dl-trades``) as Helios trade events.

Freqtrade keeps one file per pair in its exchange data folder, ``user_data/data/<exchange>/`` (futures:
``.../<exchange>/futures/``): ``<PAIR>-trades.<ext>``, ``<PAIR>`` being the pair with ``/ : . @ $ + space`` made
``_`` (``BTC/USDT`` -> ``BTC_USDT``, ``BTC/USDT:USDT`` -> ``BTC_USDT_USDT``), ``<ext>`` by its
``dataformat_trades``: ``feather`` (default), ``parquet``, ``json`` or ``json.gz`` (``jsongz``). The table has
Freqtrade's trades columns, in order: ``timestamp`` (int64, epoch **milliseconds**), ``id`` (str), ``type``
(str or null), ``side`` ("buy"/"sell": the taker's side, ccxt's convention), ``price`` (quote units),
``amount`` (base units; contracts for inverse futures) and ``cost`` (quote units). JSON files hold a list of
rows in that order (Freqtrade's older format, a list of ccxt trade dicts, is read too).

``iter_events(paths, *, exchange=None, symbol=None, stats=None, progress=None)``: ``paths`` are such files, or
folders (every ``*-trades.*`` file in the folder and in its ``futures/`` subfolder). The exchange is the ccxt
id named by the data folder (``.../data/binance/BTC_USDT-trades.feather`` -> ``binance``; pass ``exchange``
where the folder is named otherwise); the symbol is rebuilt from the file name as Freqtrade does (first ``_``
-> ``/``, second -> ``:``), or ``symbol`` for a single file. Each file's rows are sorted by timestamp (stably)
and a repeated ``(timestamp, id)`` row is read once, as Freqtrade's own loader does; several files are merged
by time.

Caveats, what such a recording cannot tell:

- Times are milliseconds: ``ts_us`` is ``timestamp x 1000``; a trade keeps its candle, its 1 s bucket and its
  session (their edges are whole milliseconds), but the sub-millisecond order of a recording is lost.
- There is no receive time: ``local_ts_us`` is the exchange time.
- There is no order book: book-based features are NaN, ``had_book`` and ``book_ok`` are 0, and signals that
  need the book (walls, absorption; the entry rule, which requires ``book_ok``) never fire. Trade-only
  features (OHLCV, delta, CVD, VWAP, exhaustion, footprint, volume profile) are computed as from any recording.
- A row without a taker side (some venues' ccxt trades) cannot count in delta or CVD: it is skipped and
  counted (``ImportStats``).
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helios_orderflow.core.errors import InputError
from helios_orderflow.core.events import Event, Trade

from . import ImportStats

#: Freqtrade's trades columns (``freqtrade.constants.DEFAULT_TRADES_COLUMNS``), in its order.
TRADES_COLUMNS = ("timestamp", "id", "type", "side", "price", "amount", "cost")
#: File endings of Freqtrade's trades formats (``dataformat_trades``).
EXTENSIONS = (".feather", ".parquet", ".json.gz", ".json")
_NAME = re.compile(r"^(?P<pair>[\w-]+)-trades(?P<ext>\.feather|\.parquet|\.json\.gz|\.json)$")


def pair_from_filename(name: str) -> str:
    """Freqtrade's pair of a file-name stem: ``BTC_USDT`` -> ``BTC/USDT``, ``BTC_USDT_USDT`` -> ``BTC/USDT:USDT``."""
    return name.replace("_", "/", 1).replace("_", ":", 1)


def trade_files(paths: Sequence[Path]) -> list[Path]:
    """The trades files named by ``paths`` (files, or folders: their own and their ``futures/`` files)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [f for d in (p, p / "futures") if d.is_dir() for f in sorted(d.iterdir())
                     if _NAME.match(f.name)]
            if not found:
                raise InputError(str(p), None, "holds no Freqtrade trades file (<PAIR>-trades.feather/.parquet/"
                                 ".json/.json.gz)", "download them with 'freqtrade download-data --dl-trades'")
            out.extend(found)
        elif not p.exists():
            raise InputError(str(p), None, "no such file", "check the path")
        elif not _NAME.match(p.name):
            raise InputError(str(p), None, "is not named like a Freqtrade trades file (<PAIR>-trades.<ext>, "
                             f"ext one of {', '.join(EXTENSIONS)})", "give the files 'download-data' wrote")
        else:
            out.append(p)
    return out


def exchange_of(path: Path) -> str:
    """The ccxt id named by the data folder holding ``path`` (``.../binance/futures/X`` -> ``binance``)."""
    folder = path.parent.parent if path.parent.name == "futures" else path.parent
    return folder.name


def read_trades(path: Path) -> pd.DataFrame:
    """One Freqtrade trades file as a frame with ``TRADES_COLUMNS``, sorted by timestamp (stably), with each
    ``(timestamp, id)`` once."""
    m = _NAME.match(path.name)
    ext = m.group("ext") if m else path.suffix
    try:
        if ext == ".feather":
            frame = pd.read_feather(path)
        elif ext == ".parquet":
            frame = pd.read_parquet(path)
        else:
            import gzip

            opener: Any = gzip.open if ext == ".json.gz" else open
            with opener(path, "rt") as fh:
                rows = json.load(fh)
            if rows and isinstance(rows[0], dict):  # Freqtrade's old format: ccxt trade dicts
                rows = [[r.get(c) for c in TRADES_COLUMNS] for r in rows]
            frame = pd.DataFrame(rows, columns=list(TRADES_COLUMNS))
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(str(path), None, f"cannot be read as Freqtrade trades ({exc})",
                         "re-download it with 'freqtrade download-data --dl-trades'") from None
    missing = [c for c in TRADES_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(str(path), None, f"lacks Freqtrade's trades columns {', '.join(missing)} "
                         f"(it has {', '.join(map(str, frame.columns))})", "give a file 'download-data' wrote")
    frame = frame.loc[:, list(TRADES_COLUMNS)]
    frame = frame.astype({"timestamp": "int64", "price": "float64", "amount": "float64"})
    frame["id"] = frame["id"].astype(str)
    frame = frame.drop_duplicates(subset=["timestamp", "id"])
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _file_events(path: Path, exchange: str, symbol: str, stats: ImportStats) -> Iterator[Trade]:
    frame = read_trades(path)
    ts = frame["timestamp"].to_numpy(np.int64) * 1000
    price = frame["price"].to_numpy(np.float64)
    amount = frame["amount"].to_numpy(np.float64)
    sides = frame["side"].tolist()
    ids = frame["id"].tolist()
    for i, (t, p, q, side, tid) in enumerate(zip(ts.tolist(), price.tolist(), amount.tolist(), sides, ids,
                                                   strict=True)):
        stats.lines += 1
        if side not in ("buy", "sell"):
            stats.skip("trade without a taker side (buy/sell)", f"{path} row {i}")
            continue
        if not (math.isfinite(p) and p > 0 and math.isfinite(q) and q >= 0):
            stats.skip("trade with a price <= 0 or a negative or non-finite amount", f"{path} row {i}")
            continue
        stats.events += 1
        yield Trade(exchange, symbol, t, t, p, q, side, tid)


def iter_events(paths: Sequence[Path], *, exchange: str | None = None, symbol: str | None = None,
                stats: ImportStats | None = None, progress: bool | None = None, **_: Any) -> Iterator[Event]:
    """Trade events of Freqtrade's trades files (see the module docstring), merged by time."""
    files = trade_files(paths)
    if symbol is not None and len(files) > 1:
        raise InputError(", ".join(map(str, files)), None, f"--symbol {symbol} names one pair but "
                         f"{len(files)} trades files were given", "import one file per --symbol, or leave it out")
    st = stats if stats is not None else ImportStats()
    streams = []
    for f in files:
        ex = exchange or exchange_of(f)
        if not ex or not re.fullmatch(r"[a-z0-9]+", ex):
            raise InputError(str(f), None, f"its folder {ex!r} does not name a ccxt exchange id",
                             "pass --exchange (e.g. binance)")
        sym = symbol or pair_from_filename(_NAME.match(f.name).group("pair"))  # type: ignore[union-attr]
        streams.append(_file_events(f, ex, sym, st))
    if len(streams) == 1:
        yield from streams[0]
    else:
        yield from heapq.merge(*streams, key=lambda ev: ev.ts_us)
