"""OKX v5 public websocket messages (``wss://ws.okx.com:8443/ws/v5/public``) turned into Helios events,
checksums verified.

Channels:

- ``books`` (400 levels), ``books-l2-tbt``, ``books50-l2-tbt``: ``{"arg": {"channel", "instId"},
  "action": "snapshot"|"update", "data": [{"asks", "bids", "ts", "checksum"(, "seqId", "prevSeqId")}]}``.
  Levels are ``[price, size, liquidated orders, order count]`` with absolute sizes (0 removes). A
  snapshot becomes a ``BookSnapshot``, an update a ``BookDelta`` (no update ids: OKX's integrity check is
  the checksum; where ``seqId``/``prevSeqId`` are present they are checked too).
- ``trades``: each ``{"tradeId", "px", "sz", "side", "ts"}`` becomes a ``Trade``; ``side`` is the taker's.
- ``tickers`` and other channels carry no order-flow event in Helios' sense and are counted as skips
  (tickers are not synchronized with the book channel, so they cannot check it). ``event`` messages
  (subscribe acks) are ignored; ``event: error`` is counted.

Checksums: after every snapshot and update the CRC32 of the top 25 levels (see ``checksums.py``) is
computed from the strings as received and compared with ``checksum``. A match counts in
``stats.checksums_verified``. On a mismatch (or a ``prevSeqId`` that does not follow) the message is NOT
emitted, a ``FeedGap`` is, the mismatch is counted as a skip, and the instrument's updates are dropped
(counted) until the next snapshot (OKX sends one on resubscribe).

Timestamps: ``ts`` is milliseconds; ``ts_us = ts * 1000``.

Symbols: from the instruments metadata where given (``symbol_map``), else from the instId:
``BTC-USDT -> BTC/USDT``, ``BTC-USDT-SWAP -> BTC/USDT:USDT``, ``UNI-USD-SWAP -> UNI/USD:UNI`` (inverse),
``BTC-USD-220527 -> BTC/USD:BTC-220527``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot, Event, FeedGap, Level, Trade
from helios_orderflow.importers.checksums import TextBook

EXCHANGE = "okx"

BOOK_CHANNELS = frozenset({"books", "books-l2-tbt", "books50-l2-tbt"})
LINEAR_SETTLE = ("USDT", "USDC")


class OkxMessageError(HeliosError):
    """An OKX message that is malformed; the caller adds file and line."""


def okx_unified(inst_id: str, instrument: Mapping[str, Any] | None = None) -> str:
    """An OKX instId as ccxt's unified symbol, exact with the instrument's metadata, else inferred."""
    parts = inst_id.upper().split("-")
    if len(parts) < 2:
        raise OkxMessageError(f"instId {inst_id!r} is not of the form BASE-QUOTE[-SWAP|-YYMMDD]")
    base, quote = parts[0], parts[1]
    if len(parts) == 2:
        return f"{base}/{quote}"
    settle = ""
    if instrument is not None:
        settle = str(instrument.get("settleCcy") or "").upper()
    if not settle:
        settle = quote if quote in LINEAR_SETTLE else base
    if len(parts) == 3 and parts[2] == "SWAP":
        return f"{base}/{quote}:{settle}"
    return f"{base}/{quote}:{settle}-{'-'.join(parts[2:])}"


def symbol_map_from_instruments(responses: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """``{instId: unified}`` from OKX ``/api/v5/public/instruments`` responses."""
    out: dict[str, str] = {}
    for resp in responses:
        for inst in resp.get("data", ()) or ():
            inst_id = inst.get("instId")
            if not inst_id or inst.get("instType") == "OPTION":
                continue
            try:
                out[inst_id] = okx_unified(inst_id, inst)
            except OkxMessageError:
                continue
    return out


@dataclass
class _InstBook:
    text: TextBook = field(default_factory=TextBook)
    in_sync: bool = False
    seq_id: int | None = None


class OkxParser:
    """Stateful: keeps one checked book per instrument. Feed it messages in receive order.

    ``on_message(msg, local_ts_us, where)`` returns the events of one decoded message; raises
    ``OkxMessageError`` for malformed ones. ``stats`` is an ``ImportStats``.
    """

    exchange = EXCHANGE

    def __init__(self, stats: Any, symbol_map: Mapping[str, str] | None = None) -> None:
        self.stats = stats
        self.symbol_map = dict(symbol_map or {})
        self.books: dict[str, _InstBook] = {}
        self.checksum_failures = 0

    def symbol(self, inst_id: str) -> str:
        unified = self.symbol_map.get(inst_id)
        if unified is None:
            unified = self.symbol_map[inst_id] = okx_unified(inst_id)
        return unified

    def on_message(self, msg: Any, local_ts_us: int, where: str) -> list[Event]:
        if not isinstance(msg, dict):
            raise OkxMessageError("expected a JSON object")
        if "event" in msg:
            if msg["event"] == "error":
                self.stats.skip("okx error message", where)
            return []
        try:
            arg = msg["arg"]
            channel = arg["channel"]
            inst_id = arg["instId"]
            data = msg["data"]
            if channel in BOOK_CHANNELS:
                return self._book(msg.get("action", "snapshot"), data, inst_id, local_ts_us, where)
            if channel == "trades":
                return self._trades(data, inst_id, local_ts_us)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise OkxMessageError(f"malformed OKX message ({exc!r})") from None
        self.stats.skip(f"okx {channel} message (no order-flow event)", where)
        return []

    def _trades(self, rows: list[Any], inst_id: str, local_ts_us: int) -> list[Event]:
        out: list[Event] = []
        for row in rows:
            if row.get("instId", inst_id) != inst_id:
                raise OkxMessageError(f"trade for {row['instId']} in the {inst_id} channel")
            side = row["side"]
            if side not in ("buy", "sell"):
                raise OkxMessageError(f"trade side {side!r} is neither buy nor sell")
            out.append(
                Trade(
                    EXCHANGE, self.symbol(inst_id), int(row["ts"]) * 1000, local_ts_us, float(row["px"]),
                    float(row["sz"]), side, str(row["tradeId"]),
                )
            )
        return out

    def _book(self, action: str, data: list[Any], inst_id: str, local_ts_us: int, where: str) -> list[Event]:
        out: list[Event] = []
        symbol = self.symbol(inst_id)
        for item in data:
            ts_us = int(item["ts"]) * 1000 if "ts" in item else local_ts_us
            if action == "snapshot":
                state = self.books[inst_id] = _InstBook()
            elif action == "update":
                known = self.books.get(inst_id)
                if known is None or not known.in_sync:
                    why = "before its snapshot" if known is None else "while out of sync after a checksum mismatch"
                    self.stats.skip(f"okx book update {why}", where)
                    continue
                state = known
            else:
                raise OkxMessageError(f"book action {action!r} is neither snapshot nor update")
            problem = ""
            if "prevSeqId" in item and state.seq_id is not None and action == "update":
                if int(item["prevSeqId"]) != state.seq_id:
                    problem = f"sequence gap: prevSeqId {item['prevSeqId']} after seqId {state.seq_id}"
            text = state.text
            bids: list[Level] = [text.bids.set(row[0], row[1]) for row in item.get("bids", ())]
            asks: list[Level] = [text.asks.set(row[0], row[1]) for row in item.get("asks", ())]
            if "seqId" in item:
                state.seq_id = int(item["seqId"])
            if not problem and "checksum" in item:
                computed = text.okx_checksum()
                if computed != int(item["checksum"]):
                    problem = f"checksum mismatch: venue {item['checksum']}, local book {computed}"
                else:
                    self.stats.checksums_verified += 1
            if problem:
                state.in_sync = False
                self.checksum_failures += 1
                reason = "sequence gap" if problem.startswith("sequence") else "checksum mismatch"
                self.stats.skip(f"okx book {reason} (message dropped, book out of sync)", where)
                out.append(
                    FeedGap(
                        EXCHANGE, symbol, ts_us, local_ts_us,
                        f"okx {problem} at {where}; book updates dropped until the next snapshot",
                    )
                )
                continue
            if action == "snapshot":
                state.in_sync = True
                out.append(
                    BookSnapshot(
                        EXCHANGE, symbol, ts_us, local_ts_us, NO_ID,
                        tuple((p, float(text.bids.levels[p][1])) for p in text.bids.best_prices(len(text.bids))),
                        tuple((p, float(text.asks.levels[p][1])) for p in text.asks.best_prices(len(text.asks))),
                    )
                )
            else:
                out.append(
                    BookDelta(EXCHANGE, symbol, ts_us, local_ts_us, NO_ID, NO_ID, NO_ID, tuple(bids), tuple(asks))
                )
        return out
