"""Import cryptofeed's raw captures (``cryptofeed`` ``raw_data_collection``) as Helios events.

A capture is the set of files one cryptofeed feed wrote, all named ``<NAME>.<kind>...``:

- ``NAME.ws.<conn>.<n>``: one websocket connection. Line 1 is ``<url> <-> <connect time>``; then
  ``<recv time>: <payload>`` for each message received and ``<url> <- <time>: <payload>`` for each one
  the client sent (ignored).
- ``NAME.http.<conn>.<n>``: REST responses, ``<url> -> <recv time>: <json>`` (Binance depth, Gate.io
  ``order_book?with_id=true`` and KuCoin ``orderbook/level2`` snapshots).
- ``NAME.0`` or ``NAME.0.gz``: metadata, ``<url> -> <time>: <json>`` (Binance ``exchangeInfo``, OKX
  ``instruments``, Gate.io ``currency_pairs`` and futures ``contracts``) and ``configuration: <json>``. Used
  for exact symbols (base/quote) and Gate.io's futures contract sizes; optional.

Times are Unix seconds with a decimal fraction; ``local_ts_us`` is that value in integer microseconds
(digits beyond the sixth are dropped). Any file may be gzipped.

CLI convention (``helios import --format cryptofeed SRC...``): each SRC is

- a directory: every capture in it (``data/cryptofeed`` imports all venues),
- a capture prefix that is not itself a file: ``data/cryptofeed/BINANCE`` means ``BINANCE.0.gz``,
  ``BINANCE.http.*`` and ``BINANCE.ws.*`` (not ``BINANCE_US.*``),
- or single files (``BINANCE.ws.1.0 BINANCE.http.0.0``); files of the same NAME form one capture.

All websocket and REST lines of all captures are merged by receive time, so events come out in
receive order (ties: in the order the files were named, then line order). Each file must be in receive
order itself: a line whose time is earlier than the previous line's is an ``InputError`` naming the file
and line (or, with ``strict=False``, a counted skip).

The venue is read from the URLs: ``stream.binance.com``/``api.binance.com`` -> ``binance``,
``binance.us`` -> ``binanceus``, ``fstream``/``fapi`` -> ``binanceusdm``, ``dstream``/``dapi`` ->
``binancecoinm``, ``ws.kraken.com`` -> ``kraken``, ``okx.com``/``okex.com`` -> ``okx``, ``gateio.ws``/
``gate.io``/``gate.com`` -> ``gate`` (spot and perpetual futures), ``kucoin.com`` -> ``kucoin`` (spot; KuCoin
futures hosts are not read), ``bitget.com`` -> ``bitget`` (v1). Messages are turned into events by
``binance_messages``, ``kraken``, ``okx``, ``gate``, ``kucoin`` and ``bitget`` (Kraken, OKX and Bitget
checksums verified on every update there; Binance, Gate.io and KuCoin diffs carry update ids that
``book/sync.py`` checks downstream; see those modules). A capture of another venue is skipped with a counted
warning.

Caveats: a Binance, Gate.io or KuCoin book needs the REST snapshot in ``NAME.http.*``; without it the diffs
cannot be aligned (a skip is counted per symbol at the end, and the book stays unsynced downstream).

Options: ``strict`` (default True): malformed lines and out-of-order times raise ``InputError``;
False counts them as skips and goes on. ``symbol``/``exchange``: keep only events of this unified
symbol / ccxt exchange id (captures name their venue and symbols themselves).
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlparse

from helios_orderflow.core.errors import ConfigError, HeliosError, InputError
from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot, Event
from helios_orderflow.importers.binance_messages import (
    SymbolMap,
    parse_binance_message,
    parse_depth_snapshot,
    resolve_symbol,
    symbol_map_from_exchange_info,
)
from helios_orderflow.importers.bitget import BitgetParser
from helios_orderflow.importers.gate import GateParser
from helios_orderflow.importers.kraken import KrakenParser
from helios_orderflow.importers.kucoin import KucoinParser
from helios_orderflow.importers.okx import OkxParser, symbol_map_from_instruments
from helios_orderflow.importers.source import iter_lines

from . import ImportStats

SUPPORTED = ("binance", "binanceus", "binanceusdm", "binancecoinm", "kraken", "okx", "gate", "kucoin", "bitget")

_FILE_RE = re.compile(r"^(?P<name>[^.]+)\.(?P<kind>ws|http|0)(?:\.|$)")


def _on_domain(host: str, *domains: str) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def url_host(url: str) -> str:
    """The host of a capture URL; "" for one that does not parse (a damaged line: ``host:[]`` makes urllib raise
    ValueError, which must become a skipped line, not a crash)."""
    try:
        return urlparse(url).hostname or ""
    except ValueError:
        return ""


def venue_from_url(url: str) -> str | None:
    """The ccxt exchange id of a capture URL, or None for venues this importer does not read."""
    host = url_host(url)
    if host.endswith("binance.us"):
        return "binanceus"
    if "binance" in host:
        if host.startswith(("fstream", "fapi")):
            return "binanceusdm"
        if host.startswith(("dstream", "dapi")):
            return "binancecoinm"
        return "binance"
    if host.endswith("kraken.com"):
        return "kraken"
    if host.endswith(("okx.com", "okex.com")):
        return "okx"
    if _on_domain(host, "gateio.ws", "gate.io", "gate.com"):
        return "gate"
    if _on_domain(host, "kucoin.com"):
        # KuCoin futures (api-futures, ws-api-futures) speaks another dialect (ccxt's kucoinfutures).
        return None if "futures" in host else "kucoin"
    if _on_domain(host, "bitget.com"):
        return "bitget"
    return None


def seconds_to_us(text: str) -> int:
    """``"1633998512.0633569" -> 1633998512063356`` (integer microseconds, no float rounding)."""
    whole, _, frac = text.strip().partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"{text!r} is not a time in seconds")
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


# ---------------------------------------------------------------------------------------------------------
# Finding the files of a capture


@dataclass
class Capture:
    """The files of one cryptofeed capture (one venue's feed)."""

    name: str
    meta: list[Path] = field(default_factory=list)
    http: list[Path] = field(default_factory=list)
    ws: list[Path] = field(default_factory=list)


def _classify(path: Path) -> tuple[str, str] | None:
    m = _FILE_RE.match(path.name)
    if m is None:
        return None
    return m.group("name"), m.group("kind")


def find_captures(paths: Sequence[Path | str]) -> list[Capture]:
    """Group the given files, prefixes and directories into captures (see the module docstring)."""
    captures: dict[tuple[Path, str], Capture] = {}

    def add(path: Path, must: bool) -> bool:
        kind = _classify(path)
        if kind is None:
            if must:
                raise InputError(
                    str(path), None, "not a cryptofeed capture file",
                    "expected NAME.ws.*, NAME.http.* or NAME.0[.gz] (or pass the directory or the NAME prefix)",
                )
            return False
        name, k = kind
        cap = captures.setdefault((path.parent, name), Capture(name))
        target = {"ws": cap.ws, "http": cap.http, "0": cap.meta}[k]
        if path not in target:
            target.append(path)
        return True

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [add(p, False) for p in sorted(path.iterdir()) if p.is_file()]
            if not any(found):
                raise InputError(str(path), None, "directory holds no cryptofeed capture files (NAME.ws.*)")
        elif path.is_file():
            add(path, True)
        else:
            matches = sorted(p for p in path.parent.glob(f"{path.name}.*") if p.is_file())
            found = [add(p, False) for p in matches if (kind := _classify(p)) is not None and kind[0] == path.name]
            if not any(found):
                raise InputError(
                    str(path), None, "no such file, directory or capture prefix",
                    f"expected e.g. {path.parent / 'BINANCE'} for BINANCE.ws.*, BINANCE.http.*, BINANCE.0.gz",
                )
    for cap in captures.values():
        if not cap.ws and not cap.http:
            raise InputError(
                str(cap.meta[0]), None, f"capture {cap.name} has only metadata",
                f"pass its websocket files too ({cap.name}.ws.*)",
            )
    return list(captures.values())


# ---------------------------------------------------------------------------------------------------------
# Reading lines


class _Line(NamedTuple):
    local_ts_us: int
    order: int  # file order, for deterministic ties
    lineno: int
    url: str
    is_rest: bool
    payload: str
    path: Path


class _LineError(Exception):
    """Internal: a line that cannot be parsed; the caller raises InputError or counts a skip."""


def _split_line(text: str, conn_url: str) -> tuple[str, str, str, str]:
    """``(direction, url, time, payload)``; direction is recv, sent, connect or rest."""
    if text[:1].isdigit():
        ts, sep, payload = text.partition(": ")
        if not sep:
            raise _LineError("expected '<receive time>: <payload>'")
        return "recv", conn_url, ts, payload
    url, _, rest = text.partition(" ")
    arrow, _, rest = rest.partition(" ")
    if arrow == "<->":
        return "connect", url, rest, ""
    if arrow in ("<-", "->"):
        ts, sep, payload = rest.partition(": ")
        if not sep:
            raise _LineError(f"expected '<url> {arrow} <time>: <payload>'")
        return ("sent" if arrow == "<-" else "rest"), url, ts, payload
    if url == "configuration:":
        return "config", "", "", rest
    raise _LineError("not a cryptofeed capture line ('<time>: <payload>' or '<url> <-> <time>')")


def _read_file(
    path: Path, order: int, progress: bool | None, stats: ImportStats, strict: bool
) -> Iterator[_Line]:
    conn_url = ""
    prev_ts = -1
    for lineno, text in iter_lines(path, progress=progress):
        if not text.strip():
            continue
        stats.lines += 1
        where = f"{path}:{lineno}"
        try:
            direction, url, ts_text, payload = _split_line(text, conn_url)
            ts_us = seconds_to_us(ts_text) if ts_text else prev_ts
        except (_LineError, ValueError) as exc:
            if strict:
                raise InputError(
                    str(path), lineno, f"malformed line: {exc}", "fix or remove the line, or pass strict=False"
                ) from None
            stats.skip("malformed capture line", where)
            continue
        if direction == "connect":
            conn_url = url
        if ts_us < prev_ts:
            if strict:
                raise InputError(
                    str(path), lineno,
                    f"receive time {ts_text} is earlier than the previous line's ({prev_ts / 1e6:.6f})",
                    "the file is not in receive order; sort it by time or pass strict=False to skip such lines",
                )
            stats.skip("line out of receive-time order", where)
            continue
        prev_ts = ts_us
        if direction in ("recv", "rest"):
            if direction == "recv" and not conn_url:
                if strict:
                    raise InputError(str(path), lineno, "message before the '<url> <-> <time>' connect line",
                                     "a websocket capture starts with its URL line")
                stats.skip("message before the connect line", where)
                continue
            yield _Line(ts_us, order, lineno, url, direction == "rest", payload, path)


def _read_metadata(path: Path, progress: bool | None) -> Iterator[tuple[str, Any]]:
    """``(url, decoded json)`` for each response in a metadata file; unreadable lines are ignored
    (metadata only improves symbols; the message streams never depend on it)."""
    for _lineno, text in iter_lines(path, progress=progress):
        url, _, rest = text.partition(" -> ")
        if not rest:
            continue
        _ts, _, payload = rest.partition(": ")
        try:
            yield url, json.loads(payload)
        except ValueError:
            continue


# ---------------------------------------------------------------------------------------------------------
# Venues


class _BinanceVenue:
    def __init__(self, exchange: str, stats: ImportStats, symbol_map: dict[str, str]) -> None:
        self.exchange = exchange
        self.stats = stats
        self.symbol_map: SymbolMap = symbol_map

    def on_message(self, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        return parse_binance_message(
            msg, exchange=self.exchange, local_ts_us=local_ts_us, symbol_map=self.symbol_map,
            stats=self.stats, where=where,
        )

    def on_rest(self, url: str, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        parsed = urlparse(url)
        if parsed.path.endswith("/depth"):
            if isinstance(msg, dict) and "code" in msg and "lastUpdateId" not in msg:
                self.stats.skip("binance REST error response", where)
                return []
            raw = (parse_qs(parsed.query).get("symbol") or [""])[0]
            if not raw and isinstance(msg, dict):
                raw = str(msg.get("symbol", ""))
            if not raw:
                raise HeliosError("depth snapshot URL names no symbol (expected ?symbol=...)")
            symbol = resolve_symbol(raw, self.exchange, self.symbol_map)
            return [parse_depth_snapshot(msg, exchange=self.exchange, symbol=symbol, local_ts_us=local_ts_us)]
        if parsed.path.endswith("/exchangeInfo") and isinstance(msg, dict):
            assert isinstance(self.symbol_map, dict)
            self.symbol_map.update(symbol_map_from_exchange_info(msg, self.exchange))
            return []
        self.stats.skip(f"{self.exchange} REST response {parsed.path} (no order-flow event)", where)
        return []


class _WsVenue:
    """Kraken/OKX/Bitget: websocket only."""

    def __init__(self, parser: KrakenParser | OkxParser | BitgetParser, stats: ImportStats) -> None:
        self.parser = parser
        self.stats = stats

    def on_message(self, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        return self.parser.on_message(msg, local_ts_us, where)

    def on_rest(self, url: str, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        self.stats.skip(f"{self.parser.exchange} REST response (no order-flow event)", where)
        return []


# Gate.io and KuCoin parsers read their own REST snapshots (``on_rest``).
_Venue = _BinanceVenue | _WsVenue | GateParser | KucoinParser


class _CaptureState:
    """Per capture: symbol maps from its metadata and one parser per venue (built on first use)."""

    def __init__(self, capture: Capture, stats: ImportStats, progress: bool | None) -> None:
        self.capture = capture
        self.stats = stats
        self.binance_maps: dict[str, dict[str, str]] = {}
        okx_responses: list[Any] = []
        self.gate = GateParser(stats)
        for path in capture.meta:
            for url, data in _read_metadata(path, progress):
                venue = venue_from_url(url)
                if venue == "gate":
                    self.gate.add_metadata(url, data)  # Gate's metadata responses are lists
                    continue
                if venue is None or not isinstance(data, dict):
                    continue
                if venue.startswith("binance") and "symbols" in data:
                    self.binance_maps.setdefault(venue, {}).update(symbol_map_from_exchange_info(data, venue))
                elif venue == "okx" and "instruments" in url:
                    okx_responses.append(data)
        self.okx_map = symbol_map_from_instruments(okx_responses)
        self.venues: dict[str, _Venue] = {}
        self.url_venue: dict[str, str | None] = {}

    def venue(self, url: str) -> _Venue | None:
        if url not in self.url_venue:
            self.url_venue[url] = venue_from_url(url)
        exchange = self.url_venue[url]
        if exchange is None:
            return None
        v = self.venues.get(exchange)
        if v is None:
            if exchange == "kraken":
                v = _WsVenue(KrakenParser(self.stats), self.stats)
            elif exchange == "okx":
                v = _WsVenue(OkxParser(self.stats, self.okx_map), self.stats)
            elif exchange == "bitget":
                v = _WsVenue(BitgetParser(self.stats), self.stats)
            elif exchange == "gate":
                v = self.gate
            elif exchange == "kucoin":
                v = KucoinParser(self.stats)
            else:
                v = _BinanceVenue(exchange, self.stats, self.binance_maps.setdefault(exchange, {}))
            self.venues[exchange] = v
        return v


# ---------------------------------------------------------------------------------------------------------
# The importer


def iter_events(
    paths: Sequence[Path],
    *,
    progress: bool | None = None,
    stats: ImportStats | None = None,
    strict: bool = True,
    symbol: str | None = None,
    exchange: str | None = None,
    **options: Any,
) -> Iterator[Event]:
    """Events of the cryptofeed captures in ``paths`` (files, NAME prefixes or directories), in receive
    order. See the module docstring for the conventions, and ``binance_messages``, ``kraken``, ``okx``,
    ``gate``, ``kucoin`` and ``bitget`` for what each message becomes. Bad input raises ``InputError`` naming
    file and line (or, with ``strict=False``, is counted in ``stats`` and skipped)."""
    unknown = {k: v for k, v in options.items() if v is not None}
    if unknown:
        raise ConfigError(f"cryptofeed import does not take option(s) {', '.join(sorted(unknown))}")
    stats = stats if stats is not None else ImportStats()
    captures = find_captures(paths)
    states = [_CaptureState(cap, stats, progress) for cap in captures]
    streams: list[Iterable[_Line]] = []
    owner: dict[int, _CaptureState] = {}
    order = 0
    for state in states:
        for path in [*state.capture.ws, *state.capture.http]:
            owner[order] = state
            streams.append(_read_file(path, order, progress, stats, strict))
            order += 1
    merged = heapq.merge(*streams, key=lambda line: (line.local_ts_us, line.order))

    unsupported: set[str] = set()
    synced_books: set[tuple[str, str]] = set()
    diffs_seen: dict[tuple[str, str], str] = {}
    def keep(event: Event) -> bool:
        return (symbol is None or event.symbol == symbol) and (exchange is None or event.exchange == exchange)

    for line in merged:
        state = owner[line.order]
        where = f"{line.path}:{line.lineno}"
        venue = state.venue(line.url)
        if venue is None:
            host = url_host(line.url) or line.url
            if host not in unsupported:
                unsupported.add(host)
            stats.skip(f"message from an unsupported venue ({host}; supported: {', '.join(SUPPORTED)})", where)
            continue
        try:
            msg = json.loads(line.payload)
            if line.is_rest:
                events = venue.on_rest(line.url, msg, line.local_ts_us, where)
            else:
                events = venue.on_message(msg, line.local_ts_us, where)
        except InputError:
            raise
        except (ValueError, HeliosError) as exc:
            problem = f"not JSON ({exc})" if isinstance(exc, ValueError) else str(exc)
            if strict:
                raise InputError(
                    str(line.path), line.lineno, problem, "fix or remove the line, or pass strict=False"
                ) from None
            stats.skip("malformed or unknown message", where)
            continue
        for event in events:
            if not keep(event):
                continue
            if isinstance(event, BookSnapshot):
                synced_books.add((event.exchange, event.symbol))
            elif isinstance(event, BookDelta) and event.update_id != NO_ID:
                diffs_seen.setdefault((event.exchange, event.symbol), where)
            stats.events += 1
            yield event

    for key, where in diffs_seen.items():
        if key not in synced_books:
            stats.skip(
                "book diffs without a REST depth snapshot (book cannot be aligned; pass the NAME.http.* file)",
                f"{key[0]} {key[1]} from {where}",
            )
