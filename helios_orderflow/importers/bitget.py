"""Bitget v1 public websocket messages (spot ``wss://ws.bitget.com/spot/v1/stream``, futures
``wss://ws.bitget.com/mix/v1/stream``) turned into Helios events, checksums verified.

Messages are ``{"action": "snapshot"|"update", "arg": {"instType": "sp"|"mc", "channel", "instId"},
"data": [...]}``; ``event`` messages (subscribe acks) are ignored, ``event: error`` is counted, and the
plain-text ``pong`` never reaches here (it is not JSON: the capture reader reports it).

- ``books``: each ``{"asks": [[price, size]], "bids": [...], "checksum", "ts" (ms)}``. The ``snapshot`` (sent on
  subscribe and resubscribe) becomes a ``BookSnapshot``, each ``update`` a ``BookDelta`` with absolute sizes
  (0 removes). Bitget v1 books carry no sequence ids: integrity is the checksum.
- ``trade``: rows ``[ts (ms), price, size, side]`` become ``Trade`` events; ``side`` is the taker's. v1 trades
  carry no id: ``trade_id`` is ``""``.
- ``books5``/``books15`` (fixed-depth snapshots), ``ticker``, ``candle*``: no order-flow event here, counted
  as skips.

Checksums: after every update the CRC32 of the top 25 levels, interleaved ``bid1:ask1:bid2:ask2...`` as
``price:size`` strings exactly as Bitget sent them, signed 32-bit (``checksums.bitget_checksum``), is compared
with ``checksum``. A match counts in ``stats.checksums_verified``. On a mismatch the update is NOT emitted, a
``FeedGap`` is, the mismatch is counted as a skip, and the instrument's updates are dropped (counted) until
the next snapshot. Snapshots are not verified: as ccxt does, the checksum is checked on updates only (a
snapshot replaces the book whole, and its checksum field is not documented as meaningful).

Timestamps: ``ts`` is milliseconds (a string); ``ts_us = ts * 1000``.

Symbols: v1 ids name no separator, so base and quote are split on the longest known quote currency
(``core/symbols.py``) and ccxt's renames of Bitget codes applied. Spot (``sp``): ``BTCUSDT -> BTC/USDT``;
futures (``mc``): ``BTCUSDT -> BTC/USDT:USDT``, ``BTCUSD -> BTC/USD:BTC`` (inverse), ``BTCPERP ->
BTC/USDC:USDC`` (Bitget's USDC perpetuals). A ``_SPBL``/``_UMCBL``/``_DMCBL``/``_CMCBL`` suffix (v1 REST
names) is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot, Event, FeedGap, Level, Trade
from helios_orderflow.core.symbols import KNOWN_QUOTES, ccxt_currency_codes, split_pair
from helios_orderflow.importers.checksums import TextBook

EXCHANGE = "bitget"

SPOT_TYPES = frozenset({"sp", "spot"})
CONTRACT_TYPES = frozenset({"mc"})
IGNORED_CHANNELS = ("books5", "books15", "ticker", "candle")
_V1_SUFFIXES = ("_SPBL", "_UMCBL", "_DMCBL", "_CMCBL")
_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError)


class BitgetMessageError(HeliosError):
    """A Bitget message that is malformed; the caller adds file and line."""


def bitget_unified(inst_id: str, contract: bool) -> str:
    """A Bitget v1 instId as ccxt's unified symbol (see the module docstring)."""
    raw = inst_id.upper()
    for suffix in _V1_SUFFIXES:
        if raw.endswith(suffix):
            raw = raw[: -len(suffix)]
    codes = ccxt_currency_codes(EXCHANGE)
    if contract and raw.endswith("PERP") and len(raw) > 4:
        base = codes.get(raw[:-4], raw[:-4])
        return f"{base}/USDC:USDC"
    try:
        base, quote = split_pair(raw, KNOWN_QUOTES)
    except HeliosError:
        raise BitgetMessageError(f"cannot tell base from quote in Bitget instId {inst_id!r}") from None
    base, quote = codes.get(base, base), codes.get(quote, quote)
    if not contract:
        return f"{base}/{quote}"
    settle = quote if quote in ("USDT", "USDC") else base
    return f"{base}/{quote}:{settle}"


@dataclass
class _InstBook:
    text: TextBook = field(default_factory=TextBook)
    in_sync: bool = False


