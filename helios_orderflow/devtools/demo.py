"""``make demo`` and ``make demo-backtest``: Helios inside Freqtrade, on this machine, with no keys and no network.

``python -m helios_orderflow.devtools.demo`` (``make demo``):
  1. starts the local exchange with a seeded synthetic market (``helios exchange``), speaking Binance's
     protocol or, with ``--venue`` (``make demo EXCHANGE=okx``), Bybit's, OKX's, Gate's or KuCoin's;
  2. runs ``freqtrade trade --strategy HeliosStrategy`` in dry-run against it, with the live order-flow feed,
     recording to ``user_data/orderflow/live`` and the liquidity dashboard when it is installed;
  3. prints where to look (dashboard URL, Freqtrade log, trade database, recording) and follows the
     strategy's decisions from the log. Ctrl-C stops Freqtrade (which stops the feed and flushes the
     recording), then the exchange.

``python -m helios_orderflow.devtools.demo --backtest`` (``make demo-backtest``): synthesizes a few hours of the same
market as a recording (``helios synth``), writes its trades in Freqtrade's format (``helios export-trades``),
builds candles (``freqtrade trades-to-ohlcv``) and runs ``freqtrade backtesting`` on them, printing
Freqtrade's report. Freqtrade loads markets even to backtest; the local exchange serves them.

When Freqtrade cannot run here (not installed), the stage-1 demo runs instead: it imports the bundled real
Binance BTCUSDT capture into a recording and inspects it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import HeliosError

USER_DATA = Path("user_data")
DEMO_DIR = USER_DATA / "orderflow" / "demo"  # stage 1
LIVE_RECORDING = "orderflow/live"
BACKTEST_RECORDING = USER_DATA / "orderflow" / "demo-backtest"
LOG = USER_DATA / "logs" / "helios-demo.log"
DB = USER_DATA / "helios-demo.sqlite"
PAIRS = ["BTC/USDT"]
_LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


# ---- processes -----------------------------------------------------------------------------------------


class Child:
    """A child process in its own session: the terminal's Ctrl-C reaches only the demo, which then stops
    the children in order (Freqtrade first, so its feed never sees the exchange vanish)."""

    def __init__(self, name: str, cmd: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(log_path, "w")  # the child writes to it until it exits
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=child_env())

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGINT (what Ctrl-C sends), then SIGKILL if it has not exited within ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                print(f"demo: {self.name} did not stop within {timeout_s:.0f} s; killing it", flush=True)
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode


def child_env() -> dict[str, str]:
    """The children's environment: unbuffered output, without PYTEST_VERSION (Freqtrade skips its own logging
    set-up, the log file included, when it sees that variable) and without COLUMNS/LINES (pytest sets COLUMNS=80
    and Freqtrade's rich console would wrap every log line written to a file at 80 columns; without it Freqtrade
    takes 200 when its output is not a terminal)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "COLUMNS", "LINES")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_exchange(seed: int, symbols: list[str], log_path: Path, timeout_s: float = 60.0,
                   venue: str = "binance") -> tuple[Child, str]:
    """``helios exchange --synthetic --venue VENUE`` on a free port; returns the child and its base URL."""
    child = Child("the local exchange", [sys.executable, "-m", "helios_orderflow.cli", "exchange", "--synthetic",
                                         "--venue", venue, "--seed", str(seed), "--symbols", *symbols, "--port", "0",
                                         "--history-minutes", "600"], log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = _LISTENING.search(log_path.read_text(errors="replace"))
        if m:
            return child, m.group(1)
        if not child.running():
            raise HeliosError(f"the local exchange exited before listening; its log:\n{log_path.read_text()}")
        time.sleep(0.1)
    child.stop()
    raise HeliosError(f"the local exchange did not start within {timeout_s:.0f} s; see {log_path}")


def demo_config(template: Path, exchange_url: str, out: Path, venue: str = "binance", **helios: Any) -> Path:
    """``template`` with Freqtrade's exchange set to ``venue``, ccxt pointed at the local exchange and
    ``helios`` sections merged in, written to ``out`` (under user_data/logs, which git ignores)."""
    from helios_orderflow.emulator.dialects import dialect_class

    dialect = dialect_class(venue)
    config = json.loads(template.read_text())
    config["exchange"]["name"] = dialect.ccxt_id("spot")
    config["exchange"]["ccxt_config"] = dialect.ccxt_config(exchange_url, "spot")
    config["exchange"]["pair_whitelist"] = list(PAIRS)
    section = dict(config.get("helios") or {})
    for key, value in helios.items():
        section[key] = {**section.get(key, {}), **value}
    config["helios"] = section
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(config, indent=2))
    return out


def freqtrade_available() -> bool:
    try:
        import freqtrade  # noqa: F401
        import talib  # noqa: F401
    except ImportError:
        return False
    return True


