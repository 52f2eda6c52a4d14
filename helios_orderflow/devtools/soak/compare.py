"""The recording against what the soak's exchange produced: books exact at every recorded update id, and
every diff or trade the recording lacks inside a declared gap (``FeedGap``)."""

from __future__ import annotations

import array
import bisect
from pathlib import Path
from typing import Any

from helios_orderflow.devtools.soak.sent_log import DIGEST_LEVELS, book_digest, load_sent

#: The reason of the gap the feed records when a pair leaves its pairs (live/runner.py).
LEFT_REASON = "left the feed's pairs"


def compare_recording(rec_root: Path, sent_path: Path, symbols: list[str], final_books: dict[str, Any],
                      final_symbols: list[str] | None = None) -> dict[str, Any]:
    """The recording at ``rec_root`` against the exchange's sent log and its final books (see the package
    doc). ``symbols``: every pair the exchange ran (the sent log's order); ``final_symbols``: the pairs the
    feed followed at the end (default all), the only ones whose last book must equal the exchange's. A pair
    that left the feed has a declared gap ("left the feed's pairs") from then until it rejoined (or the end),
    so only its time in the feed counts. Counts, summed over symbols:

    - ``book_states_checked``/``wrong_books``: recorded book states compared with the exchange's digest
      at the same update id / those that differ; ``book_states_unverified``: states at an id the exchange
      logged no diff for (none expected);
    - ``lost_book_diffs``: exchange diffs whose ids the recording skipped with no FeedGap declared;
      ``diffs_in_declared_gaps``: those skipped inside declared gaps;
    - ``lost_trades`` / ``trades_in_declared_gaps`` / ``duplicate_trades`` likewise for trade ids;
    - ``declared_gaps``, ``longest_resync_s`` (a FeedGap to the pair's next book snapshot, local time),
      ``final_books_equal`` (pairs whose last recorded book equals the exchange's final one);
    - ``deltas_awaiting_snapshot``: deltas recorded after a declared gap that do not continue the book before
      it, before the next snapshot (not applied: a replay's engine waits for that snapshot);
    - ``gaps_pair_left`` / ``gaps_recording_paused``: declared gaps for a pair leaving the feed / for a
      full disk (their time to the next snapshot is not a resync: not in ``longest_resync_s``).
    """
    from helios_orderflow.book.sync import BookSync
    from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot, FeedGap, Trade
    from helios_orderflow.recording.reader import read_events
    from helios_orderflow.recording.recorder import PAUSE_GAP_REASON

    sent = load_sent(sent_path, len(symbols))
    totals = {"book_states_checked": 0, "wrong_books": 0, "book_states_unverified": 0, "lost_book_diffs": 0,
              "diffs_in_declared_gaps": 0, "lost_trades": 0, "trades_in_declared_gaps": 0, "duplicate_trades": 0,
              "trades_checked": 0, "declared_gaps": 0, "final_books_equal": 0, "undeclared_resyncs": 0,
              "book_sync_failures": 0, "gaps_pair_left": 0, "deltas_awaiting_snapshot": 0,
              "gaps_recording_paused": 0}
    resyncs: list[float] = []
    first_problem: list[str] = []

    def problem(text: str) -> None:
        if len(first_problem) < 10:
            first_problem.append(text)

    for i, sym in enumerate(symbols):
        _, lasts, digests = sent[i]
        by_last = {u: k for k, u in enumerate(lasts)}

        def diffs_between(lo: int, hi: int, _lasts: array.array[int] = lasts) -> int:
            """Exchange diffs with an id in (lo, hi]."""
            return bisect.bisect_right(_lasts, hi) - bisect.bisect_right(_lasts, lo)

        sync = BookSync()
        covered = -1  # the last update id the recording's book chain covers
        gap_open = False  # a FeedGap since the last book event
        gap_since_trade = False
        gap_at_us = 0
        gap_is_resync = True  # the open gap is the feed's (a resync), not the pair leaving or a full disk
        last_trade = -1
        for ev in read_events(rec_root, exchange="binance", symbol=sym):
            if isinstance(ev, FeedGap):
                totals["declared_gaps"] += 1
                if ev.reason == LEFT_REASON:
                    totals["gaps_pair_left"] += 1
                elif ev.reason.startswith(PAUSE_GAP_REASON):
                    totals["gaps_recording_paused"] += 1
                if not gap_open:
                    gap_at_us = ev.local_ts_us
                    gap_is_resync = True
                if ev.reason == LEFT_REASON or ev.reason.startswith(PAUSE_GAP_REASON):
                    gap_is_resync = False
                gap_open = gap_since_trade = True
                continue
            if isinstance(ev, Trade):
                tid = int(ev.trade_id)
                totals["trades_checked"] += 1
                if last_trade >= 0:
                    if tid <= last_trade:
                        totals["duplicate_trades"] += 1
                        problem(f"{sym}: trade {tid} after {last_trade}")
                        continue
                    missing = tid - last_trade - 1
                    if missing:
                        if gap_since_trade:
                            totals["trades_in_declared_gaps"] += missing
                        else:
                            totals["lost_trades"] += missing
                            problem(f"{sym}: trades {last_trade + 1}..{tid - 1} missing, no gap declared")
                last_trade = tid
                gap_since_trade = False
                continue
            if isinstance(ev, BookSnapshot):
                if covered >= 0:
                    skipped = diffs_between(covered, ev.update_id)
                    if gap_open:
                        totals["diffs_in_declared_gaps"] += skipped
                        if gap_is_resync:
                            resyncs.append((ev.local_ts_us - gap_at_us) / 1e6)
                    else:
                        totals["undeclared_resyncs"] += 1
                        totals["lost_book_diffs"] += skipped
                        problem(f"{sym}: snapshot at {ev.update_id} after {covered} without a declared gap")
                sync.on_snapshot(ev)
                covered = ev.update_id
                gap_open = False
            elif isinstance(ev, BookDelta):
                if gap_open and ev.first_update_id != covered + 1:
                    # After a declared gap the book is unknown until the next snapshot (the engine waits for
                    # one): a delta recorded there, e.g. one queued while the disk was full and written once
                    # it had room again, before the feed's resume snapshot, belongs to no chain.
                    totals["deltas_awaiting_snapshot"] += 1
                    continue
                if ev.update_id == NO_ID:
                    totals["book_states_unverified"] += 1
                    problem(f"{sym}: a delta without update ids")
                elif ev.first_update_id != covered + 1 and not gap_open:
                    totals["lost_book_diffs"] += diffs_between(covered, ev.first_update_id - 1)
                    problem(f"{sym}: delta {ev.first_update_id}..{ev.update_id} after {covered}")
                if sync.on_delta(ev).value != "applied":
                    totals["book_sync_failures"] += 1
                    problem(f"{sym}: delta {ev.first_update_id}..{ev.update_id} not applied ({sync.last_gap})")
                    continue
                if ev.update_id != NO_ID:
                    covered = ev.update_id
            else:  # best bid/offer: not part of the book chain
                continue
            k = by_last.get(sync.book.update_id)
            if k is None:
                totals["book_states_unverified"] += 1
                continue
            bids, asks = sync.book.top(DIGEST_LEVELS)
            totals["book_states_checked"] += 1
            if book_digest(bids, asks) != digests[k]:
                totals["wrong_books"] += 1
                problem(f"{sym}: book at update id {sync.book.update_id} differs from the exchange's")
        final = final_books[sym]
        if final_symbols is not None and sym not in final_symbols:
            # out of the feed at the end: its recording ends with the declared gap of its leaving
            if last_trade >= 0 and final["last_trade_id"] > last_trade:
                totals["trades_in_declared_gaps" if gap_since_trade else "lost_trades"] += \
                    final["last_trade_id"] - last_trade
            if not gap_open:
                problem(f"{sym}: left the feed but its recording ends without a declared gap")
            continue
        tail = final["last_trade_id"] - last_trade
        if last_trade >= 0 and tail > 0:
            if gap_since_trade:
                totals["trades_in_declared_gaps"] += tail
            else:
                totals["lost_trades"] += tail
                problem(f"{sym}: the last {tail} trades (to {final['last_trade_id']}) were not recorded")
        if covered == final["last_update_id"] and sync.in_sync:
            bids, asks = sync.book.top(DIGEST_LEVELS)
            if book_digest(bids, asks) == final["digest"]:
                totals["final_books_equal"] += 1
            else:
                problem(f"{sym}: the final book differs from the exchange's")
        else:
            problem(f"{sym}: the recording ends at update id {covered}, the exchange at {final['last_update_id']}")
    resyncs.sort()
    return {
        **totals,
        "longest_resync_s": round(resyncs[-1], 3) if resyncs else 0.0,
        "median_resync_s": round(resyncs[len(resyncs) // 2], 3) if resyncs else 0.0,
        "resyncs_measured": len(resyncs),
        "problems": first_problem,
    }
