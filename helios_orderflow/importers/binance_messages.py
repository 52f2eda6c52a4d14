"""One decoded Binance websocket or REST message turned into Helios events (pure functions).

Shared by every importer that reads Binance data (``binance_raw``, ``cryptofeed``), so that a message
means the same thing whichever file it came from.

Accepted messages (combined-stream envelope ``{"stream": ..., "data": {...}}`` or the raw payload):

- ``depthUpdate`` diff: spot ``U``/``u``; USD-M and COIN-M futures also ``pu``. -> ``BookDelta``
  (``first_update_id=U``, ``update_id=u``, ``prev_update_id=pu`` or -1 on spot). ``ts_us = E``.
- REST depth snapshot ``{"lastUpdateId", "bids", "asks"}`` -> ``BookSnapshot``. Spot snapshots carry no
  symbol: the caller passes it (``snapshot_symbol``, the wire symbol). Futures snapshots carry ``E``
  (used as ``ts_us``); spot ones have no time, so ``ts_us`` is the local receive time.
- ``trade`` (``t, p, q, T, m``) and ``aggTrade`` (``a, p, q, T, m``; the trade id is the aggregate id)
  -> ``Trade`` with ``ts_us = T``. ``m`` true means the buyer was the maker, so the taker sold:
  ``side='sell'``.
- ``bookTicker`` (``u, b, B, a, A``) -> ``BestBidOffer`` with ``update_id = u``. Spot bookTicker has no
  ``E``/``T``: ``ts_us`` is the local receive time; futures use ``E``.
- Known messages that carry no order-flow event (``kline``, partial-depth ``@depthN`` books, the
  subscription ack ``{"result": null, "id": N}``, ``24hrTicker`` ...) give no events; when ``stats``
  is passed they are counted as skips per kind.

Anything else (an error payload ``{"code", "msg"}``, an unknown event type, a field missing or not a
number) raises ``BinanceMessageError`` with what was wrong; the caller knows the file and line and
turns it into ``InputError`` or a counted skip.

Units: Binance times are milliseconds; every ``ts_us`` here is that value * 1000. Prices and amounts
are parsed from Binance's decimal strings with ``float()`` (same string, same float).

Symbols: wire symbols (``BTCUSDT``, ``BTCUSD_PERP``) become ccxt unified symbols through ``symbol_map``
(a mapping ``wire -> unified`` or a callable), falling back to ``symbols.binance_unified`` for the
exchange id (``binance``, ``binanceus``, ``binanceusdm``, ``binancecoinm``). Build an exact map from
``exchangeInfo`` with ``symbol_map_from_exchange_info``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import NO_ID, BestBidOffer, BookDelta, BookSnapshot, Event, Levels, Trade
from helios_orderflow.core.symbols import binance_unified

SymbolMap = Mapping[str, str] | Callable[[str], str] | None
"""Wire symbol (upper case, e.g. ``BTCUSDT``) -> ccxt unified symbol; None = infer from the name."""

BINANCE_EXCHANGES = ("binance", "binanceus", "binanceusdm", "binancecoinm")

# Event types that are valid Binance messages but carry nothing Helios records.
IGNORED_EVENT_TYPES = frozenset(
    {"kline", "24hrTicker", "24hrMiniTicker", "markPriceUpdate", "forceOrder", "indexPriceUpdate",
     "continuous_kline", "indexPrice_kline", "markPrice_kline", "compositeIndex", "contractInfo",
     "avgPrice"}
)


class BinanceMessageError(HeliosError):
    """A Binance message that is malformed or of an unknown kind. Has no file/line: the caller adds them."""


class _Skip(Exception):
    """Internal: a valid message that yields no event; ``args[0]`` is its kind."""


def symbol_map_from_exchange_info(info: Mapping[str, Any], exchange: str) -> dict[str, str]:
    """``{wire symbol: unified symbol}`` for every symbol of a Binance ``exchangeInfo`` response,
    using its ``baseAsset``/``quoteAsset`` (exact where name-splitting would guess)."""
    out: dict[str, str] = {}
    for entry in info.get("symbols", ()):
        try:
            raw = str(entry["symbol"]).upper()
            base_quote = (str(entry["baseAsset"]).upper(), str(entry["quoteAsset"]).upper())
        except (KeyError, TypeError):
            continue
        try:
            out[raw] = binance_unified(raw, exchange, base_quote)
        except HeliosError:
            continue
    return out


@lru_cache(maxsize=4096)
def _infer_unified(raw: str, exchange: str) -> str:
    return binance_unified(raw, exchange)


def resolve_symbol(raw: str, exchange: str, symbol_map: SymbolMap = None) -> str:
    """The unified symbol for wire symbol ``raw`` on ``exchange`` (see module docstring)."""
    raw = raw.upper()
    if symbol_map is not None:
        if callable(symbol_map):
            return symbol_map(raw)
        unified = symbol_map.get(raw)
        if unified is not None:
            return unified
    return _infer_unified(raw, exchange)


def _levels(rows: Any, what: str) -> Levels:
    try:
        return tuple((float(p), float(q)) for p, q, *_ in rows)
    except (TypeError, ValueError) as exc:
        raise BinanceMessageError(f"{what} is not a list of [price, amount] decimal strings ({exc})") from None


def _ms_to_us(value: Any, what: str) -> int:
    try:
        return int(value) * 1000
    except (TypeError, ValueError):
        raise BinanceMessageError(f"{what} {value!r} is not a millisecond timestamp") from None


def parse_depth_snapshot(
    data: Mapping[str, Any], *, exchange: str, symbol: str, local_ts_us: int
) -> BookSnapshot:
    """A REST depth snapshot (``GET /api/v3/depth``, ``/fapi/v1/depth``, ``/dapi/v1/depth``) for the
    already-unified ``symbol``. ``ts_us`` is ``E`` where present, else ``local_ts_us``."""
    try:
        update_id = int(data["lastUpdateId"])
        bids = _levels(data["bids"], "snapshot bids")
        asks = _levels(data["asks"], "snapshot asks")
    except KeyError as exc:
        raise BinanceMessageError(f"depth snapshot has no {exc.args[0]!r} field") from None
    except (TypeError, ValueError):
        raise BinanceMessageError(
            f"depth snapshot lastUpdateId {data.get('lastUpdateId')!r} is not an integer"
        ) from None
    ts_us = _ms_to_us(data["E"], "snapshot E") if "E" in data else local_ts_us
    return BookSnapshot(exchange, symbol, ts_us, local_ts_us, update_id, bids, asks)


def _depth_update(d: Mapping[str, Any], exchange: str, local_ts_us: int, symbol_map: SymbolMap) -> BookDelta:
    pu = d.get("pu")
    return BookDelta(
        exchange,
        resolve_symbol(d["s"], exchange, symbol_map),
        _ms_to_us(d["E"], "depthUpdate E"),
        local_ts_us,
        int(d["U"]),
        int(d["u"]),
        NO_ID if pu is None else int(pu),
        _levels(d["b"], "depthUpdate b"),
        _levels(d["a"], "depthUpdate a"),
    )


def _trade(d: Mapping[str, Any], exchange: str, local_ts_us: int, symbol_map: SymbolMap, id_key: str) -> Trade:
    m = d["m"]
    if not isinstance(m, bool):
        raise BinanceMessageError(f"trade field m {m!r} is not true/false")
    return Trade(
        exchange,
        resolve_symbol(d["s"], exchange, symbol_map),
        _ms_to_us(d["T"], "trade T"),
        local_ts_us,
        float(d["p"]),
        float(d["q"]),
        "sell" if m else "buy",
        str(int(d[id_key])),
    )


def _book_ticker(d: Mapping[str, Any], exchange: str, local_ts_us: int, symbol_map: SymbolMap) -> BestBidOffer:
    ts_us = _ms_to_us(d["E"], "bookTicker E") if "E" in d else local_ts_us
    return BestBidOffer(
        exchange,
        resolve_symbol(d["s"], exchange, symbol_map),
        ts_us,
        local_ts_us,
        int(d["u"]),
        float(d["b"]),
        float(d["B"]),
        float(d["a"]),
        float(d["A"]),
    )


def _parse_payload(
    d: Mapping[str, Any],
    stream: str,
    exchange: str,
    local_ts_us: int,
    symbol_map: SymbolMap,
    snapshot_symbol: str | None,
) -> Event:
    etype = d.get("e")
    if etype == "depthUpdate":
        return _depth_update(d, exchange, local_ts_us, symbol_map)
    if etype == "trade":
        return _trade(d, exchange, local_ts_us, symbol_map, "t")
    if etype == "aggTrade":
        return _trade(d, exchange, local_ts_us, symbol_map, "a")
    if etype == "bookTicker" or (etype is None and "u" in d and "b" in d and "A" in d and "s" in d):
        return _book_ticker(d, exchange, local_ts_us, symbol_map)
    if etype in IGNORED_EVENT_TYPES:
        raise _Skip(str(etype))
    if "lastUpdateId" in d:
        if "@depth" in stream and not stream.endswith(("@depth", "@depth@100ms", "@depth@1000ms", "@depth@500ms")):
            # ``<symbol>@depth5/10/20``: a partial top-of-book view, not a full snapshot to sync a book.
            raise _Skip("partial depth")
        raw = d.get("symbol") or snapshot_symbol or (stream.split("@", 1)[0] if stream else None)
        if not raw:
            raise BinanceMessageError("depth snapshot without a symbol; pass the symbol it was requested for")
        symbol = resolve_symbol(str(raw), exchange, symbol_map)
        return parse_depth_snapshot(d, exchange=exchange, symbol=symbol, local_ts_us=local_ts_us)
    if "code" in d and "msg" in d:
        raise BinanceMessageError(f"Binance error response code {d['code']}: {d['msg']}")
    if etype is None:
        raise BinanceMessageError(f"unknown Binance message with fields {sorted(d)[:8]}")
    raise BinanceMessageError(f"unknown Binance event type {etype!r}")


def parse_binance_message(
    msg: Mapping[str, Any],
    *,
    exchange: str,
    local_ts_us: int,
    symbol_map: SymbolMap = None,
    snapshot_symbol: str | None = None,
    stats: Any = None,
    where: str = "",
) -> list[Event]:
    """Events from ONE decoded Binance message (see module docstring for what is accepted).

    ``exchange``: ccxt id (``binance``, ``binanceus``, ``binanceusdm``, ``binancecoinm``).
    ``local_ts_us``: receive time of the message, integer microseconds.
    ``snapshot_symbol``: wire symbol of a REST depth snapshot that does not name its own.
    ``stats``/``where``: an ``ImportStats`` and ``"file:line"``; ignored kinds (kline, ack, ...) are
    counted there as ``stats.skip("binance <kind> message (no order-flow event)", where)``.

    Returns 0 or 1 events (a list so that callers need not special-case ignored messages).
    Raises ``BinanceMessageError`` for malformed or unknown messages.
    """
    if not isinstance(msg, Mapping):
        raise BinanceMessageError(f"expected a JSON object, got {type(msg).__name__}")
    stream = ""
    data: Any = msg
    if "data" in msg and "stream" in msg:
        stream = str(msg["stream"])
        data = msg["data"]
        if not isinstance(data, Mapping):
            raise BinanceMessageError(f"stream {stream!r} data is not a JSON object")
    elif "result" in msg and "id" in msg:
        kind = "subscription ack"
        if stats is not None:
            stats.skip(f"binance {kind} message (no order-flow event)", where)
        return []
    try:
        return [_parse_payload(data, stream, exchange, local_ts_us, symbol_map, snapshot_symbol)]
    except _Skip as skip:
        if stats is not None:
            stats.skip(f"binance {skip.args[0]} message (no order-flow event)", where)
        return []
    except KeyError as exc:
        raise BinanceMessageError(f"Binance {data.get('e') or 'message'} has no {exc.args[0]!r} field") from None
    except (TypeError, ValueError) as exc:
        raise BinanceMessageError(f"Binance {data.get('e') or 'message'} has a malformed field ({exc})") from None
