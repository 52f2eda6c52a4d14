"""``helios record``: the live feed with the recorder on, as a command; Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from helios_orderflow.core.events import BookDelta, BookSnapshot, Trade
from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.recording.reader import read_events
from tests._signals import interruptible

pytestmark = pytest.mark.integration

PAIRS = ["BTC/USDT", "ETH/USDT"]


def _helios(*args: str) -> list[str]:
    return [sys.executable, "-m", "helios_orderflow.cli", *args]


def test_record_prints_progress_and_ctrl_c_leaves_a_complete_recording(tmp_path: Path):
    exchange = start_in_thread(SyntheticSource(PAIRS, seed=9), record=True)
    config = tmp_path / "ccxt.json"
    config.write_text(json.dumps(exchange.ccxt_config()))
    out = tmp_path / "rec"
    try:
        proc = subprocess.Popen(
            _helios("record", "--exchange", "binance", "--pairs", *PAIRS, "--out", str(out), "--ccxt-config",
                    str(config), "--interval", "1"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible,
        )
        lines: list[str] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "pairs 2/2 healthy" in line and len([x for x in lines if "healthy" in x]) >= 4:
                break
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rest, _ = proc.communicate(timeout=30)
        server_ids = {s: exchange.trade_ids(s) for s in PAIRS}
    finally:
        exchange.stop()
    text = "".join(lines) + rest
    assert proc.returncode == 0, text
    progress = [x for x in lines if "healthy" in x]
    assert "events/s" in progress[-1] and "written" in progress[-1]
    assert "recorded " in rest and "Traceback" not in text

    events = list(read_events(out))
    kinds = Counter((type(ev).__name__, ev.symbol) for ev in events)
    for s in PAIRS:
        assert kinds[("BookSnapshot", s)] == 1 and kinds[("BookDelta", s)] >= 20
        trades = [int(ev.trade_id) for ev in events if isinstance(ev, Trade) and ev.symbol == s]
        first = server_ids[s].index(trades[0])
        assert trades == server_ids[s][first : first + len(trades)]  # every trade until the stop, in order
    assert any(isinstance(ev, (BookSnapshot, BookDelta)) for ev in events)
    # the progress line's count is what is on disk
    assert f"recorded {len(events)} events" in rest


def test_record_explains_bad_input_without_a_traceback(tmp_path: Path):
    bad = subprocess.run(_helios("record", "--exchange", "nosuchx", "--pairs", "BTC/USDT", "--out", str(tmp_path)),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "has no ccxt.pro websocket client" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run(_helios("record", "--exchange", "binance", "--pairs", "BTC/USDT", "--out", str(tmp_path),
                                 "--ccxt-config", "{not json"), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--ccxt-config is not valid JSON" in bad.stderr
