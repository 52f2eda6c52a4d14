"""Import tardis.dev CSV datasets (https://docs.tardis.dev/downloadable-csv-files) as Helios events.

Accepted data types, recognized by the header row (plain or gzip; a directory means every ``*.csv`` and
``*.csv.gz`` in it):

- ``incremental_book_L2``: ``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount``.
  Consecutive rows with equal ``(symbol, local_timestamp, is_snapshot)`` form one message. A run of
  ``is_snapshot=true`` rows that follows ``false`` rows (or starts the file) begins a new snapshot: its
  first message is a ``BookSnapshot``; should the run go on at a later ``local_timestamp`` or after
  another symbol's rows, the rest is emitted as ``BookDelta``s adding those levels (the same book).
  Other messages are ``BookDelta``s. ``amount`` is the absolute size at the price (0 removes).
  Tardis rows have no update ids: every id is -1.
- ``trades``: ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``; ``side`` is the
  taker's (``buy``/``sell``); rows with side ``unknown`` are counted as skips.
- ``book_snapshot_N`` (``asks[i].price, asks[i].amount, bids[i].price, ...``): each row a ``BookSnapshot``
  of the top N (empty levels left out).
- ``quotes``: ``ask_amount,ask_price,bid_price,bid_amount`` -> ``BestBidOffer`` (no update id).

Units: ``timestamp`` (exchange time; empty for some venues, then the local time is used) and
``local_timestamp`` (tardis' receive time) are already integer microseconds. Each file must be ordered
by ``local_timestamp``; several files are merged by it (ties: in the order given).

Exchanges become ccxt ids (``binance-futures -> binanceusdm``, ``binance-delivery -> binancecoinm``,
``huobi-dm-swap -> htx`` (ccxt's current id for Huobi), ``okex-swap -> okx``, ``bitmex -> bitmex`` ...);
symbols become unified where the venue's naming says enough (``BTCUSDT`` on binance-futures ->
``BTC/USDT:USDT``, ``BTC-PERPETUAL`` on deribit -> ``BTC/USD:BTC``, ``XBTUSD`` on bitmex ->
``BTC/USD:BTC``). Otherwise pass ``symbol=`` (the import is then of exactly one source symbol; a second
one is an ``InputError``), and ``exchange=`` for an exchange not in the table.

Bad input (a malformed row, a time older than the previous row's) raises ``InputError`` naming file and
line; with ``strict=False`` it is counted in ``ImportStats`` and skipped.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import ConfigError, HeliosError, InputError
from helios_orderflow.core.events import NO_ID, BestBidOffer, BookDelta, BookSnapshot, Event, Level, TakerSide, Trade
from helios_orderflow.core.symbols import KNOWN_QUOTES, binance_unified, split_pair
from helios_orderflow.importers.kraken import kraken_unified
from helios_orderflow.importers.okx import okx_unified
from helios_orderflow.importers.source import iter_lines

from . import ImportStats

#: tardis's ``side`` of a trade -> the taker's side (its third value, "unknown", is skipped and counted).
_TAKER_SIDES: dict[str, TakerSide] = {"buy": "buy", "sell": "sell"}

# tardis exchange name -> ccxt id.
TARDIS_EXCHANGES: dict[str, str] = {
    "binance": "binance",
    "binance-us": "binanceus",
    "binance-futures": "binanceusdm",
    "binance-delivery": "binancecoinm",
    "bitmex": "bitmex",
    "deribit": "deribit",
    "huobi": "htx",
    "huobi-dm": "htx",
    "huobi-dm-swap": "htx",
    "huobi-dm-linear-swap": "htx",
    "okex": "okx",
    "okex-futures": "okx",
    "okex-swap": "okx",
    "okex-spot": "okx",
    "kraken": "kraken",
    "cryptofacilities": "krakenfutures",
    "bitfinex": "bitfinex",
    "bitfinex-derivatives": "bitfinex",
    "coinbase": "coinbase",
    "bybit": "bybit",
    "bybit-spot": "bybit",
    "bitstamp": "bitstamp",
    "gate-io": "gate",
    "gate-io-futures": "gate",
    "kucoin": "kucoin",
    "kucoin-futures": "kucoinfutures",
    "bitget": "bitget",
    "bitget-futures": "bitget",
    "gemini": "gemini",
    "phemex": "phemex",
    "poloniex": "poloniex",
    "mexc": "mexc",
    "crypto-com": "cryptocom",
    "woo-x": "woo",
    "bitflyer": "bitflyer",
    "delta": "delta",
    "hyperliquid": "hyperliquid",
}

HEADER_START = ["exchange", "symbol", "timestamp", "local_timestamp"]
INCREMENTAL = [*HEADER_START, "is_snapshot", "side", "price", "amount"]
TRADES = [*HEADER_START, "id", "side", "price", "amount"]
QUOTES = [*HEADER_START, "ask_amount", "ask_price", "bid_price", "bid_amount"]
#: Level indexes from here on are refused as a damaged header (tardis serves snapshots of 5 to a few hundred).
MAX_SNAPSHOT_LEVELS = 100_000
_SNAPSHOT_COL = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")
_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}


# ---------------------------------------------------------------------------------------------------------
# Symbols


def _deribit(raw: str) -> str:
    # BTC-PERPETUAL, ETH-25SEP20, BTC_USDC-PERPETUAL; options (BTC-25SEP20-10000-C) are not mapped.
    parts = raw.split("-")
    base = parts[0]
    settle = base
    quote = "USD"
    if "_" in base:
        base, quote = base.split("_", 1)
        settle = quote
    if len(parts) == 2 and parts[1] == "PERPETUAL":
        return f"{base}/{quote}:{settle}"
    if len(parts) == 2:
        m = re.fullmatch(r"(\d{1,2})([A-Z]{3})(\d{2})", parts[1])
        if m and m.group(2) in _MONTHS:
            return f"{base}/{quote}:{settle}-{m.group(3)}{_MONTHS[m.group(2)]:02d}{int(m.group(1)):02d}"
    raise HeliosError(f"deribit instrument {raw!r} is not a perpetual or future")


def _bitmex(raw: str) -> str:
    raw = raw.replace("XBT", "BTC")
    base, quote = split_pair(raw, ["USDT", "USD"])
    return f"{base}/{quote}:{quote if quote == 'USDT' else base}"


def _huobi_swap(raw: str) -> str:
    base, _, quote = raw.partition("-")
    if not quote:
        raise HeliosError(f"huobi contract {raw!r} is not BASE-QUOTE")
    return f"{base}/{quote}:{quote if quote in ('USDT', 'USDC') else base}"


def _bybit(raw: str) -> str:
    base, quote = split_pair(raw, ["USDT", "USDC", "USD"])
    return f"{base}/{quote}:{quote if quote != 'USD' else base}"


def _spot(raw: str) -> str:
    for sep in ("-", "/", "_"):
        if sep in raw:
            base, _, quote = raw.upper().partition(sep)
            return f"{base}/{quote}"
    base, quote = split_pair(raw, KNOWN_QUOTES)
    return f"{base}/{quote}"


SYMBOL_RULES: dict[str, Callable[[str], str]] = {
    "binance": lambda s: binance_unified(s, "binance"),
    "binance-us": lambda s: binance_unified(s, "binanceus"),
    "binance-futures": lambda s: binance_unified(s, "binanceusdm"),
    "binance-delivery": lambda s: binance_unified(s, "binancecoinm"),
    "deribit": _deribit,
    "bitmex": _bitmex,
    "huobi-dm-swap": _huobi_swap,
    "huobi-dm-linear-swap": _huobi_swap,
    "huobi": _spot,
    "okex": okx_unified,
    "okex-spot": okx_unified,
    "okex-swap": okx_unified,
    "okex-futures": okx_unified,
    "kraken": kraken_unified,
    "coinbase": _spot,
    "bitstamp": _spot,
    "bitfinex": _spot,
    "bybit": _bybit,
    "bybit-spot": _spot,
    "kucoin": _spot,
    "gate-io": _spot,
}


def unified_symbol(tardis_exchange: str, raw: str) -> str:
    """ccxt's unified symbol for a tardis symbol; raises HeliosError where it cannot be inferred."""
    rule = SYMBOL_RULES.get(tardis_exchange)
    if rule is None:
        raise HeliosError(f"no symbol rule for tardis exchange {tardis_exchange!r}")
    return rule(raw)


