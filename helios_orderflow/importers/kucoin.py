"""KuCoin spot websocket messages (``/market/level2``, ``/market/match``, ``/market/ticker``) and REST level-2
snapshots (``/api/v3/market/orderbook/level2?symbol=X``) turned into Helios events.

Websocket messages are ``{"type": "message", "topic": "/market/level2:BTC-USDT", "subject", "data"}``;
``welcome``, ``ack`` and ``pong`` are control messages and ignored, ``error`` is counted.

- ``trade.l2update``: ``{"symbol", "sequenceStart", "sequenceEnd", "changes": {"asks": [[price, size,
  sequence]], "bids": [...]}(, "time" ms)}`` becomes a ``BookDelta`` with ``first_update_id =
  sequenceStart`` and ``update_id = sequenceEnd``; its changes are sorted by their own sequence. Sizes are
  absolute (0 removes). A change with price ``"0"`` is ignored (KuCoin's doc: it only advances the
  sequence), so a message may carry ids and no level.
- ``trade.l3match`` / ``match``: ``{"tradeId", "side", "price", "size", "time" (ns)}`` becomes a ``Trade``;
  ``side`` is the taker's and ``tradeId`` (a hex object id, not increasing) is kept.
- ``trade.ticker``: ``{"sequence", "bestBid", "bestBidSize", "bestAsk", "bestAskSize", "time" (ms)}`` becomes a
  ``BestBidOffer`` with ``update_id = sequence``, the book sequence it was taken at, so that ``helios
  inspect`` compares it with the rebuilt book at that sequence.
- candles and the rest carry no order-flow event and are counted as skips.

Book sync. KuCoin's documented procedure: buffer the updates, fetch the REST snapshot (its ``sequence`` S),
drop every change with sequence <= S, apply the rest in sequence order; a message whose ``sequenceStart`` is
above the previous ``sequenceEnd + 1`` is a gap (resync from a new snapshot), one that overlaps the previous
(``sequenceStart <= previous sequenceEnd < sequenceEnd``) continues it. This module keeps the overlap rule: the
changes an overlapping message repeats (sequence <= the previous end) are dropped here and its
``first_update_id`` becomes the previous end + 1. The rest is ``book/sync.py``'s spot rule, which is the same
procedure: a message with ``sequenceEnd <= S`` is dropped, the first applied one has ``sequenceStart <= S + 1
<= sequenceEnd``, then ``sequenceStart == previous sequenceEnd + 1``. That first message is applied whole,
including its changes with sequence <= S; this gives the same book as dropping them, because sizes are
absolute and each change carries the sequence of its price's last modification in the message: a change
with sequence <= S was not modified again up to S, so the snapshot already holds exactly that size.
(``tests/test_import_gate_kucoin_bitget.py`` checks this on the real capture against a literal
implementation of KuCoin's rule.)

Timestamps: ``l2update`` ``time`` (ms) where sent, else the receive time (older captures have none);
trades ``time`` in ns (µs and ms accepted); REST ``time`` in ms.

Symbols: ``BTC-USDT -> BTC/USDT`` with ccxt's renames of KuCoin codes (``BCHSV-USDT -> BSV/USDT``, as ccxt's
``kucoin`` names that market).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlparse

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import NO_ID, BestBidOffer, BookDelta, BookSnapshot, Event, Level, Trade
from helios_orderflow.core.symbols import ccxt_currency_codes

EXCHANGE = "kucoin"

_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError)
_OK = "200000"  # KuCoin's success code


class KucoinMessageError(HeliosError):
    """A KuCoin message that is malformed; the caller adds file and line."""


def kucoin_unified(raw: str) -> str:
    """A KuCoin spot symbol as ccxt's unified symbol: ``BTC-USDT -> BTC/USDT``, ``BCHSV-USDT -> BSV/USDT``."""
    base, sep, quote = raw.upper().partition("-")
    if not sep or not base or not quote or "-" in quote:
        raise KucoinMessageError(f"symbol {raw!r} is not of the form BASE-QUOTE")
    codes = ccxt_currency_codes(EXCHANGE)
    return f"{codes.get(base, base)}/{codes.get(quote, quote)}"


def time_to_us(value: Any) -> int:
    """A KuCoin time in ns, µs or ms (told apart by size: all are after 2001) as integer µs."""
    t = int(value)
    if t >= 10**17:
        return t // 1000
    if t >= 10**14:
        return t
    return t * 1000