def _follow(path: Path) -> Iterator[str]:
    """New lines of ``path`` as they are written (yields "" when there is nothing new)."""
    pos = 0
    while True:
        try:
            with open(path, errors="replace") as fh:
                fh.seek(pos)
                chunk = fh.read()
                pos = fh.tell()
        except FileNotFoundError:
            chunk = ""
        lines = chunk.splitlines()
        if not lines:
            yield ""
        yield from lines


def _interesting(line: str) -> str | None:
    """The log lines a demo watcher cares about, shortened."""
    if " - helios_orderflow" in line and ("helios:" in line):
        return line.split(" - INFO - ", 1)[-1].split(" - WARNING - ", 1)[-1]
    if "'type': entry" in line or "'type': exit_fill" in line or "'type': entry_fill" in line:
        kind = re.search(r"'type': (\w+)", line)
        pair = re.search(r"'pair': '([^']+)'", line)
        tag = re.search(r"'enter_tag': '([^']*)'", line)
        reason = re.search(r"'exit_reason': '([^']*)'", line)
        parts = [f"freqtrade: {kind.group(1) if kind else 'trade'}", pair.group(1) if pair else ""]
        if tag:
            parts.append(f"tag={tag.group(1)}")
        if reason:
            parts.append(f"exit={reason.group(1)}")
        return " ".join(p for p in parts if p)
    if " - ERROR - " in line:
        return line.split(" - ERROR - ", 1)[-1]
    return None


# ---- the live demo --------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_live(seed: int, dashboard: bool, port: int, max_seconds: float | None = None, venue: str = "binance") -> int:
    # ``kill`` (SIGTERM) stops the demo as cleanly as Ctrl-C: the children run in their own sessions and
    # would otherwise outlive it.
    signal.signal(signal.SIGTERM, _interrupt)
    log_dir = USER_DATA / "logs"
    exchange, url = start_exchange(seed, PAIRS, log_dir / "helios-demo-exchange.log", venue=venue)
    freqtrade: Child | None = None
    try:
        config = demo_config(USER_DATA / "config.dryrun.json", url, log_dir / "helios-demo.config.json", venue,
                             dashboard={"enabled": dashboard, "port": port},
                             recording={"enabled": True, "path": LIVE_RECORDING})
        for stale in (LOG, DB):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        freqtrade = Child("freqtrade", [
            sys.executable, "-m", "freqtrade", "trade", "--config", str(config), "--userdir", str(USER_DATA),
            "--strategy", "HeliosStrategy", "--logfile", str(LOG), "--db-url", f"sqlite:///{DB}",
        ], log_dir / "helios-demo.freqtrade-out.log")
        has_dashboard = dashboard and _dashboard_installed()
        print(f"Helios demo: Freqtrade dry-run with HeliosStrategy against a local synthetic {venue} market.\n")
        print(f"  local exchange   {url}  (seed {seed}, {', '.join(PAIRS)}; log {exchange.log_path})")
        if has_dashboard:
            print(f"  dashboard        http://127.0.0.1:{port}/  (liquidity heatmap, walls, CVD, OFI)")
        elif dashboard:
            print("  dashboard        not available in this install (the dashboard package is missing)")
        else:
            print("  dashboard        off (--no-dashboard)")
        print(f"  Freqtrade log    {LOG}")
        print(f"  trade database   {DB}   (sqlite3 {DB} 'select * from trades')")
        print(f"  recording        {USER_DATA / LIVE_RECORDING}   (backtest it later: docs/strategy.md)")
        print(f"  config           {config}\n")
        print("Entries need bullish absorption at a bid wall and RSI < 50: expect the first within minutes.")
        print("Press Ctrl-C to stop.\n", flush=True)
        started = time.monotonic()
        for line in _follow(LOG):
            if line:
                shown = _interesting(line)
                if shown:
                    print(f"  {time.strftime('%H:%M:%S')}  {shown}", flush=True)
                continue
            if not freqtrade.running():
                tail = "\n".join(LOG.read_text(errors="replace").splitlines()[-30:]) if LOG.exists() else ""
                out = freqtrade.log_path.read_text(errors="replace")[-3000:]
                print(f"demo: freqtrade exited with {freqtrade.proc.returncode}:\n{tail or out}", file=sys.stderr)
                return 1
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ndemo: stopping Freqtrade (the feed stops and the recording is flushed) ...", flush=True)
    finally:
        if freqtrade is not None:
            rc = freqtrade.stop(60.0)
            # 130 is Freqtrade's exit code after an interrupt: the clean way out of a dry-run.
            print(f"demo: freqtrade stopped ({'cleanly' if rc in (0, 130) else f'exit code {rc}'})", flush=True)
        exchange.stop(15.0)
        print("demo: local exchange stopped", flush=True)
    return 0


def _dashboard_installed() -> bool:
    try:
        from dashboard.app import run_in_thread  # noqa: F401
    except ImportError:
        return False
    return True


# ---- the backtest demo ------------------------------------------------------------------------------------


