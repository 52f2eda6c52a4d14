"""Python's cyclic garbage collector, paced by the feed so that a bot's memory stays flat for months.

Why: Freqtrade raises the collector's thresholds at start (``freqtrade.system.gc_set_threshold``: 50,000
allocations before a young collection, then 500 young collections before a middle one, 1,000 middle ones
before a full one) to spend less time collecting. In a Freqtrade process that also runs the live feed, a
young collection then comes about every two minutes, a middle one every ~17 hours, and a full one never.
Reference cycles the feed's libraries make all the time (an asyncio future that failed keeps its exception,
whose traceback's frames keep the future and whatever the frames were parsing: ccxt order books among them)
survive the young collection when they are still reachable at that moment, and then wait in the middle
generation for hours, or forever once they reach the oldest one. Measured in the soak with the bot
(docs/reliability.md, run C): the bot's RSS rose 1.4 MB a minute, made of ccxt ``[price, amount]`` level lists
kept with frames and tracebacks, while the feed process (the same code under the collector's default
thresholds) stayed flat.

The feed therefore collects the young and middle generations itself every ``feed.gc_every_s`` seconds and the
whole heap every ``feed.gc_full_every``-th time. Freqtrade's thresholds stay as they are (its own trading
loop keeps the cheaper young collections); this only bounds how long garbage can wait. A collection holds
the GIL: the middle one costs about what the young generations hold (milliseconds), a full one about a
microsecond per tracked object (the pause is measured and kept in ``GcPacer.last_pause_s``/``max_pause_s``).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class GcPacer:
    """Which generation to collect at each of the feed's timer ticks, and the collection itself.

    ``collect`` is ``gc.collect`` unless a test passes its own; ``timer`` times the pause (a performance
    counter, not the market's clock: the engine never sees it)."""

    def __init__(self, full_every: int, collect: Callable[[int], int] = gc.collect,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        if full_every < 1:
            raise ValueError(f"full_every must be >= 1, got {full_every}")
        self.full_every = full_every
        self._collect = collect
        self._timer = timer
        self.ticks = 0
        self.full_collections = 0
        self.freed = 0  # unreachable objects found, all collections
        self.last_pause_s = 0.0
        self.max_pause_s = 0.0

    def generation(self) -> int:
        """The generation the next tick collects: 2 (everything) on every ``full_every``-th tick, else 1."""
        return 2 if (self.ticks + 1) % self.full_every == 0 else 1

    def tick(self) -> int:
        """Collect the generation ``generation()`` names; returns the number of unreachable objects found."""
        generation = self.generation()
        t0 = self._timer()
        found = self._collect(generation)
        pause = self._timer() - t0
        self.ticks += 1
        self.full_collections += generation == 2
        self.freed += found
        self.last_pause_s = pause
        self.max_pause_s = max(self.max_pause_s, pause)
        log.debug("gc: generation %d collected, %d unreachable, %.1f ms", generation, found, pause * 1e3)
        return found