def ccxt_exchange(tardis_exchange: str) -> str:
    try:
        return TARDIS_EXCHANGES[tardis_exchange]
    except KeyError:
        raise HeliosError(
            f"tardis exchange {tardis_exchange!r} has no known ccxt id; pass exchange=<ccxt id>"
        ) from None


# ---------------------------------------------------------------------------------------------------------
# Reading


class _RowError(Exception):
    """Internal: a malformed row (message says what)."""


class _Reader:
    """One file: header detection, row splitting, ordering and symbol checks."""

    def __init__(
        self, path: Path, stats: ImportStats, strict: bool, progress: bool | None,
        symbol: str | None, exchange: str | None,
    ) -> None:
        self.path = path
        self.stats = stats
        self.strict = strict
        self.progress = progress
        self.symbol = symbol
        self.exchange = exchange
        self.first_raw_symbol: str | None = None
        self.ids: dict[tuple[str, str], tuple[str, str]] = {}
        self.width = 0

    def bad(self, lineno: int, problem: str) -> None:
        if self.strict:
            raise InputError(str(self.path), lineno, problem, "fix or remove the row, or pass strict=False")
        self.stats.skip(f"tardis row: {problem.split(':')[0]}", f"{self.path}:{lineno}")

    def resolve(self, lineno: int, tardis_exchange: str, raw: str) -> tuple[str, str]:
        """``(ccxt exchange, unified symbol)`` of a row."""
        key = (tardis_exchange, raw)
        out = self.ids.get(key)
        if out is not None:
            return out
        if self.symbol is not None:
            if self.first_raw_symbol is not None and raw != self.first_raw_symbol:
                raise InputError(
                    str(self.path), lineno,
                    f"second symbol {raw!r} in a file imported as the single symbol {self.symbol} "
                    f"(first was {self.first_raw_symbol!r})",
                    "import a file that holds one symbol, or drop symbol= to map each symbol",
                )
            self.first_raw_symbol = raw
        try:
            exchange = self.exchange or ccxt_exchange(tardis_exchange)
            symbol = self.symbol or unified_symbol(tardis_exchange, raw)
        except HeliosError as exc:
            raise InputError(
                str(self.path), lineno, f"cannot map {tardis_exchange} {raw!r}: {exc}",
                "pass symbol=<ccxt unified symbol, e.g. BTC/USD:BTC> (and exchange=<ccxt id> if needed)",
            ) from None
        self.ids[key] = (exchange, symbol)
        return exchange, symbol

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """``(line, fields)`` after the header; times checked for order."""
        prev_local = -1
        for lineno, text in iter_lines(self.path, progress=self.progress):
            if lineno == 1:
                continue
            if not text:
                continue
            self.stats.lines += 1
            fields = text.split(",")
            if len(fields) != self.width:
                self.bad(lineno, f"row has {len(fields)} fields, the header {self.width}")
                continue
            try:
                local = int(fields[3])
                if not fields[2]:
                    fields[2] = fields[3]
                int(fields[2])
            except ValueError:
                self.bad(lineno, f"timestamp {fields[2]!r} or local_timestamp {fields[3]!r} is not integer µs")
                continue
            if local < prev_local:
                self.bad(lineno, f"local_timestamp {local} is earlier than the previous row's {prev_local}")
                continue
            prev_local = local
            yield lineno, fields

    def header(self) -> list[str]:
        for _lineno, text in iter_lines(self.path, progress=False):
            cols = text.strip().split(",")
            self.width = len(cols)
            return cols
        raise InputError(str(self.path), None, "empty file", "expected a tardis CSV with a header row")


