"""Importer for raw Binance captures: one message per line, ``<local receive time, ns> <raw JSON>``.

This is the format of ``../shared/data/binance-spot-btcusdt`` (hftbacktest's collector): combined-stream
websocket messages (``{"stream": ..., "data": ...}``: depth diffs, trade, aggTrade, bookTicker) and REST
depth snapshots (``{"lastUpdateId", "bids", "asks"}``, which name no symbol), gzip or plain. Spot and
USD-M/COIN-M futures are both accepted; message meaning is defined once in ``binance_messages``.

Rules and caveats:
- One symbol per import. Several files are one continuous stream, in the order given; a file whose first
  line is older than the previous file's last line is refused (pass the files in time order).
- The exchange is ``--exchange`` when given, else read off the data: futures depth diffs carry ``pu``
  (``binanceusdm``; ``binancecoinm`` when the symbol has a ``_PERP``/delivery suffix), otherwise ``binance``.
- A REST snapshot takes its symbol from the stream (the capture's other lines), or ``--symbol``.
- ``local_ts_us`` = the line's nanoseconds // 1000. Binance spot bookTicker has no timestamp: its
  ``ts_us`` is the local receive time (the collector's clock may differ from the exchange's: in the
  shared BTCUSDT capture it ran about 1.27 s behind).
- Bad lines (not ``<int> <json>``, unknown or malformed messages, a receive time older than the previous
  line's) are skipped, counted in ``ImportStats`` and warned about once per kind with file and line;
  the book's sequence check then reports any diff lost that way as a gap. A second symbol in the stream,
  a truncated gzip or files out of order stop the import with an ``InputError`` naming file and line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import InputError
from helios_orderflow.core.events import BookSnapshot, Event
from helios_orderflow.core.symbols import binance_unified
from helios_orderflow.importers.binance_messages import BinanceMessageError, parse_binance_message
from helios_orderflow.importers.source import iter_lines

from . import ImportStats

_DETECT_LINES = 5000


def _split(line: str) -> tuple[int, dict[str, Any]]:
    ts_text, sep, raw = line.partition(" ")
    if not sep:
        raise ValueError("expected '<local time ns> <json>'")
    msg = json.loads(raw)
    if not isinstance(msg, dict):
        raise ValueError("the JSON is not an object")
    return int(ts_text), msg


def _payload(msg: dict[str, Any]) -> dict[str, Any]:
    data = msg.get("data", msg)
    return data if isinstance(data, dict) else {}


def detect(path: Path) -> tuple[str | None, str | None]:
    """(exchange, wire symbol) read off the first lines of ``path``; None where the lines do not say."""
    exchange = symbol = None
    for lineno, line in iter_lines(path, progress=False):
        if lineno > _DETECT_LINES:
            break
        try:
            _, msg = _split(line)
        except ValueError:
            continue
        d = _payload(msg)
        if symbol is None and isinstance(d.get("s"), str):
            symbol = d["s"].upper()
        if d.get("e") == "depthUpdate":
            if "pu" in d:
                exchange = "binancecoinm" if "_" in str(d.get("s", "")) else "binanceusdm"
            else:
                exchange = "binance"
        if exchange and symbol:
            break
    return exchange, symbol


def iter_events(
    paths: Sequence[Path | str],
    *,
    progress: bool | None = None,
    stats: ImportStats | None = None,
    exchange: str | None = None,
    symbol: str | None = None,
) -> Iterator[Event]:
    """Events of one symbol from raw Binance capture files, in receive order (see module docstring)."""
    stats = stats if stats is not None else ImportStats()
    files = [Path(p) for p in paths]
    if not files:
        return
    detected_exchange, wire = detect(files[0])
    exchange = exchange or detected_exchange or "binance"
    unified = symbol or (binance_unified(wire, exchange) if wire else None)
    wire_of_unified = wire
    last_ts = -1
    last_where = ""
    for path in files:
        first_line = True
        for lineno, line in iter_lines(path, progress=progress):
            stats.lines += 1
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                ts_ns, msg = _split(line)
            except ValueError as exc:
                stats.skip(f"malformed line ({exc})", where)
                continue
            local_ts_us = ts_ns // 1000
            if local_ts_us < last_ts:
                if first_line:
                    raise InputError(
                        str(path),
                        lineno,
                        f"starts at local time {local_ts_us} us, before the end of {last_where} ({last_ts} us)",
                        "pass the files of one capture in time order",
                    )
                stats.skip("line older than the line before it", where)
                continue
            first_line = False
            last_ts, last_where = local_ts_us, where
            try:
                events = parse_binance_message(
                    msg,
                    exchange=exchange,
                    local_ts_us=local_ts_us,
                    symbol_map={wire_of_unified: unified} if (wire_of_unified and unified) else None,
                    snapshot_symbol=wire_of_unified,
                    stats=stats,
                    where=where,
                )
            except BinanceMessageError as exc:
                stats.skip(f"bad Binance message ({exc})", where)
                continue
            for ev in events:
                if unified is None:
                    unified = ev.symbol
                if ev.symbol != unified:
                    if isinstance(ev, BookSnapshot) and symbol is None and wire_of_unified is None:
                        ev = dataclasses.replace(ev, symbol=unified)
                    else:
                        raise InputError(
                            str(path),
                            lineno,
                            f"message for {ev.symbol} in a capture of {unified}",
                            "binance-raw imports one symbol at a time; split the capture by symbol",
                        )
                stats.events += 1
                yield ev
