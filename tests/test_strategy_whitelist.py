"""A real ``freqtrade trade --dry-run`` with a dynamic pairlist: Helios's feed follows the whitelist.

The pairlist is Freqtrade's own ``RemotePairList`` reading a local file (``file:///``) every 5 s; the test
rewrites the file, so the whitelist changes while the bot runs, as a ``VolumePairList`` refresh would change it.
The pair that joins gets its book and trades within 10 s, the pair that leaves has its book unsubscribed at the
exchange and a declared end in the recording, and the pair that stays shows no gap and no resync.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from helios_orderflow.core.events import BookSnapshot, FeedGap
from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.recording.reader import read_events
from tests.venue_dry_run import freqtrade_dry_run, ran_without_errors, strategy_userdir
from tests.waits import process_exited, wait_for

ROOT = Path(__file__).resolve().parent.parent
STAYS, LEAVES, JOINS = "BTC/USDT", "ETH/USDT", "SOL/USDT"
#: Freqtrade start-up (imports, markets, 300 candles per pair) on a busy machine; the bot's loop is 5 s
START_S = 240.0
#: the pairlist is read every 5 s and the bot loops every 5 s; then the feed has 10 s to bring the pair up
CHANGE_S = 120.0


def _wait(cond: Any, timeout_s: float, what: str, log: Path, proc: subprocess.Popen[bytes],
          poll_s: float = 0.5) -> None:
    wait_for(cond, timeout_s, what, alive=process_exited(proc, "freqtrade"), poll_s=poll_s,
             detail=lambda: f"log tail:\n{log.read_text(errors='replace')[-4000:]}")


def _recorded_after_join(rec: Path, join_us: int) -> tuple[set[str], int]:
    """What the recording (flushed so far) holds: the kinds of events of the pair that joined, and how many events
    of the pair that stays were received after ``join_us``."""
    try:
        kinds = {type(ev).__name__ for ev in read_events(rec, symbol=JOINS)}
        stays = sum(ev.local_ts_us > join_us for ev in read_events(rec, symbol=STAYS))
    except Exception:  # not recorded yet, or a file rewritten right now: read again at the next poll
        return set(), 0
    return kinds, stays


def _flat(log: Path) -> str:
    # Freqtrade's rich console may wrap long lines: compare with the wrapping undone
    return " ".join(log.read_text(errors="replace").split())


def _logged_at(log: Path, needle: str) -> datetime:
    for line in log.read_text(errors="replace").splitlines():
        if needle in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
    raise AssertionError(f"no log line with {needle!r}")


@pytest.mark.slow
def test_a_dry_run_feed_follows_a_changing_whitelist(tmp_path: Path) -> None:
    userdir = strategy_userdir(tmp_path)
    pairs_file = tmp_path / "pairs.json"
    pairs_file.write_text(json.dumps({"pairs": [STAYS, LEAVES]}))
    log = userdir / "freqtrade.log"
    rec = userdir / "orderflow"
    with start_in_thread(SyntheticSource([STAYS, LEAVES, JOINS], seed=5, history_minutes=300)) as exchange:
        config = json.loads((ROOT / "user_data" / "config.dryrun.json").read_text())
        config["exchange"]["ccxt_config"] = exchange.ccxt_config()
        config["exchange"]["pair_whitelist"] = []
        config["pairlists"] = [{"method": "RemotePairList", "pairlist_url": f"file:///{pairs_file}",
                                "number_assets": 10, "refresh_period": 5}]
        config["helios"]["dashboard"] = {"enabled": False}
        config["helios"]["recording"] = {"enabled": True, "path": str(rec)}
        config["db_url"] = f"sqlite:///{userdir / 'trades.sqlite'}"
        (userdir / "config.json").write_text(json.dumps(config))

        def subscribed() -> set[str]:
            return exchange.call(lambda: {t for (_m, t), c in exchange.server.hub.subs.items() if c})

        with freqtrade_dry_run(userdir, "HeliosStrategy", log) as proc:
            _wait(lambda: f"live order-flow feed started for {STAYS}, {LEAVES}" in _flat(log), START_S,
                  "the feed started on the first whitelist", log, proc)
            _wait(lambda: {"btcusdt@depth@100ms", "ethusdt@depth@100ms"} <= subscribed(), 30,
                  "both books subscribed", log, proc)
            _wait(lambda: "Bot heartbeat" in _flat(log), 60, "the bot looping", log, proc)
            pairs_file.write_text(json.dumps({"pairs": [STAYS, JOINS]}))
            _wait(lambda: f"pairs joined: {JOINS}; pairs left: {LEAVES}" in _flat(log), CHANGE_S,
                  "the feed following the new whitelist", log, proc)
            _wait(lambda: "solusdt@depth@100ms" in subscribed() and "ethusdt@depth@100ms" not in subscribed(),
                  30, "the new book subscribed and the old one ended", log, proc)
            joined_at = _logged_at(log, f"pairs joined: {JOINS}")
            join_us = int(joined_at.timestamp() * 1e6)

            # the new pair's book and a trade, and more than 50 events of the staying pair's stream after the
            # change, in the recording (flushed every 5 s): what is checked below
            def recorded() -> bool:
                kinds, stays = _recorded_after_join(rec, join_us)
                return {"BookSnapshot", "Trade"} <= kinds and stays > 50

            _wait(recorded, 60, "the joined pair's book and trades and the staying pair's stream recorded", log,
                  proc, poll_s=1.0)
            alive = proc.poll() is None
    ran_without_errors(log, alive)

    first: dict[tuple[str, str], int] = {}
    snapshots = {s: 0 for s in (STAYS, LEAVES, JOINS)}
    gaps: dict[str, list[str]] = {s: [] for s in (STAYS, LEAVES, JOINS)}
    stays_after = 0
    for ev in read_events(rec):
        kind = type(ev).__name__
        first.setdefault((ev.symbol, kind), ev.local_ts_us)
        if isinstance(ev, BookSnapshot):
            snapshots[ev.symbol] += 1
        elif isinstance(ev, FeedGap):
            gaps[ev.symbol].append(ev.reason)
        if ev.symbol == STAYS and ev.local_ts_us > join_us:
            stays_after += 1
    # the pair that joined: its book and a trade within 10 s of joining
    assert (first[(JOINS, "BookSnapshot")] - join_us) / 1e6 <= 10.0
    assert (first[(JOINS, "Trade")] - join_us) / 1e6 <= 10.0
    assert first[(JOINS, "BookSnapshot")] > join_us - 1_000_000  # nothing of it before it joined
    # the pair that left: its recording ends with the declared reason; the pair that stays: one snapshot, no gap,
    # and its stream went on through the change
    assert gaps[LEAVES] == ["left the feed's pairs"]
    assert snapshots[STAYS] == 1 and gaps[STAYS] == [] and stays_after > 50
    assert snapshots[JOINS] == 1 and gaps[JOINS] == []