def _incremental(reader: _Reader) -> Iterator[Event]:
    was_snapshot: dict[str, bool] = {}
    group: list[list[str]] = []
    group_key: tuple[str, str, str] | None = None
    group_line = 0

    def flush() -> Event:
        first = group[0]
        exchange, symbol = reader.resolve(group_line, first[0], first[1])
        is_snap = first[4] == "true"
        bids: list[Level] = []
        asks: list[Level] = []
        ts_us = max(int(r[2]) for r in group)
        for r in group:
            (bids if r[5] == "bid" else asks).append((float(r[6]), float(r[7])))
        starts_snapshot = is_snap and not was_snapshot.get(first[1], False)
        was_snapshot[first[1]] = is_snap
        local = int(first[3])
        if starts_snapshot:
            bid_book = {p: q for p, q in bids}
            ask_book = {p: q for p, q in asks}
            return BookSnapshot(
                exchange, symbol, ts_us, local, NO_ID,
                tuple((p, q) for p, q in sorted(bid_book.items(), reverse=True) if q),
                tuple((p, q) for p, q in sorted(ask_book.items()) if q),
            )
        return BookDelta(exchange, symbol, ts_us, local, NO_ID, NO_ID, NO_ID, tuple(bids), tuple(asks))

    for lineno, f in reader.rows():
        if f[4] not in ("true", "false") or f[5] not in ("bid", "ask"):
            reader.bad(lineno, f"is_snapshot {f[4]!r} must be true/false and side {f[5]!r} bid/ask")
            continue
        try:
            float(f[6])
            float(f[7])
        except ValueError:
            reader.bad(lineno, f"price {f[6]!r} or amount {f[7]!r} is not a number")
            continue
        key = (f[1], f[3], f[4])
        if key != group_key:
            if group:
                yield flush()
            group = []
            group_key = key
            group_line = lineno
        group.append(f)
    if group:
        yield flush()


