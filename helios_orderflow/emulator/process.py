"""Run ``helios exchange`` in its own process (tests, benchmarks): start, read its URL, stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.emulator.server import ccxt_config, ccxt_urls

_LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


class ExchangeProcess:
    """A ``helios exchange`` subprocess; ``.url`` once started, ``.stop()`` sends SIGINT and waits."""

    def __init__(self, proc: subprocess.Popen[str], url: str, log_path: Path, venue: str = "binance") -> None:
        self.proc = proc
        self.url = url
        self.venue = venue
        self.log_path = log_path
        self.pid = proc.pid

    def ccxt_urls(self) -> dict[str, Any]:
        return ccxt_urls(self.url, self.venue)

    def ccxt_config(self, market: str = "spot") -> dict[str, Any]:
        return ccxt_config(self.url, market, self.venue)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ExchangeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_subprocess(args: list[str], log_path: Path, timeout: float = 60.0) -> ExchangeProcess:
    """Start ``helios exchange ARGS --port 0`` (unless a port is given), wait for its startup line."""
    if "--port" not in args:
        args = [*args, "--port", "0"]
    cmd = [sys.executable, "-m", "helios_orderflow.cli", "exchange", *args]
    out = open(log_path, "w")  # the child keeps writing to it after we return
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = log_path.read_text()
        m = _LISTENING.search(text)
        if m:
            venue = args[args.index("--venue") + 1] if "--venue" in args else "binance"
            return ExchangeProcess(proc, m.group(1), log_path, venue)
        if proc.poll() is not None:
            raise HeliosError(f"helios exchange exited with {proc.returncode} before listening:\n{text}")
        time.sleep(0.1)
    proc.kill()
    raise HeliosError(f"helios exchange did not start within {timeout} s; its output:\n{log_path.read_text()}")