class KucoinParser:
    """Keeps, per symbol, the last ``sequenceEnd`` received (for the overlap rule). Feed it messages in receive
    order.

    ``on_message(msg, local_ts_us, where)`` and ``on_rest(url, msg, local_ts_us, where)`` return the events of
    one decoded websocket message / REST response; malformed ones raise ``KucoinMessageError``. ``stats`` is an
    ``ImportStats``.
    """

    exchange = EXCHANGE

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.last_end: dict[str, int] = {}
        self._symbols: dict[str, str] = {}

    def symbol(self, raw: str) -> str:
        unified = self._symbols.get(raw)
        if unified is None:
            unified = self._symbols[raw] = kucoin_unified(raw)
        return unified

    # ---- websocket -------------------------------------------------------------------------------------

    def on_message(self, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        if not isinstance(msg, dict):
            raise KucoinMessageError("expected a JSON object")
        kind = msg.get("type")
        if kind in ("welcome", "ack", "pong"):
            return []
        if kind == "error":
            self.stats.skip("kucoin error message", where)
            return []
        if kind != "message" or not isinstance(msg.get("topic"), str) or "data" not in msg:
            raise KucoinMessageError(f"unknown KuCoin message type {kind!r} (expected message with topic and data)")
        channel = msg["topic"].partition(":")[0]
        try:
            data = msg["data"]
            if channel == "/market/level2":
                return [self._update(data, local_ts_us)]
            if channel == "/market/match":
                return [self._trade(data, local_ts_us)]
            if channel == "/market/ticker":
                raw = msg["topic"].partition(":")[2]
                if raw == "all":  # one subscription for every symbol: the subject names it
                    raw = str(msg["subject"])
                return [self._ticker(data, raw, local_ts_us)]
        except _ERRORS as exc:
            raise KucoinMessageError(f"malformed {channel} message ({exc!r})") from None
        self.stats.skip(f"kucoin {channel} message (no order-flow event)", where)
        return []

    def _update(self, data: Mapping[str, Any], local_ts_us: int) -> BookDelta:
        raw = str(data["symbol"])
        start, end = int(data["sequenceStart"]), int(data["sequenceEnd"])
        if start > end:
            raise ValueError(f"sequenceStart {start} is above sequenceEnd {end}")
        changes = data["changes"]
        rows: list[tuple[int, bool, str, str]] = []  # (sequence, is_bid, price, size)
        for key, is_bid in (("bids", True), ("asks", False)):
            for price, size, seq in changes.get(key) or ():
                rows.append((int(seq), is_bid, str(price), str(size)))
        last = self.last_end.get(raw)
        first = start
        if last is not None and start <= last < end:
            # An overlap continues the stream (KuCoin's doc); what it repeats was applied with the last message.
            first = last + 1
            rows = [row for row in rows if row[0] > last]
        if last is None or end > last:
            self.last_end[raw] = end
        rows.sort(key=lambda row: row[0])
        bids: list[Level] = []
        asks: list[Level] = []
        for _seq, is_bid, price, size in rows:
            level = (float(price), float(size))
            if level[0] == 0.0:  # KuCoin: price 0 only moves the sequence on
                continue
            (bids if is_bid else asks).append(level)
        ts_us = time_to_us(data["time"]) if data.get("time") is not None else local_ts_us
        return BookDelta(EXCHANGE, self.symbol(raw), ts_us, local_ts_us, first, end, NO_ID, tuple(bids),
                         tuple(asks))

    def _trade(self, data: Mapping[str, Any], local_ts_us: int) -> Trade:
        side = data["side"]
        if side not in ("buy", "sell"):
            raise ValueError(f"trade side {side!r} is neither buy nor sell")
        return Trade(
            EXCHANGE, self.symbol(str(data["symbol"])), time_to_us(data["time"]), local_ts_us, float(data["price"]),
            float(data["size"]), side, str(data["tradeId"]),
        )

    def _ticker(self, data: Mapping[str, Any], raw: str, local_ts_us: int) -> BestBidOffer:
        ts_us = time_to_us(data["time"]) if data.get("time") is not None else local_ts_us
        return BestBidOffer(
            EXCHANGE, self.symbol(raw), ts_us, local_ts_us, int(data["sequence"]), float(data["bestBid"]),
            float(data["bestBidSize"]), float(data["bestAsk"]), float(data["bestAskSize"]),
        )

    # ---- REST ------------------------------------------------------------------------------------------

    def on_rest(self, url: str, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        parsed = urlparse(url)
        if "/market/orderbook/level2" not in parsed.path:
            self.stats.skip(f"kucoin REST response {parsed.path} (no order-flow event)", where)
            return []
        if not isinstance(msg, dict) or msg.get("code") != _OK or not isinstance(msg.get("data"), dict):
            self.stats.skip("kucoin REST error response", where)
            return []
        raw = (parse_qs(parsed.query).get("symbol") or [""])[0]
        if not raw:
            raise KucoinMessageError("level2 snapshot URL names no symbol (expected ?symbol=...)")
        data = msg["data"]
        try:
            bids = sorted(((float(p), float(s)) for p, s in data.get("bids") or ()), key=lambda lv: -lv[0])
            asks = sorted(((float(p), float(s)) for p, s in data.get("asks") or ()), key=lambda lv: lv[0])
            ts_us = time_to_us(data["time"]) if data.get("time") is not None else local_ts_us
            return [BookSnapshot(EXCHANGE, self.symbol(raw), ts_us, local_ts_us, int(data["sequence"]), tuple(bids),
                                 tuple(asks))]
        except _ERRORS as exc:
            raise KucoinMessageError(f"malformed kucoin level2 snapshot of {raw} ({exc!r})") from None
