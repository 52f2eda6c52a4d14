"""The normalized events every driver produces and the engine consumes.

Every source (a live ccxt feed, a Helios recording, the Binance/cryptofeed/tardis importers, the local
exchange) is turned into these few immutable records at its edge; nothing downstream knows where an
event came from.

Units and conventions:
- ``ts_us``: the venue's event timestamp, integer microseconds since the Unix epoch (UTC). Where the
  venue sends none (Binance spot ``bookTicker``), it is the local receive time.
- ``local_ts_us``: when our process received the message, integer microseconds. Monotonic within a
  recording; the order in which events are replayed.
- ``price`` in quote currency, ``amount`` in base currency (contracts for inverse futures), as floats
  parsed from the venue's decimal strings: the same string always gives the same float, so books
  rebuilt from the same data compare exactly.
- Book level changes carry the **absolute** size at that price; 0 removes the level.
- Update ids are the venue's (Binance ``U``/``u``/``pu``, snapshot ``lastUpdateId``); -1 where the venue
  has none.
- ``symbol`` is ccxt's unified symbol: ``BTC/USDT`` (spot), ``BTC/USDT:USDT`` (linear perpetual),
  ``BTC/USD:BTC`` (inverse perpetual), ``BTC/USD:BTC-211231`` (dated future).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TakerSide = Literal["buy", "sell"]
Level = tuple[float, float]  # (price, amount)
Levels = tuple[Level, ...]

NO_ID = -1


@dataclass(slots=True, frozen=True)
class BookSnapshot:
    """The full visible book at ``update_id`` (Binance REST ``lastUpdateId``). Replaces the book."""

    exchange: str
    symbol: str
    ts_us: int
    local_ts_us: int
    update_id: int
    bids: Levels  # best first
    asks: Levels  # best first


@dataclass(slots=True, frozen=True)
class BookDelta:
    """One venue message of level changes (absolute sizes, 0 = remove).

    ``first_update_id``/``update_id`` are Binance's ``U``/``u``; ``prev_update_id`` is futures' ``pu``
    (-1 on spot). A delta with no ids is applied in arrival order with no sequence check.
    """

    exchange: str
    symbol: str
    ts_us: int
    local_ts_us: int
    first_update_id: int
    update_id: int
    prev_update_id: int
    bids: Levels
    asks: Levels


@dataclass(slots=True, frozen=True)
class Trade:
    """One trade; ``side`` is the taker's side (buy = aggressive buyer lifted the ask)."""

    exchange: str
    symbol: str
    ts_us: int
    local_ts_us: int
    price: float
    amount: float
    side: TakerSide
    trade_id: str


@dataclass(slots=True, frozen=True)
class BestBidOffer:
    """The venue's own best bid and offer (Binance ``bookTicker``), used to check rebuilt books."""

    exchange: str
    symbol: str
    ts_us: int
    local_ts_us: int
    update_id: int
    bid_price: float
    bid_amount: float
    ask_price: float
    ask_amount: float


@dataclass(slots=True, frozen=True)
class FeedGap:
    """A declared hole in the data: the feed knows events were lost between the two times.

    The live feed writes one on reconnect or resync so a recording says where it is incomplete.
    """

    exchange: str
    symbol: str
    ts_us: int
    local_ts_us: int
    reason: str


Event = BookSnapshot | BookDelta | Trade | BestBidOffer | FeedGap
