"""Every fault of the local exchange, against the live feed with the real ccxt.pro binance client.

For each fault: the feed syncs, the fault starts (``after``), the test waits until the pair's health shows
it, then clears the fault and checks that (1) both pairs are healthy again within 2 s, (2) every book state
the feed published and recorded, before, during and after the fault, equals the exchange's own book at
that update id (top 100 levels, exact), (3) no gap is declared after the resync, and (4) nothing was
raised into the caller (no thread exception, no error logged by asyncio).

How each fault shows (ccxt's Binance client decides most of it):

- drop, reorder, gap: ccxt sees ``U != previous u + 1`` and raises: ``gaps`` and ``resyncs`` count it.
- stale (every snapshot older than the buffered diffs): the first live diff does not follow the stale
  snapshot: a gap; while every snapshot is stale the pair cannot resync and stays unhealthy.
- rest429 / rest5xx on every request: the resync's REST snapshot fails (after ccxt's own 3 retries):
  ``reconnects`` and ``last_error`` say 429 (DDoSProtection) / Binance -1001 (the 503 body).
- crossed: the exchange's own book is crossed for one diff: ``crossed_books`` counts it; unhealthy meanwhile.
- malformed: a truncated frame; ccxt would stall the connection silently, the feed's frame guard turns it
  into a reconnect: ``reconnects``, ``last_error`` "could not be handled".
- disconnect: ``reconnects``. noping: ccxt's keepalive (``ws_keepalive_s``) notices: ``reconnects``.
- dup: ccxt drops a diff it already applied (``u <= nonce``) without telling; the observable effect is
  none: the test shows the book stays exact and health clean.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from feed_fault_harness import FAULTS, check_fault, run_fault

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "checksum"])
def test_fault_is_detected_and_the_book_resyncs_within_2_s_after_it_clears(fault: str, tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture):
    thread_errors: list[BaseException] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: thread_errors.append(args.exc_value)
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            run = run_fault("binance", fault, tmp_path)
    finally:
        threading.excepthook = previous_hook
    try:
        escaped = thread_errors or caplog.records
        assert not escaped, f"something escaped: {escaped!r}"
        check_fault(run)
    finally:
        run.exchange.stop()