def _trades(reader: _Reader) -> Iterator[Event]:
    for lineno, f in reader.rows():
        side = _TAKER_SIDES.get(f[5])
        if side is None:
            if f[5] == "unknown":
                reader.stats.skip("tardis trade with unknown taker side", f"{reader.path}:{lineno}")
            else:
                reader.bad(lineno, f"trade side {f[5]!r} is not buy, sell or unknown")
            continue
        try:
            price, amount = float(f[6]), float(f[7])
        except ValueError:
            reader.bad(lineno, f"price {f[6]!r} or amount {f[7]!r} is not a number")
            continue
        exchange, symbol = reader.resolve(lineno, f[0], f[1])
        yield Trade(exchange, symbol, int(f[2]), int(f[3]), price, amount, side, f[4])


def _quotes(reader: _Reader) -> Iterator[Event]:
    for lineno, f in reader.rows():
        if not all(f[4:8]):
            reader.stats.skip("tardis quote with an empty side", f"{reader.path}:{lineno}")
            continue
        try:
            ask_amount, ask_price, bid_price, bid_amount = (float(x) for x in f[4:8])
        except ValueError:
            reader.bad(lineno, "quote price or amount is not a number")
            continue
        exchange, symbol = reader.resolve(lineno, f[0], f[1])
        yield BestBidOffer(
            exchange, symbol, int(f[2]), int(f[3]), NO_ID, bid_price, bid_amount, ask_price, ask_amount
        )


