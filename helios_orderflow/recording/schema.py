"""The Helios recording format (version 1), declared once: tables, columns, units, partitioning.

A recording is a directory ``ROOT`` holding one hive-partitioned Parquet dataset per table::

    ROOT/<table>/exchange=<ccxt id>/symbol=<symbol_to_path(symbol)>/date=YYYY-MM-DD/<file>.parquet
    ROOT/_runs/<run id>.json        one small commit record per writer run (see writer.py)

``table`` is ``book``, ``trades``, ``bbo`` or ``gaps``; ``date`` is the UTC date of ``local_timestamp``.
Files hold no exchange/symbol columns (the partition path names them); their Parquet key-value metadata
repeats them (``helios.*`` keys below). Columns follow tardis.dev's ``incremental_book_L2``, ``trades`` and
``quotes`` CSV where they overlap (same names, same units: integer microseconds since the Unix epoch, UTC).
See docs/recording.md for the full description.
"""

from __future__ import annotations

import datetime as _dt

import pyarrow as pa

from helios_orderflow.core.symbols import symbol_to_path
from helios_orderflow.recording.store import Location

FORMAT_VERSION = 1

# ---- columns ------------------------------------------------------------------------------------------
# Shared by every table: the order key. ``seq`` is assigned by the writer, one counter per writer run
# across all tables and symbols, in write (= receive) order; (local_timestamp, seq) orders a run exactly.
_TIME = [
    pa.field("timestamp", pa.int64(), nullable=False),  # venue event time, µs since epoch (UTC)
    pa.field("local_timestamp", pa.int64(), nullable=False),  # our receive time, µs since epoch (UTC)
    pa.field("seq", pa.int64(), nullable=False),  # write order within the writer run, from 0
]

#: One row per level change, like tardis incremental_book_L2. Rows of one venue message are consecutive
#: and share ``seq`` (bids first, then asks, each in the message's order). A message with no level at all
#: is kept as one row with null side/price/amount so that its update ids survive.
BOOK_SCHEMA = pa.schema(
    [
        *_TIME,
        pa.field("is_snapshot", pa.bool_(), nullable=False),  # true: rows of a full book snapshot
        pa.field("side", pa.string()),  # 'bid' | 'ask'; null only for an empty message
        pa.field("price", pa.float64()),  # quote currency
        pa.field("amount", pa.float64()),  # absolute size at price, base currency (contracts); 0 = removed
        pa.field("update_id", pa.int64(), nullable=False),  # Binance u (snapshot: lastUpdateId); -1 = none
        pa.field("first_update_id", pa.int64(), nullable=False),  # Binance U; -1 = none (and on snapshots)
        pa.field("prev_update_id", pa.int64(), nullable=False),  # Binance futures pu; -1 = none
    ]
)

#: One row per trade, like tardis trades.
TRADES_SCHEMA = pa.schema(
    [
        *_TIME,
        pa.field("id", pa.string(), nullable=False),  # venue trade id
        pa.field("side", pa.string(), nullable=False),  # taker side: 'buy' | 'sell'
        pa.field("price", pa.float64(), nullable=False),  # quote currency
        pa.field("amount", pa.float64(), nullable=False),  # base currency (contracts)
    ]
)

#: The venue's own best bid/offer, like tardis quotes (plus the venue's update id).
BBO_SCHEMA = pa.schema(
    [
        *_TIME,
        pa.field("update_id", pa.int64(), nullable=False),  # Binance bookTicker u; -1 = none
        pa.field("bid_price", pa.float64(), nullable=False),  # quote currency
        pa.field("bid_amount", pa.float64(), nullable=False),  # base currency (contracts)
        pa.field("ask_price", pa.float64(), nullable=False),
        pa.field("ask_amount", pa.float64(), nullable=False),
    ]
)

#: Declared holes in the data (FeedGap): events were lost around this time.
GAPS_SCHEMA = pa.schema(
    [
        *_TIME,
        pa.field("reason", pa.string(), nullable=False),  # free text, e.g. 'reconnect', 'resync'
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "book": BOOK_SCHEMA,
    "trades": TRADES_SCHEMA,
    "bbo": BBO_SCHEMA,
    "gaps": GAPS_SCHEMA,
}
TABLES = tuple(SCHEMAS)
#: The tables whose presence makes a directory a recording (gaps alone are not market data).
DATA_TABLES = ("book", "trades", "bbo")

# ---- Parquet writing options ---------------------------------------------------------------------------
COMPRESSION = "zstd"
#: Low-cardinality string columns get Parquet dictionary encoding; numbers compress better plain + zstd.
DICTIONARY_COLUMNS: dict[str, list[str]] = {"book": ["side"], "trades": ["side"], "bbo": [], "gaps": ["reason"]}
#: Rows per Parquet row group. The reader decodes at most one row group's column chunks at a time, so
#: this bounds its memory (about 5 MB for book rows) independently of the file size.
ROW_GROUP_ROWS = 65_536

# ---- Parquet key-value metadata ------------------------------------------------------------------------
META_VERSION = b"helios.format_version"
META_TABLE = b"helios.table"
META_EXCHANGE = b"helios.exchange"
META_SYMBOL = b"helios.symbol"  # ccxt unified symbol, e.g. BTC/USDT:USDT
META_RUN = b"helios.run"  # id of the writer run that made the file (names ROOT/_runs/<id>.json)
#: Set on a file ``helios compact`` made: a JSON list of the segment file names whose rows it holds, in order
#: (the first is its own name). Readers skip a listed file of the same run that still exists (compact.py).
META_PARTS = b"helios.parts"
#: ``ROOT/.helios-maintenance.lock``: held (flock) by compaction and retention so they never work at once.
MAINTENANCE_LOCK = ".helios-maintenance.lock"

RUNS_DIR = "_runs"

# ---- partitioning --------------------------------------------------------------------------------------
US_PER_DAY = 86_400_000_000
_EPOCH = _dt.date(1970, 1, 1)


def day_of_us(ts_us: int) -> int:
    """Days since 1970-01-01 (UTC) of a µs timestamp."""
    return ts_us // US_PER_DAY


def date_of_day(day: int) -> str:
    """``YYYY-MM-DD`` of a day number from ``day_of_us``."""
    return (_EPOCH + _dt.timedelta(days=day)).isoformat()


def partition_dir(root: Location, table: str, exchange: str, symbol: str, date: str) -> Location:
    """``root/table/exchange=.../symbol=.../date=...`` for a unified ``symbol``."""
    return root / table / f"exchange={exchange}" / f"symbol={symbol_to_path(symbol)}" / f"date={date}"


def file_stem(first_local_ts_us: int, first_seq: int) -> str:
    """File name (without suffix) of a segment: sorts in time order, the same for the same input."""
    return f"{first_local_ts_us:016d}-{first_seq:012d}"


def file_metadata(table: str, exchange: str, symbol: str, run_id: str) -> dict[bytes, bytes]:
    """The ``helios.*`` Parquet key-value metadata of one file (no wall-clock time: imports are
    byte-for-byte reproducible)."""
    return {
        META_VERSION: str(FORMAT_VERSION).encode(),
        META_TABLE: table.encode(),
        META_EXCHANGE: exchange.encode(),
        META_SYMBOL: symbol.encode(),
        META_RUN: run_id.encode(),
    }
