"""Kraken websocket v1 messages (``wss://ws.kraken.com``) turned into Helios events, checksums verified.

Channels:

- ``book-N``: the snapshot ``[chan, {"as": [...], "bs": [...]}, "book-N", pair]`` becomes a
  ``BookSnapshot``; each update ``[chan, {"a": [...]}, {"b": [...], "c": "..."}, "book-N", pair]`` (one or
  two level dicts, the checksum ``c`` in the last) becomes a ``BookDelta``. Levels are
  ``[price, volume, timestamp(, "r")]`` with absolute volumes (0 removes). Kraken stops sending levels
  that fall out of the subscribed depth N, so after each update the book is truncated to N and the
  truncated prices are written into the same ``BookDelta`` with amount 0: the float book downstream
  stays identical to the checked one.
- ``trade``: each ``[price, volume, time, side, orderType, misc]`` becomes a ``Trade``; ``side`` b/s is
  the taker's. Kraken v1 trades carry no id: ``trade_id`` is ``""``.
- ``ticker``, ``spread``, ``ohlc-*``: no order-flow event, counted as skips. Events (heartbeat,
  systemStatus, subscriptionStatus) are control messages and are ignored.

Checksums: every update's CRC32 (see ``checksums.py``) is computed from the level strings as received,
after the update and truncation, and compared with ``c``. A match counts in
``stats.checksums_verified``. A mismatch means the local book is wrong: the update is NOT emitted, a
``FeedGap`` is, the mismatch is counted as a skip, and every further update of that pair is dropped
(counted) until the next snapshot (Kraken sends one on resubscribe).

Timestamps: Kraken sends seconds with microsecond decimals per level/trade. A delta's ``ts_us`` is the
latest level timestamp in it (the snapshot's likewise); a trade's is its own time.

Symbols: ``XBT/USD -> BTC/USD``, ``XDG/USD -> DOGE/USD`` (ccxt's common codes); other names as sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot, Event, FeedGap, Level, Trade
from helios_orderflow.importers.checksums import TextBook

EXCHANGE = "kraken"

# Kraken's own currency codes that ccxt renames.
KRAKEN_CODES = {"XBT": "BTC", "XDG": "DOGE"}

IGNORED_CHANNELS = ("ticker", "spread", "ohlc")


class KrakenMessageError(HeliosError):
    """A Kraken message that is malformed; the caller adds file and line."""


def kraken_unified(pair: str) -> str:
    """Kraken websocket pair name to ccxt's unified symbol: ``XBT/USD -> BTC/USD``."""
    base, sep, quote = pair.partition("/")
    if not sep:
        raise KrakenMessageError(f"pair {pair!r} is not of the form BASE/QUOTE")
    return f"{KRAKEN_CODES.get(base, base)}/{KRAKEN_CODES.get(quote, quote)}"


def seconds_text_to_us(text: str) -> int:
    """``"1618678133.366461" -> 1618678133366461`` without a float round trip."""
    whole, _, frac = str(text).partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise KrakenMessageError(f"timestamp {text!r} is not seconds since the epoch")
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


@dataclass
class _PairBook:
    depth: int
    text: TextBook = field(default_factory=TextBook)
    in_sync: bool = False


