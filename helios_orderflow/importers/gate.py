"""Gate.io API v4 messages (spot ``wss://api.gateio.ws/ws/v4/``, USDT/BTC perpetual futures
``wss://fx-ws.gateio.ws/v4/ws/{usdt,btc}``) and REST order book snapshots turned into Helios events.

Channels (``{"channel", "event": "update", "result"}``):

- ``spot.order_book_update``: ``{"t" (ms), "s": "BTC_USDT", "U", "u", "b": [[price, size]], "a": [...]}``;
  ``futures.order_book_update``: the same with levels ``{"p": price, "s": size}``. Sizes are absolute (0
  removes). Each becomes a ``BookDelta`` with ``first_update_id = U``, ``update_id = u`` (no ``pu``).
- ``spot.trades``: one trade ``{"id", "create_time_ms", "side", "currency_pair", "amount", "price"}`` (newer
  servers: a list of them); ``side`` is the taker's. ``futures.trades``: a list of ``{"id", "create_time_ms",
  "contract", "size", "price"}`` whose ``size`` sign is the taker's side (negative = taker sold). Gate's ``id``
  is kept as the trade id (one increasing counter for the venue, see ``core/trade_ids.py``).
- tickers, candlesticks and the rest carry no order-flow event and are counted as skips; subscribe acks are
  ignored, error replies counted.

REST snapshots (the capture's ``NAME.http.*``): ``/api/v4/spot/order_book?currency_pair=X&with_id=true`` and
``/api/v4/futures/{settle}/order_book?contract=X&with_id=true`` become a ``BookSnapshot`` whose
``update_id`` is the response's ``id``. A snapshot without ``id`` (fetched without ``with_id=true``) cannot be
aligned with the diffs and is an error.

Book sync is left to ``book/sync.py`` (and so to ``helios inspect`` and the engine): Gate's documented rule,
for spot and futures alike (Gate's "How to maintain local order book", futures announcement of 2021-03-12),
is Binance's spot rule: drop diffs with ``u < id + 1``, the first applied diff has ``U <= id + 1 <= u``, and
each next diff must have ``U == previous u + 1``; anything else is a gap. Gate sends no checksum. The REST
snapshot holds only the requested ``limit`` levels (100 in the sample capture): a level beyond it is unknown
until a diff names it.

Futures sizes are contracts (integers). With the contract's ``quanto_multiplier`` from the capture's
metadata (``/futures/{settle}/contracts``), amounts are converted to base currency, exactly:
``amount = contracts * quanto_multiplier`` in decimal arithmetic (``BTC_USDT``: 1 contract = 0.0001 BTC).
Without it, and on inverse (BTC-settled) contracts, ``amount`` stays in contracts (Helios' convention for
inverse futures); a linear contract left in contracts is logged once.

Timestamps: diffs ``t`` (ms); trades ``create_time_ms`` (ms, spot sends a decimal fraction: kept to the
µs); REST ``current`` (spot: ms; futures: seconds with a fraction). Gate mixes seconds and milliseconds, so
a value below 1e11 is read as seconds. Where a time is missing, the receive time is used.

Symbols (ccxt's unified, with ccxt's renames of Gate currency codes, e.g. ``GTC -> GAMECOM``): spot
``INK_USDT -> INK/USDT`` (base/quote from the ``currency_pairs`` metadata where the capture has it, else
split at the last ``_``), futures ``BTC_USDT -> BTC/USDT:USDT``, ``BTC_USD -> BTC/USD:BTC``, dated
``BTC_USDT_20211231 -> BTC/USDT:USDT-211231``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlparse

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot, Event, Level, Trade
from helios_orderflow.core.symbols import ccxt_currency_codes

log = logging.getLogger(__name__)

EXCHANGE = "gate"

BOOK_CHANNELS = frozenset({"spot.order_book_update", "futures.order_book_update"})
TRADE_CHANNELS = frozenset({"spot.trades", "futures.trades"})
#: Quote currencies of Gate's linear (quote-settled) perpetuals; any other quote is an inverse contract.
LINEAR_SETTLE = ("USDT", "USDC")

_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError, InvalidOperation)


class GateMessageError(HeliosError):
    """A Gate.io message that is malformed; the caller adds file and line."""


def _code(code: str) -> str:
    return ccxt_currency_codes(EXCHANGE).get(code, code)


def gate_unified(raw: str, contract: bool, base_quote: tuple[str, str] | None = None) -> str:
    """A Gate currency pair or contract name as ccxt's unified symbol (see the module docstring)."""
    name = raw.upper()
    if base_quote is not None:
        base, quote = base_quote
    else:
        rest, sep, last = name.rpartition("_")
        if contract and sep and len(last) == 8 and last.isdigit():  # dated future: BTC_USDT_20211231
            rest, sep, quote = rest.rpartition("_")
            base = rest
            if not sep or not base:
                raise GateMessageError(f"contract {raw!r} is not of the form BASE_QUOTE_YYYYMMDD")
            settle = quote if quote in LINEAR_SETTLE else base
            return f"{_code(base)}/{_code(quote)}:{_code(settle)}-{last[2:]}"
        base, quote = rest, last
        if not sep or not base or not quote:
            kind = "contract" if contract else "currency pair"
            raise GateMessageError(f"{kind} {raw!r} is not of the form BASE_QUOTE")
    base, quote = _code(base.upper()), _code(quote.upper())
    if not contract:
        return f"{base}/{quote}"
    settle = quote if quote in LINEAR_SETTLE else base
    return f"{base}/{quote}:{settle}"


