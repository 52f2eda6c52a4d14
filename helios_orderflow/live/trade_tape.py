"""TradeTape: one pair's recent trades, kept by the feed thread for Freqtrade-style order-flow columns, read by
any thread without waiting.

The feed thread appends every trade it emits (``append``, a list append). Trades are kept in chunks of one
candle (``chunk_us``, the strategy's timeframe): the chunk being filled is a plain list of ``Trade`` events; when
a trade of a later candle arrives it is frozen into NumPy arrays (about a microsecond per trade, once per
candle) and chunks that ended more than ``keep_us`` ago are dropped, so memory is bounded by the trades of
``keep_us`` (about 90 bytes per trade: times, prices, amounts, sides and the ids as strings).

Readers (``trades_since``) take the published ``(frozen chunks, open list)`` pair in one reference read and copy
the open list with one slice: under CPython's GIL both are atomic, so a reader sees every trade appended before
its read exactly once, never half a chunk, and never takes a lock the feed thread could wait on. The frozen
chunks are never changed after publication.

Times: trades carry exchange time in µs; Freqtrade's trades format has milliseconds (floored, as
``features.export_trades`` does). ``newest_ts_us`` is the exchange time of the newest trade appended: a candle
whose close is at or before it has all its trades (barring a venue delivering trades out of order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from helios_orderflow.core.events import Trade


@dataclass(frozen=True, slots=True)
class TapeChunk:
    """Frozen trades of one candle (or part of one), in arrival order."""

    first_open_us: int  # open time of the candle of the chunk's first trade (epoch µs)
    first_ts_us: int  # the earliest exchange time in the chunk (µs)
    last_ts_us: int  # the latest exchange time in the chunk (µs)
    ts_us: npt.NDArray[np.int64]
    price: npt.NDArray[np.float64]
    amount: npt.NDArray[np.float64]
    is_buy: npt.NDArray[np.bool_]
    trade_id: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.ts_us)


@dataclass(frozen=True, slots=True)
class TapeTrades:
    """Trades read from a tape, as arrays in arrival order (exchange time µs, price, base amount, taker side,
    id as given by the venue, "" when none)."""

    ts_us: npt.NDArray[np.int64]
    price: npt.NDArray[np.float64]
    amount: npt.NDArray[np.float64]
    is_buy: npt.NDArray[np.bool_]
    trade_id: npt.NDArray[np.object_]
    newest_ts_us: int  # the newest trade appended to the tape at the read (-1: none yet)

    def __len__(self) -> int:
        return len(self.ts_us)


def _freeze(trades: list[Trade], chunk_us: int) -> TapeChunk:
    n = len(trades)
    ts_us = np.fromiter((t.ts_us for t in trades), np.int64, n)
    return TapeChunk(
        first_open_us=trades[0].ts_us // chunk_us * chunk_us,
        first_ts_us=int(ts_us.min()),
        last_ts_us=int(ts_us.max()),
        ts_us=ts_us,
        price=np.fromiter((t.price for t in trades), np.float64, n),
        amount=np.fromiter((t.amount for t in trades), np.float64, n),
        is_buy=np.fromiter((t.side == "buy" for t in trades), bool, n),
        trade_id=np.array([t.trade_id for t in trades], dtype=object),
    )


class TradeTape:
    """The recent trades of one pair (module docstring). ``keep_us``: how far back to keep (µs of exchange
    time before the newest trade); ``chunk_us``: the candle length the chunks follow."""

    def __init__(self, keep_us: int, chunk_us: int) -> None:
        if keep_us <= 0 or chunk_us <= 0:
            raise ValueError(f"a trade tape needs keep_us > 0 and chunk_us > 0, got {keep_us} and {chunk_us}")
        self.keep_us = keep_us
        self.chunk_us = chunk_us
        #: (frozen chunks oldest first, the open chunk): replaced whole, the open list appended in place
        self._published: tuple[tuple[TapeChunk, ...], list[Trade]] = ((), [])
        self._open_us = -1  # the candle the open chunk's trades belong to
        self.newest_ts_us = -1

    # ---- the feed thread --------------------------------------------------------------------------------------

    def append(self, trade: Trade) -> None:
        """Keep ``trade`` (feed thread only)."""
        open_us = trade.ts_us // self.chunk_us * self.chunk_us
        chunks, current = self._published
        if open_us > self._open_us and current:
            frozen = (*chunks, _freeze(current, self.chunk_us))
            # A chunk is dropped once its latest trade is older than keep_us (plus a candle: the candle a
            # reader's window starts in is kept whole).
            horizon = max(self.newest_ts_us, trade.ts_us) - self.keep_us - self.chunk_us
            first_kept = 0
            while first_kept < len(frozen) and frozen[first_kept].last_ts_us < horizon:
                first_kept += 1
            frozen = frozen[first_kept:]
            current = []
            self._published = (frozen, current)
        if open_us > self._open_us:
            self._open_us = open_us
        current.append(trade)
        if trade.ts_us > self.newest_ts_us:
            self.newest_ts_us = trade.ts_us

    # ---- any thread ---------------------------------------------------------------------------------------------

    def trades_since(self, start_us: int) -> TapeTrades:
        """The kept trades of every chunk that may hold a trade at or after ``start_us`` (exchange time, µs;
        whole chunks: a few earlier trades may come along), in arrival order. Never waits."""
        newest = self.newest_ts_us  # read first: every trade counted in it is in what is read next
        chunks, current = self._published
        open_part = current[:]
        parts = [c for c in chunks if c.last_ts_us >= start_us]
        if open_part:
            parts.append(_freeze(open_part, self.chunk_us))
        if not parts:
            return TapeTrades(np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0, bool),
                              np.empty(0, object), newest)
        return TapeTrades(
            np.concatenate([c.ts_us for c in parts]), np.concatenate([c.price for c in parts]),
            np.concatenate([c.amount for c in parts]), np.concatenate([c.is_buy for c in parts]),
            np.concatenate([c.trade_id for c in parts]), newest)

    def oldest_ts_us(self) -> int:
        """The exchange time of the oldest trade kept (µs); -1 before the first trade. Candles that closed at or
        before it have no trade here (the feed had not started, or they were dropped)."""
        chunks, current = self._published
        if chunks:
            return chunks[0].first_ts_us
        open_part = current[:]
        return min(t.ts_us for t in open_part) if open_part else -1

    def __len__(self) -> int:
        chunks, current = self._published
        return sum(len(c) for c in chunks) + len(current)


__all__ = ["TapeChunk", "TapeTrades", "TradeTape"]