def _book_snapshots(reader: _Reader, cols: list[str]) -> Iterator[Event]:
    # (side, level) -> (price column, amount column)
    where: dict[tuple[str, int], list[int]] = {}
    for i, c in enumerate(cols[4:], start=4):
        m = _SNAPSHOT_COL.match(c)
        if m is None:
            raise InputError(str(reader.path), 1, f"unexpected book_snapshot column {c!r}")
        level = int(m.group(2))
        if level >= MAX_SNAPSHOT_LEVELS:
            raise InputError(str(reader.path), 1, f"book_snapshot column {c!r} names level {level}; tardis snapshots "
                             f"hold at most a few hundred levels (book_snapshot_5, _25, ...): the header is damaged")
        slot = where.setdefault((m.group(1), level), [-1, -1])
        slot[0 if m.group(3) == "price" else 1] = i
    # The (price, amount) columns of each side, best level first: only the levels the header names are
    # visited, so the work per row follows the file's width, whatever its level numbers are.
    columns = {side: [(pi, ai) for (sd, _), (pi, ai) in sorted(where.items()) if sd == side and pi >= 0 and ai >= 0]
               for side in ("bids", "asks")}
    for lineno, f in reader.rows():
        sides: dict[str, list[Level]] = {"bids": [], "asks": []}
        try:
            for side in ("bids", "asks"):
                for pi, ai in columns[side]:
                    if f[pi] and f[ai]:
                        sides[side].append((float(f[pi]), float(f[ai])))
        except ValueError:
            reader.bad(lineno, "book_snapshot price or amount is not a number")
            continue
        exchange, symbol = reader.resolve(lineno, f[0], f[1])
        yield BookSnapshot(
            exchange, symbol, int(f[2]), int(f[3]), NO_ID, tuple(sides["bids"]), tuple(sides["asks"])
        )


def _file_events(reader: _Reader) -> Iterator[Event]:
    cols = reader.header()
    if cols[:4] != HEADER_START:
        raise InputError(
            str(reader.path), 1, f"header {','.join(cols[:6])}... is not a tardis.dev CSV header",
            "expected exchange,symbol,timestamp,local_timestamp,...",
        )
    if cols == INCREMENTAL:
        gen = _incremental(reader)
    elif cols == TRADES:
        gen = _trades(reader)
    elif cols == QUOTES:
        gen = _quotes(reader)
    elif all(_SNAPSHOT_COL.match(c) for c in cols[4:]) and len(cols) > 4:
        gen = _book_snapshots(reader, cols)
    else:
        raise InputError(
            str(reader.path), 1, f"unsupported tardis data type (columns {','.join(cols[4:])})",
            "supported: incremental_book_L2, trades, book_snapshot_N, quotes",
        )
    for ev in gen:
        reader.stats.events += 1
        yield ev


def _expand(paths: Sequence[Path | str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.name.endswith((".csv", ".csv.gz")))
            if not found:
                raise InputError(str(p), None, "directory holds no .csv or .csv.gz files")
            out.extend(found)
        else:
            out.append(p)
    return out


def iter_events(
    paths: Sequence[Path | str],
    *,
    progress: bool | None = None,
    stats: ImportStats | None = None,
    strict: bool = True,
    symbol: str | None = None,
    exchange: str | None = None,
    **options: Any,
) -> Iterator[Event]:
    """Events of the tardis CSV files in ``paths`` merged by ``local_timestamp`` (see module docstring).

    ``symbol``: the unified symbol to give every row (one source symbol per file then). ``exchange``:
    the ccxt id to use instead of the table. ``strict=False`` counts bad rows as skips instead of raising.
    """
    unknown = {k: v for k, v in options.items() if v is not None}
    if unknown:
        raise ConfigError(f"tardis import does not take option(s) {', '.join(sorted(unknown))}")
    stats = stats if stats is not None else ImportStats()
    readers = [_Reader(p, stats, strict, progress, symbol, exchange) for p in _expand(paths)]
    for r in readers:
        if not r.path.is_file():
            raise InputError(str(r.path), None, "no such file", "check the path")
    streams = [_file_events(r) for r in readers]
    if len(streams) == 1:
        yield from streams[0]
    else:
        yield from heapq.merge(*streams, key=lambda e: e.local_ts_us)