def run_backtest(seed: int, hours: float, venue: str = "binance") -> int:
    log_dir = USER_DATA / "logs"
    rec = BACKTEST_RECORDING
    print(f"Helios demo-backtest: {hours:g} h of synthetic {', '.join(PAIRS)} (seed {seed}) -> {rec}", flush=True)
    if rec.exists():
        shutil.rmtree(rec)
    _run([sys.executable, "-m", "helios_orderflow.cli", "synth", "--symbols", *PAIRS, "--hours", str(hours),
          "--seed", str(seed), "--out", str(rec)])
    datadir = USER_DATA / "data" / venue
    _run([sys.executable, "-m", "helios_orderflow.cli", "export-trades", str(rec), "--datadir", str(datadir)])
    exchange, url = start_exchange(seed, PAIRS, log_dir / "helios-demo-backtest-exchange.log", venue=venue)
    try:
        config = demo_config(USER_DATA / "config.backtest.json", url, log_dir / "helios-demo-backtest.config.json",
                             venue)
        common = ["--config", str(config), "--userdir", str(USER_DATA)]
        _run([sys.executable, "-m", "freqtrade", "trades-to-ohlcv", *common, "-p", *PAIRS, "-t", "1m", "5m"])
        print("\nfreqtrade backtesting --strategy HeliosStrategy (order flow from the recording):\n", flush=True)
        rc = subprocess.call([sys.executable, "-m", "freqtrade", "backtesting", *common, "--strategy",
                              "HeliosStrategy", "--export", "trades", "--cache", "none"])
    finally:
        exchange.stop(15.0)
    if rc == 0:
        print(f"\nRecording {rec}, candles in {datadir}, config {config}.")
        print("The same steps by hand, and how to backtest your own recordings: docs/strategy.md")
    return rc


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(_short(c) for c in cmd), flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise HeliosError(f"'{' '.join(cmd)}' failed with exit code {rc}")


def _short(arg: str) -> str:
    if arg == sys.executable:
        return "python"
    return arg


# ---- stage 1 (fallback) -----------------------------------------------------------------------------------


def run_stage1() -> int:
    """Import the bundled real BTCUSDT capture and inspect it (when Freqtrade cannot run)."""
    from helios_orderflow.cli.commands.inspect_recording import format_report
    from helios_orderflow.core.settings import RecordingSettings
    from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
    from helios_orderflow.importers.binance_raw import iter_events
    from helios_orderflow.recording.audit import inspect_events
    from helios_orderflow.recording.reader import read_events
    from helios_orderflow.recording.writer import RecordingWriter

    print("Helios demo (stage 1): Freqtrade is not importable here, so this run imports the bundled real")
    print("Binance BTCUSDT capture (11 minutes of L2 diffs, trades and best bid/offer, MIT licence, see")
    print("helios_orderflow/devtools/data/samples) and inspects the recording.\n")
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    t0 = time.monotonic()
    with RecordingWriter(DEMO_DIR, RecordingSettings(), flush_by_time=False) as writer:
        for ev in iter_events(BINANCE_BTCUSDT_FILES, progress=None):
            writer.write(ev)
        n = writer.events_written
    print(f"imported {n} events into {DEMO_DIR} in {time.monotonic() - t0:.1f}s")
    reports = inspect_events(read_events(DEMO_DIR))
    for report in reports.values():
        print(format_report(report))
    print(f"\nNext: `helios inspect {DEMO_DIR} --json`, or read the recording with DuckDB/Polars (README).")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m helios_orderflow.devtools.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from helios_orderflow.emulator.dialects import VENUES

    p.add_argument("--backtest", action="store_true", help="synthesize a recording and backtest it")
    p.add_argument("--venue", choices=VENUES, default="binance",
                   help="the venue the local exchange speaks and Freqtrade trades on (default binance)")
    p.add_argument("--seed", type=int, default=None,
                   help="the synthetic market's seed (default 78 live: a setup 3 minutes in; 1 backtest: "
                        "5 setups at RSI < 30 in 3 h)")
    p.add_argument("--hours", type=float, default=3.0, help="--backtest: hours to synthesize (default 3)")
    p.add_argument("--dashboard-port", type=int, default=8050, help="port of the liquidity page (default 8050)")
    p.add_argument("--no-dashboard", action="store_true", help="run without the liquidity page")
    p.add_argument("--max-seconds", type=float, default=None, help=argparse.SUPPRESS)  # tests
    args = p.parse_args(argv)
    if not Path("user_data", "strategies", "HeliosStrategy.py").is_file():
        raise HeliosError("run the demo from the project root (user_data/strategies/HeliosStrategy.py not found)")
    if not freqtrade_available():
        return run_stage1()
    if args.backtest:
        if args.hours <= 0:
            raise HeliosError(f"--hours must be > 0, got {args.hours}")
        return run_backtest(1 if args.seed is None else args.seed, args.hours, args.venue)
    return run_live(78 if args.seed is None else args.seed, not args.no_dashboard, args.dashboard_port,
                    args.max_seconds, args.venue)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HeliosError as exc:
        print(f"make demo: error: {exc}", file=sys.stderr)
        sys.exit(2)
