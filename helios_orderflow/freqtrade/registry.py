"""What runs in live and dry-run: the process-wide registry of feeds (and the page beside them).

It lives in its own module, not in strategy.py: Freqtrade's hyperopt pickles the strategy's module by value,
and a lock or a thread among its globals would make the strategy unpicklable. Every feed is stopped at
interpreter exit (recordings flushed).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class LiveHandle:
    """A running feed (and dashboard) shared by every strategy instance of this process with the same key."""

    feed: Any
    dashboard: Any = None

    def stop(self) -> None:
        if self.dashboard is not None:
            stop = getattr(self.dashboard, "stop", None)
            if callable(stop):
                try:
                    stop()
                except Exception as exc:  # shutting down: report, never raise
                    log.warning("helios: stopping the dashboard failed: %s", exc)
        self.feed.stop()
        events, written = self.feed.recording_stats()
        log.info("helios: live order-flow feed stopped (%d events, %d bytes recorded to %s)", events, written,
                 self.feed.record_to or "nowhere")


class LiveRegistry:
    """Feeds by key (exchange, recording, timeframe, trades kept; not the pairs: a feed follows the whitelist):
    ``bot_start`` may run many times (FreqUI chart requests), a feed starts once. Thread-safe; every feed is
    stopped at interpreter exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[tuple[Any, ...], LiveHandle] = {}

    def ensure(self, key: tuple[Any, ...], make: Callable[[], LiveHandle]) -> tuple[LiveHandle, bool]:
        """(the handle for ``key``, True when this call started its feed)."""
        with self._lock:
            handle = self._handles.get(key)
            if handle is not None and handle.feed.running:
                return handle, False
            if handle is None:
                handle = self._handles[key] = make()
            handle.feed.start()
            return handle, True

    def get(self, key: tuple[Any, ...]) -> LiveHandle | None:
        return self._handles.get(key)

    def stop(self, key: tuple[Any, ...]) -> None:
        with self._lock:
            handle = self._handles.pop(key, None)
        if handle is not None:
            handle.stop()

    def stop_all(self) -> None:
        """Stop every feed and dashboard (flushes recordings). Idempotent."""
        with self._lock:
            handles = list(self._handles.values())
            self._handles.clear()
        for h in handles:
            h.stop()


LIVE = LiveRegistry()
atexit.register(LIVE.stop_all)
