"""``make demo`` and ``make demo-backtest`` (``python -m helios_orderflow.devtools.demo [--backtest]``), run as a
user runs them: from a project folder, with real Freqtrade and local-exchange processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helios_orderflow.devtools.demo import child_env
from tests._signals import interruptible
from tests.waits import wait_for

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def project(tmp_path: Path) -> Path:
    """A project folder as a fresh clone has it: user_data with the strategy shim and example configs."""
    ud = tmp_path / "user_data"
    (ud / "strategies").mkdir(parents=True)
    shutil.copy(ROOT / "user_data" / "strategies" / "HeliosStrategy.py", ud / "strategies")
    for name in ("config.dryrun.json", "config.backtest.json"):
        shutil.copy(ROOT / "user_data" / name, ud / name)
    return tmp_path


def processes_in(folder: Path) -> list[int]:
    """Pids of live processes whose working directory is ``folder`` (children left behind)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if Path(os.readlink(p / "cwd")) == folder and (p / "stat").read_text().split()[2] != "Z":
                    out.append(int(p.name))
            except OSError:
                continue
    return out


def test_demo_backtest_synthesizes_and_prints_freqtrades_report(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "helios_orderflow.devtools.demo", "--backtest", "--hours", "1.5"],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "BACKTESTING REPORT" in out and "HeliosStrategy" in out
    assert (cwd / "user_data" / "data" / "binance" / "BTC_USDT-1m.feather").is_file()
    assert (cwd / "user_data" / "orderflow" / "demo-backtest").is_dir()
    assert not processes_in(cwd), "the demo left processes behind"


def test_demo_runs_freqtrade_against_the_local_exchange_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    log = tmp_path / "demo.out"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "helios_orderflow.devtools.demo", "--no-dashboard"], cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, env=child_env(), preexec_fn=interruptible)
        try:
            ft_log = cwd / "user_data" / "logs" / "helios-demo.log"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                if ft_log.exists() and "Bot heartbeat" in ft_log.read_text(errors="replace"):
                    break
                time.sleep(1)
            else:
                pytest.fail(f"freqtrade did not come up within 120 s:\n{log.read_text()}")
            text = ft_log.read_text(errors="replace")
            assert "helios: live order-flow feed started for BTC/USDT on binance (1m)" in text
            assert len(processes_in(cwd)) >= 3  # the demo, the exchange and freqtrade
            proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends the demo
            assert proc.wait(120) == 0, log.read_text()
        finally:
            if proc.poll() is None:  # a failed assertion above: still stop the demo and its children
                proc.send_signal(signal.SIGINT)
                proc.wait(120)
    printed = log.read_text()
    for where in ("local exchange   http://127.0.0.1:", "Freqtrade log    user_data/logs/helios-demo.log",
                  "trade database   user_data/helios-demo.sqlite", "recording        user_data/orderflow/live"):
        assert where in printed
    assert "demo: freqtrade stopped (cleanly)" in printed and "demo: local exchange stopped" in printed
    assert "helios: live order-flow feed stopped" in ft_log.read_text(errors="replace")
    assert (cwd / "user_data" / "orderflow" / "live" / "trades").is_dir()  # the session was recorded
    # the demo has exited; its children are gone once the kernel reaped them
    wait_for(lambda: not processes_in(cwd), 30, "the demo's processes to exit",
             detail=lambda: f"Ctrl-C left processes behind: {processes_in(cwd)}")
