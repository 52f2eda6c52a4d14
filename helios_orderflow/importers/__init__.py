"""Importers: third-party data formats turned into Helios events at the edge.

Each format is one module with ``iter_events(paths, *, progress=None, stats=None, **options)`` that yields
events in the order they were received (local time). ``FORMATS`` maps the ``--format`` names of
``helios import`` to those modules.

May import: core, book, recording.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helios_orderflow.core.events import Event

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {
    "binance-raw": "helios_orderflow.importers.binance_raw",
    "cryptofeed": "helios_orderflow.importers.cryptofeed",
    "freqtrade-trades": "helios_orderflow.importers.freqtrade_trades",
    "tardis": "helios_orderflow.importers.tardis",
}


@dataclass
class ImportStats:
    """What an import read and what it skipped. Skips are counted per reason and warned about once
    per reason with the first file and line, so a bad input never passes silently."""

    lines: int = 0
    events: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    first_skip: dict[str, str] = field(default_factory=dict)
    checksums_verified: int = 0

    def skip(self, reason: str, where: str) -> None:
        n = self.skipped.get(reason, 0)
        if n == 0:
            self.first_skip[reason] = where
            log.warning("skipping %s at %s (further ones are counted, not shown)", reason, where)
        self.skipped[reason] = n + 1

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


IterEvents = Callable[..., Iterator[Event]]


def get_importer(fmt: str) -> IterEvents:
    from helios_orderflow.core.errors import HeliosError

    if fmt not in FORMATS:
        raise HeliosError(f"unknown import format {fmt!r}; choose one of {', '.join(FORMATS)}")
    module = importlib.import_module(FORMATS[fmt])
    iter_events: IterEvents = module.iter_events
    return iter_events


def iter_import(fmt: str, paths: Sequence[Path], **options: Any) -> Iterator[Event]:
    return get_importer(fmt)(paths, **options)