class KrakenParser:
    """Stateful: keeps one checked book per pair. Feed it messages in receive order.

    ``on_message(msg, local_ts_us, where)`` returns the events of one decoded message; raises
    ``KrakenMessageError`` for malformed ones. ``stats`` is an ``ImportStats``.
    """

    exchange = EXCHANGE

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.books: dict[str, _PairBook] = {}
        self.checksum_failures = 0

    def on_message(self, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        if isinstance(msg, dict):
            if msg.get("event") == "error" or msg.get("status") == "error":
                self.stats.skip("kraken error message", where)
            return []  # heartbeat, systemStatus, subscriptionStatus
        if not isinstance(msg, list) or len(msg) < 4:
            raise KrakenMessageError("expected a JSON array [channelID, data..., channelName, pair]")
        channel, pair = msg[-2], msg[-1]
        if not isinstance(channel, str) or not isinstance(pair, str):
            raise KrakenMessageError("channel name and pair must be the last two strings of the message")
        try:
            if channel.startswith("book-"):
                return self._book(msg[1:-2], channel, pair, local_ts_us, where)
            if channel == "trade":
                return self._trades(msg[1], pair, local_ts_us)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise KrakenMessageError(f"malformed {channel} message for {pair} ({exc!r})") from None
        if channel.startswith(IGNORED_CHANNELS):
            self.stats.skip(f"kraken {channel.split('-')[0]} message (no order-flow event)", where)
            return []
        raise KrakenMessageError(f"unknown Kraken channel {channel!r}")

    def _trades(self, rows: list[Any], pair: str, local_ts_us: int) -> list[Event]:
        symbol = kraken_unified(pair)
        out: list[Event] = []
        for row in rows:
            side = row[3]
            if side not in ("b", "s"):
                raise KrakenMessageError(f"trade side {side!r} is neither 'b' nor 's'")
            out.append(
                Trade(
                    EXCHANGE, symbol, seconds_text_to_us(row[2]), local_ts_us, float(row[0]), float(row[1]),
                    "buy" if side == "b" else "sell", "",
                )
            )
        return out

    def _book(self, parts: list[Any], channel: str, pair: str, local_ts_us: int, where: str) -> list[Event]:
        symbol = kraken_unified(pair)
        depth = int(channel.split("-", 1)[1])
        if len(parts) == 1 and ("as" in parts[0] or "bs" in parts[0]):
            return [self._snapshot(parts[0], symbol, pair, depth, local_ts_us)]
        state = self.books.get(pair)
        if state is None or not state.in_sync:
            why = "before its snapshot" if state is None else "while out of sync after a checksum mismatch"
            self.stats.skip(f"kraken book update {why}", where)
            return []
        text = state.text
        bids: list[Level] = []
        asks: list[Level] = []
        ts_us = 0
        checksum: str | None = None
        for part in parts:
            for key, side, out in (("a", text.asks, asks), ("b", text.bids, bids)):
                for row in part.get(key, ()):
                    out.append(side.set(row[0], row[1]))
                    ts_us = max(ts_us, seconds_text_to_us(row[2]))
            if "c" in part:
                checksum = part["c"]
        # Kraken sends no removal for levels pushed beyond the subscribed depth.
        bids.extend((p, 0.0) for p in text.bids.truncate(state.depth))
        asks.extend((p, 0.0) for p in text.asks.truncate(state.depth))
        ts_us = ts_us or local_ts_us
        if checksum is not None:
            computed = text.kraken_checksum()
            if computed != int(checksum):
                state.in_sync = False
                self.checksum_failures += 1
                self.stats.skip("kraken book checksum mismatch (update dropped, book out of sync)", where)
                return [
                    FeedGap(
                        EXCHANGE, symbol, ts_us, local_ts_us,
                        f"kraken checksum mismatch at {where}: venue {checksum}, local book {computed}; "
                        "book updates dropped until the next snapshot",
                    )
                ]
            self.stats.checksums_verified += 1
        return [BookDelta(EXCHANGE, symbol, ts_us, local_ts_us, NO_ID, NO_ID, NO_ID, tuple(bids), tuple(asks))]

    def _snapshot(
        self, data: dict[str, Any], symbol: str, pair: str, depth: int, local_ts_us: int
    ) -> BookSnapshot:
        state = _PairBook(depth=depth)
        ts_us = 0
        for key, side in (("as", state.text.asks), ("bs", state.text.bids)):
            for row in data.get(key, ()):
                side.set(row[0], row[1])
                ts_us = max(ts_us, seconds_text_to_us(row[2]))
        state.in_sync = True
        self.books[pair] = state
        text = state.text
        bids = tuple((p, float(text.bids.levels[p][1])) for p in text.bids.best_prices(len(text.bids)))
        asks = tuple((p, float(text.asks.levels[p][1])) for p in text.asks.best_prices(len(text.asks)))
        return BookSnapshot(EXCHANGE, symbol, ts_us or local_ts_us, local_ts_us, NO_ID, bids, asks)
