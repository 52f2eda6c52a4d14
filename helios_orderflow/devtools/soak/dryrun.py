"""``--with-freqtrade``: a Freqtrade dry-run of HeliosStrategy against the soak's exchange, as a third
process, and what it did (alive at the end, errors, rejected entries, trades). What the soak does to it
(whitelist changes, the disk window) is in ``bot``."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.devtools.soak.bot import PAIRLIST_REFRESH_S

#: The clone the soak runs from (devtools are not installed): helios_orderflow/devtools/soak/ is three down.
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def ccxt_config_for(url: str) -> dict[str, Any]:
    """The ccxt config (spot markets only) for the soak's exchange at ``url``."""
    from helios_orderflow.emulator import ccxt_urls

    return {"urls": ccxt_urls(url), "options": {"fetchMarkets": {"types": ["spot"]}}}


def start_freqtrade(url: str, symbols: list[str], out_dir: Path, *, pairlist: Path | None = None,
                    recording: Path | None = None, heatmap_window_s: float = 60.0, segment_s: float = 60.0,
                    checkpoint_every_s: float = 300.0, memdiag: list[str] | None = None) -> subprocess.Popen[bytes]:
    """A ``freqtrade trade --dry-run`` of HeliosStrategy against the soak's exchange (its own feed, engines and
    recording inside Freqtrade), logging to ``out_dir/freqtrade/freqtrade.log``. With ``pairlist``, the
    whitelist is Freqtrade's ``RemotePairList`` reading that file (the feed follows it); ``recording``: where
    the bot records (default ``out_dir/freqtrade/orderflow/soak``)."""
    shim = PROJECT_ROOT / "user_data" / "strategies" / "HeliosStrategy.py"
    base = PROJECT_ROOT / "user_data" / "config.dryrun.json"
    if not shim.is_file() or not base.is_file():
        raise HeliosError(f"--with-freqtrade needs {shim} and {base} (HeliosStrategy and its dry-run config)")
    ud = out_dir / "freqtrade"
    (ud / "strategies").mkdir(parents=True, exist_ok=True)
    (ud / "strategies" / "HeliosStrategy.py").write_text(shim.read_text())
    config = json.loads(base.read_text())
    config["exchange"]["ccxt_config"] = ccxt_config_for(url)
    config["exchange"]["pair_whitelist"] = list(symbols)
    if pairlist is not None:
        config["pairlists"] = [{"method": "RemotePairList", "pairlist_url": f"file:///{pairlist.resolve()}",
                                "number_assets": len(symbols), "refresh_period": PAIRLIST_REFRESH_S}]
    config["max_open_trades"] = len(symbols)
    helios = config.setdefault("helios", {})
    helios["dashboard"] = {"enabled": False}
    # ten pairs from 0.1 to 60000 USDT; the window as the soak's feed's, so RSS after warm-up is the steady state
    helios["heatmap"] = {"bin_size": "auto", "window_s": heatmap_window_s}
    helios["feed"] = {"follow_whitelist": True}
    helios["recording"] = {"enabled": True, "path": str(recording or ud / "orderflow" / "soak"),
                           "flush_interval_s": 5.0, "segment_s": segment_s,
                           "checkpoint_every_s": checkpoint_every_s}
    config["db_url"] = f"sqlite:///{ud / 'trades.sqlite'}"
    config.pop("api_server", None)
    (ud / "config.json").write_text(json.dumps(config))
    log = open(ud / "freqtrade.log", "w")  # the child writes to it until it exits
    run = ["-m"] if memdiag is None else ["-m", "helios_orderflow.devtools.soak.memdiag", *memdiag, "--"]
    return subprocess.Popen(
        [sys.executable, *run, "freqtrade", "trade", "--dry-run", "--config", str(ud / "config.json"),
         "--userdir", str(ud), "--strategy", "HeliosStrategy"],
        cwd=ud, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def freqtrade_report(proc: subprocess.Popen[bytes], out_dir: Path, cpu_s: float, span_s: float) -> dict[str, Any]:
    """What the Freqtrade dry-run did: alive until the end, errors in its log, entries its callbacks
    rejected (fail closed) and the trades it opened."""
    text = (out_dir / "freqtrade" / "freqtrade.log").read_text(errors="replace")
    lines = text.splitlines()
    db = out_dir / "freqtrade" / "trades.sqlite"
    trades = 0
    if db.exists():
        import sqlite3

        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con, \
                contextlib.suppress(sqlite3.Error):
            trades = con.execute("select count(*) from trades").fetchone()[0]
    return {
        "freqtrade_alive_at_end": proc.poll() is None,
        # Freqtrade's own candle websocket logs an ERROR each time an injected fault drops it (and
        # reconnects by itself): counted apart; any other ERROR fails the run.
        "freqtrade_errors": sum(" ERROR " in ln and "watch_ohlcv" not in ln for ln in lines),
        "freqtrade_candle_ws_errors": sum(" ERROR " in ln and "watch_ohlcv" in ln for ln in lines),
        "freqtrade_entries_rejected": sum("helios: entry" in ln and "rejected" in ln for ln in lines),
        "freqtrade_trades": trades,
        "freqtrade_cpu_pct": round(100.0 * cpu_s / span_s, 1),
    }
