"""A real ``freqtrade trade --dry-run`` with a dynamic pairlist: Helios's feed follows the whitelist.

The pairlist is Freqtrade's own ``RemotePairList`` reading a local file (``file:///``) every 5 s; the test
rewrites the file, so the whitelist changes while the bot runs, as a ``VolumePairList`` refresh would change it.
The pair that joins gets its book and trades within 10 s, the pair that leaves has its book unsubscribed at the
exchange and a declared end in the recording, and the pair that stays shows no gap and no resync.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from helios_orderflow.core.events import BookSnapshot, FeedGap
from helios_orderflow.devtools.demo import child_env
from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.recording.reader import read_events
from tests._signals import interruptible

ROOT = Path(__file__).resolve().parent.parent
STAYS, LEAVES, JOINS = "BTC/USDT", "ETH/USDT", "SOL/USDT"
#: Freqtrade start-up (imports, markets, 300 candles per pair) on a busy machine; the bot's loop is 5 s
START_S = 240.0
#: the pairlist is read every 5 s and the bot loops every 5 s; then the feed has 10 s to bring the pair up
CHANGE_S = 120.0


def _wait(cond: Any, timeout_s: float, what: str, log: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s; log tail:\n{log.read_text(errors='replace')[-4000:]}")


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
    userdir = tmp_path / "user_data"
    (userdir / "strategies").mkdir(parents=True)
    (userdir / "strategies" / "HeliosStrategy.py").write_text(
        (ROOT / "user_data" / "strategies" / "HeliosStrategy.py").read_text())
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

        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "freqtrade", "trade", "--dry-run", "--config", str(userdir / "config.json"),
                 "--userdir", str(userdir), "--strategy", "HeliosStrategy"],
                cwd=userdir, stdout=out, stderr=subprocess.STDOUT, env=child_env(), preexec_fn=interruptible)
            try:
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
                time.sleep(12)  # 10 s for the new pair to come up, and some more of the staying pair's stream
                alive = proc.poll() is None
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    text = log.read_text(errors="replace")
    assert alive, f"freqtrade exited early; log tail:\n{text[-4000:]}"
    errors = [line for line in text.splitlines() if " - ERROR - " in line or "Traceback" in line]
    assert errors == [], errors[:5]

    first: dict[tuple[str, str], int] = {}
    snapshots = {s: 0 for s in (STAYS, LEAVES, JOINS)}
    gaps: dict[str, list[str]] = {s: [] for s in (STAYS, LEAVES, JOINS)}
    stays_after = 0
    join_us = int(joined_at.timestamp() * 1e6)
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
