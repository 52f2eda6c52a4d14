"""The soak: the whole live pipeline against the local exchange for N minutes, under faults, measured.

``python -m helios_orderflow.devtools.soak --minutes N [--pairs 10] [--rate-x 10] [--no-with-freqtrade]``
(``make soak``):

- **Exchange** (a child process, so its CPU and memory are measured apart): the synthetic market for
  ``--pairs`` symbols at ``--rate-x`` times Binance's message rate. Binance sends one ``@depth@100ms`` diff
  per symbol per 100 ms; the soak's exchange closes a diff every ``100 ms / rate_x`` and runs the order-book
  model's limit, cancel and market-order intensities ``rate_x`` times faster, so each diff carries about
  the changes of a normal one and trades, best bid/offer and diffs all arrive ``rate_x`` times as often.
  Faults follow a fixed **schedule** (``SCHEDULE``): one fault kind at a time for a few seconds, then a
  quiet spell, cycling through every fault of ``emulator/faults.py``. At the end (faults off, every pair
  healthy again) the market freezes, so the last book and trade are known. The child logs what it produced
  (every diff's update ids and a digest of the top ``DIGEST_LEVELS`` levels of its book after that diff),
  each fault window (times, faults fired) and, when the market is frozen at the end, its final books and
  trade ids.
- **Helios** (this process): ``Feed`` (the live thread, real ``ccxt.pro.binance``), one ``PairEngine`` per
  pair, and the recorder, exactly as in Freqtrade.
- **The bot** (default; ``--no-with-freqtrade`` leaves it out): a Freqtrade dry-run (``HeliosStrategy``)
  against the same exchange as a third process, its whitelist a ``RemotePairList`` file the soak rewrites
  (pairs join and leave) and its recording on a small tmpfs the soak fills for a while (``bot``). Its
  recording is compared with what the exchange sent as the feed's is (``bot_*``: only a pair's time in the
  whitelist counts; its leaving and the disk-full pause are declared gaps), and its RSS, the whitelist
  changes' delay and the recording's pause and resume are judged too.

Report (``name: value`` lines and ``soak.json``): events processed; faults injected, detected and recovered
(per window: the feed's health showed it; every pair was healthy again, timed from the window's end, and
``unrecovered`` when some pair never was again before the run ended);
the longest time to resync (declared gap to the next book snapshot, from the recording) and the longest
recovery after a fault window ended (to all pairs healthy); RSS after warm-up and at the end (peaks of the
first and last two recording segments: the open segments make RSS a sawtooth); CPU of
Helios and of the exchange; bytes recorded; and **events lost**: the recording compared with what the
exchange produced. The book: every recorded book state must equal the exchange's book at that update id
(top ``DIGEST_LEVELS`` levels, exact), and every update id range the recording does not cover must lie in
a declared gap (a ``FeedGap`` row between the two book events around it). Trades: every trade id the
exchange published after the first recorded one must be recorded, unless a ``FeedGap`` lies between the
recorded trades around it. ``lost_*`` counts what fails that: it must be 0.

Settings: the feed's defaults except a 5 s websocket keepalive (so a dead link is noticed within a fault
window) and a 60 s heatmap window (see ``run_soak``); recording flushes every 5 s in 60 s segments.

Pass criteria (``passed``): RSS growth after warm-up under 5 %, no unrecovered fault window, no fault
window (of a kind that disturbs the stream) that went unnoticed, nothing lost outside declared gaps,
no trade recorded twice and none that the feed had to drop as delivered twice, no wrong book, and every
window recovered within ``RECOVERY_LIMIT_S`` of its end (``--recovery-limit-s``): a pair stays unhealthy at
most its fault window plus that long. ``unhealthy_share_pct`` (pair-time with entries blocked, after the
warm-up) is reported, not judged: it follows the schedule's mix of faults. The report names every rule
that failed (``failed``) and the load it ran at (CPU of both processes, load average), so a run on a busy
machine says which limit the load broke.

Modules: ``schedule`` (pairs, rates, the fault schedule), ``exchange_child`` (the exchange process),
``sent_log`` (its sent log and the book digest), ``run`` (``run_soak``: the orchestration), ``watch`` (RSS,
CPU and the feed's health around each fault window), ``compare`` (the recording against the sent log),
``report`` (the report and the pass rule), ``dryrun`` (the Freqtrade process), ``bot`` (the whitelist
schedule, the disk window, what the bot's log shows), ``cli`` (the command line).
"""

from helios_orderflow.devtools.soak.cli import main
from helios_orderflow.devtools.soak.compare import compare_recording
from helios_orderflow.devtools.soak.report import (
    RECOVERY_LIMIT_S,
    RSS_GROWTH_LIMIT,
    Measurements,
    build_report,
    pass_rule_failures,
    print_report,
)
from helios_orderflow.devtools.soak.run import run_soak
from helios_orderflow.devtools.soak.schedule import BINANCE_DIFF_US, PAIRS, QUIET_S, SCHEDULE, FaultWindow, schedule
from helios_orderflow.devtools.soak.sent_log import DIGEST_LEVELS, book_digest, load_sent
from helios_orderflow.devtools.soak.watch import HealthWatcher, WindowResult, cpu_seconds, load_average, rss_bytes

__all__ = [
    "BINANCE_DIFF_US", "DIGEST_LEVELS", "PAIRS", "QUIET_S", "RECOVERY_LIMIT_S", "RSS_GROWTH_LIMIT", "SCHEDULE",
    "FaultWindow", "HealthWatcher", "Measurements", "WindowResult", "book_digest", "build_report",
    "compare_recording", "cpu_seconds", "load_average", "load_sent", "main", "pass_rule_failures", "print_report",
    "rss_bytes", "run_soak", "schedule",
]