def symbol_map_from_currency_pairs(pairs: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """``{id: unified}`` from the ``/spot/currency_pairs`` response (exact base/quote)."""
    out: dict[str, str] = {}
    for pair in pairs:
        try:
            out[str(pair["id"])] = gate_unified(str(pair["id"]), False, (str(pair["base"]), str(pair["quote"])))
        except (*_ERRORS, GateMessageError):
            continue
    return out


def multipliers_from_contracts(contracts: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    """``{contract name: quanto_multiplier}`` from a ``/futures/{settle}/contracts`` response; contracts
    with no usable (positive) multiplier are left out."""
    out: dict[str, Decimal] = {}
    for item in contracts:
        try:
            mult = Decimal(str(item["quanto_multiplier"]))
            if mult.is_finite() and mult > 0:
                out[str(item["name"])] = mult
        except _ERRORS:
            continue
    return out


def _time_to_us(value: Any) -> int:
    """A Gate time in ms or in seconds (int, float or decimal string such as ``"1619093543708.2642"``) as
    integer µs. Gate mixes the two (REST ``current``: ms on spot, seconds on futures) and every time since
    1973 is above 1e11 in ms and below it in seconds, so the size tells them apart."""
    number = Decimal(str(value))
    if not number.is_finite() or number <= 0:
        raise ValueError(f"time {value!r} is not a positive number of seconds or milliseconds")
    return int(number * (1000 if number >= 100_000_000_000 else 1_000_000))


class GateParser:
    """Stateless apart from the symbol map and multipliers. Feed it messages in receive order.

    ``on_message(msg, local_ts_us, where)`` and ``on_rest(url, msg, local_ts_us, where)`` return the events of
    one decoded websocket message / REST response; malformed ones raise ``GateMessageError``. ``stats`` is an
    ``ImportStats``.
    """

    exchange = EXCHANGE

    def __init__(
        self,
        stats: Any,
        symbol_map: Mapping[str, str] | None = None,
        multipliers: Mapping[str, Decimal] | None = None,
    ) -> None:
        self.stats = stats
        self.symbol_map = dict(symbol_map or {})
        self.multipliers = dict(multipliers or {})
        self._futures_symbols: dict[str, str] = {}
        self._warned_contracts: set[str] = set()

    def add_metadata(self, url: str, data: Any) -> bool:
        """Take symbols / multipliers from a metadata response; False if ``url`` is not Gate metadata."""
        path = urlparse(url).path
        if path.endswith("/spot/currency_pairs") and isinstance(data, list):
            self.symbol_map.update(symbol_map_from_currency_pairs(d for d in data if isinstance(d, dict)))
            return True
        contracts = "/futures/" in path or "/delivery/" in path
        if path.endswith("/contracts") and contracts and isinstance(data, list):
            self.multipliers.update(multipliers_from_contracts(d for d in data if isinstance(d, dict)))
            return True
        return False

    def symbol(self, raw: str, contract: bool) -> str:
        if contract:
            unified = self._futures_symbols.get(raw)
            if unified is None:
                unified = self._futures_symbols[raw] = gate_unified(raw, True)
            return unified
        unified = self.symbol_map.get(raw)
        if unified is None:
            unified = self.symbol_map[raw] = gate_unified(raw, False)
        return unified

    # ---- websocket -------------------------------------------------------------------------------------

    def on_message(self, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        if not isinstance(msg, dict):
            raise GateMessageError("expected a JSON object")
        channel = msg.get("channel")
        event = msg.get("event")
        if msg.get("error"):
            self.stats.skip("gate error reply", where)
            return []
        if event in ("subscribe", "unsubscribe") or channel in ("spot.ping", "spot.pong", "futures.ping",
                                                               "futures.pong"):
            return []
        if not isinstance(channel, str) or "result" not in msg:
            raise GateMessageError("expected a Gate v4 message with 'channel' and 'result'")
        try:
            if channel in BOOK_CHANNELS and event == "update":
                return [self._diff(msg["result"], channel.startswith("futures."), local_ts_us)]
            if channel in TRADE_CHANNELS and event == "update":
                rows = msg["result"]
                if isinstance(rows, dict):  # spot sends one trade per message, newer servers a list
                    rows = [rows]
                if channel == "spot.trades":
                    return [self._spot_trade(row, local_ts_us) for row in rows]
                return [self._futures_trade(row, local_ts_us) for row in rows]
        except _ERRORS as exc:
            raise GateMessageError(f"malformed {channel} message ({exc!r})") from None
        self.stats.skip(f"gate {channel} message (no order-flow event)", where)
        return []

    def _levels(self, rows: Iterable[Any], contract: bool, raw: str) -> tuple[Level, ...]:
        if not contract:
            return tuple((float(row[0]), float(row[1])) for row in rows)
        return tuple((float(row["p"]), self._amount(row["s"], raw)) for row in rows)

    def _amount(self, contracts: Any, raw: str) -> float:
        """Contracts to base currency (see the module docstring); ``contracts`` may be signed (trades)."""
        size = abs(Decimal(str(contracts)))
        if not any(f"_{quote}" in raw.upper() for quote in LINEAR_SETTLE):
            return float(size)  # inverse: Helios keeps contracts
        mult = self.multipliers.get(raw)
        if mult is None:
            if raw not in self._warned_contracts:
                self._warned_contracts.add(raw)
                log.warning("gate contract %s: no quanto_multiplier in the capture's metadata; amounts stay in "
                            "contracts (pass the NAME.0 file with /futures/<settle>/contracts)", raw)
            return float(size)
        return float(size * mult)

    def _diff(self, result: Mapping[str, Any], contract: bool, local_ts_us: int) -> BookDelta:
        raw = str(result["s"])
        first, last = int(result["U"]), int(result["u"])
        if first > last:
            raise ValueError(f"U={first} is above u={last}")
        ts_us = _time_to_us(result["t"]) if "t" in result else local_ts_us
        return BookDelta(
            EXCHANGE, self.symbol(raw, contract), ts_us, local_ts_us, first, last, NO_ID,
            self._levels(result.get("b") or (), contract, raw), self._levels(result.get("a") or (), contract, raw),
        )

    def _spot_trade(self, row: Mapping[str, Any], local_ts_us: int) -> Trade:
        side = row["side"]
        if side not in ("buy", "sell"):
            raise ValueError(f"trade side {side!r} is neither buy nor sell")
        ts_us = _time_to_us(row["create_time_ms"] if "create_time_ms" in row else row["create_time"])
        return Trade(
            EXCHANGE, self.symbol(str(row["currency_pair"]), False), ts_us, local_ts_us, float(row["price"]),
            float(row["amount"]), side, str(row["id"]),
        )

    def _futures_trade(self, row: Mapping[str, Any], local_ts_us: int) -> Trade:
        raw = str(row["contract"])
        size = Decimal(str(row["size"]))
        if not size.is_finite() or size == 0:
            raise ValueError(f"futures trade size {row['size']!r} is not a non-zero number of contracts")
        ts_us = _time_to_us(row["create_time_ms"] if "create_time_ms" in row else row["create_time"])
        return Trade(
            EXCHANGE, self.symbol(raw, True), ts_us, local_ts_us, float(row["price"]), self._amount(size, raw),
            "buy" if size > 0 else "sell", str(row["id"]),
        )

    # ---- REST ------------------------------------------------------------------------------------------

    def on_rest(self, url: str, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        parsed = urlparse(url)
        if self.add_metadata(url, msg):
            return []
        if not parsed.path.endswith("/order_book"):
            self.stats.skip(f"gate REST response {parsed.path} (no order-flow event)", where)
            return []
        if isinstance(msg, dict) and "label" in msg and "id" not in msg:
            self.stats.skip("gate REST error response", where)
            return []
        contract = "/futures/" in parsed.path or "/delivery/" in parsed.path
        query = parse_qs(parsed.query)
        raw = (query.get("contract" if contract else "currency_pair") or [""])[0]
        if not raw:
            raise GateMessageError(
                f"order book URL names no {'contract' if contract else 'currency_pair'} (expected ?"
                f"{'contract' if contract else 'currency_pair'}=...)"
            )
        if not isinstance(msg, dict) or msg.get("id") is None:
            raise GateMessageError(
                f"gate order book snapshot of {raw} has no 'id', so the diffs cannot be aligned with it; "
                "capture it with with_id=true"
            )
        try:
            bids = sorted(self._levels(msg.get("bids") or (), contract, raw), key=lambda lv: -lv[0])
            asks = sorted(self._levels(msg.get("asks") or (), contract, raw), key=lambda lv: lv[0])
            ts_us = _time_to_us(msg["current"]) if msg.get("current") is not None else local_ts_us
            return [
                BookSnapshot(EXCHANGE, self.symbol(raw, contract), ts_us, local_ts_us, int(msg["id"]), tuple(bids),
                             tuple(asks))
            ]
        except _ERRORS as exc:
            raise GateMessageError(f"malformed gate order book snapshot of {raw} ({exc!r})") from None