class BitgetParser:
    """Stateful: keeps one checked book per instrument. Feed it messages in receive order.

    ``on_message(msg, local_ts_us, where)`` returns the events of one decoded message; raises
    ``BitgetMessageError`` for malformed ones. ``stats`` is an ``ImportStats``.
    """

    exchange = EXCHANGE

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.books: dict[tuple[bool, str], _InstBook] = {}
        self.checksum_failures = 0
        self._symbols: dict[tuple[bool, str], str] = {}

    def symbol(self, inst_id: str, contract: bool) -> str:
        key = (contract, inst_id)
        unified = self._symbols.get(key)
        if unified is None:
            unified = self._symbols[key] = bitget_unified(inst_id, contract)
        return unified

    def on_message(self, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        if not isinstance(msg, dict):
            raise BitgetMessageError("expected a JSON object")
        if "event" in msg:
            if msg["event"] == "error":
                self.stats.skip("bitget error message", where)
            return []
        try:
            arg = msg["arg"]
            channel = str(arg["channel"])
            inst_type = str(arg["instType"]).lower()
            inst_id = str(arg["instId"])
            if inst_type not in SPOT_TYPES and inst_type not in CONTRACT_TYPES:
                raise BitgetMessageError(
                    f"unknown Bitget v1 instType {arg['instType']!r} (expected sp or mc)"
                )
            contract = inst_type in CONTRACT_TYPES
            data = msg["data"]
            if channel == "books":
                return self._book(str(msg.get("action", "")), data, inst_id, contract, local_ts_us, where)
            if channel == "trade":
                return self._trades(data, inst_id, contract, local_ts_us)
        except _ERRORS as exc:
            raise BitgetMessageError(f"malformed Bitget message ({exc!r})") from None
        if channel.startswith(IGNORED_CHANNELS):
            self.stats.skip(f"bitget {channel} message (no order-flow event)", where)
            return []
        raise BitgetMessageError(f"unknown Bitget channel {channel!r}")

    def _trades(self, rows: list[Any], inst_id: str, contract: bool, local_ts_us: int) -> list[Event]:
        symbol = self.symbol(inst_id, contract)
        out: list[Event] = []
        for ts, price, size, side in rows:
            if side not in ("buy", "sell"):
                raise ValueError(f"trade side {side!r} is neither buy nor sell")
            out.append(Trade(EXCHANGE, symbol, int(ts) * 1000, local_ts_us, float(price), float(size), side, ""))
        return out

    def _book(
        self, action: str, data: list[Any], inst_id: str, contract: bool, local_ts_us: int, where: str
    ) -> list[Event]:
        out: list[Event] = []
        symbol = self.symbol(inst_id, contract)
        key = (contract, inst_id)
        for item in data:
            ts_us = int(item["ts"]) * 1000 if item.get("ts") is not None else local_ts_us
            if action == "snapshot":
                state = self.books[key] = _InstBook()
            elif action == "update":
                known = self.books.get(key)
                if known is None or not known.in_sync:
                    why = "before its snapshot" if known is None else "while out of sync after a checksum mismatch"
                    self.stats.skip(f"bitget book update {why}", where)
                    continue
                state = known
            else:
                raise BitgetMessageError(f"book action {action!r} is neither snapshot nor update")
            text = state.text
            if action == "update":
                # The checked book takes the update before the check; on a mismatch it is out of sync and
                # only the next snapshot (a new book) brings it back, so nothing reads it in between.
                bids: list[Level] = [text.bids.set(str(p), str(s)) for p, s in item.get("bids") or ()]
                asks: list[Level] = [text.asks.set(str(p), str(s)) for p, s in item.get("asks") or ()]
                if item.get("checksum") is not None:
                    computed = text.bitget_checksum()
                    if computed != int(item["checksum"]):
                        state.in_sync = False
                        self.checksum_failures += 1
                        self.stats.skip("bitget book checksum mismatch (update dropped, book out of sync)", where)
                        out.append(
                            FeedGap(
                                EXCHANGE, symbol, ts_us, local_ts_us,
                                f"bitget checksum mismatch at {where}: venue {item['checksum']}, local book "
                                f"{computed}; book updates dropped until the next snapshot",
                            )
                        )
                        continue
                    self.stats.checksums_verified += 1
                out.append(
                    BookDelta(EXCHANGE, symbol, ts_us, local_ts_us, NO_ID, NO_ID, NO_ID, tuple(bids), tuple(asks))
                )
                continue
            for p, s in item.get("bids") or ():
                text.bids.set(str(p), str(s))
            for p, s in item.get("asks") or ():
                text.asks.set(str(p), str(s))
            state.in_sync = True
            out.append(
                BookSnapshot(
                    EXCHANGE, symbol, ts_us, local_ts_us, NO_ID,
                    tuple((p, float(text.bids.levels[p][1])) for p in text.bids.best_prices(len(text.bids))),
                    tuple((p, float(text.asks.levels[p][1])) for p in text.asks.best_prices(len(text.asks))),
                )
            )
        return out
