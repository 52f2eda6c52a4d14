"""One real ``freqtrade trade --dry-run`` with ``HeliosStrategy`` against the local exchange speaking a venue's
spot dialect: the test every ``tests/test_venue_<venue>.py`` ends with, each asserting what its venue was asked.

The market is synthetic BTC/USDT and ETH/USDT with seed 78; the RSI condition is opened so that the order-flow
setup alone decides. Which candles hold a setup (bullish absorption with a bid wall still below the close)
depends on where the minute boundaries fall in the market's path, so the market's origin is put at second
``ORIGIN_SECOND`` of a minute (up to a minute in the past; the local exchange catches up before anyone
connects): the setup candles then close 185, 245 and 365 s (BTC/USDT) and 305 s (ETH/USDT) after the origin,
four chances where an origin at another second can give one (checked with ``helios synth --start``). One chance
was not enough: on KuCoin, whose public REST book holds 100 levels a side, the feed's book differs enough from
the full one that a single setup candle can close without a wall below it (CI, origin at second 38). The wait
is long because the market runs in real time, not because the machine is slow.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helios_orderflow.devtools.demo import child_env
from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.emulator.dialects import dialect_class
from tests._signals import interruptible

ROOT = Path(__file__).resolve().parent.parent
FT_SEED = 78
#: the setups close 185-365 s after the origin; 480 s leaves room for a slow start on a loaded machine
WAIT_TRADE_S = 480.0
#: the second of the minute the synthetic market starts at (see the module docstring)
ORIGIN_SECOND = 55
#: the prices the synthetic BTC/USDT and ETH/USDT start from
START_PRICES = (60000.0, 3000.0)


def strategy_userdir(tmp_path: Path, strategy: str = "HeliosStrategy") -> Path:
    """``tmp_path/user_data`` with the project's ``strategy`` file in its ``strategies`` folder."""
    userdir = tmp_path / "user_data"
    (userdir / "strategies").mkdir(parents=True)
    (userdir / "strategies" / f"{strategy}.py").write_text(
        (ROOT / "user_data" / "strategies" / f"{strategy}.py").read_text())
    return userdir


@contextlib.contextmanager
def freqtrade_dry_run(userdir: Path, strategy: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``freqtrade trade --dry-run`` on ``userdir/config.json`` with ``strategy``, its output in ``log``; on leaving,
    stopped with SIGTERM as a user stops it (killed if it does not stop within 60 s)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "freqtrade", "trade", "--dry-run", "--config", str(userdir / "config.json"),
             "--userdir", str(userdir), "--strategy", strategy],
            cwd=userdir, stdout=out, stderr=subprocess.STDOUT, env=child_env(), preexec_fn=interruptible)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def ran_without_errors(log: Path, alive: bool) -> tuple[str, str]:
    """The dry-run's log, checked: Freqtrade was still running when the test was done with it, and logged no
    error or traceback. Returns the log and the log with Freqtrade's console wrapping undone (its rich console
    wraps long lines at the terminal width)."""
    text = log.read_text(errors="replace")
    assert alive, f"freqtrade exited early; log tail:\n{text[-4000:]}"
    errors = [line for line in text.splitlines() if " - ERROR - " in line or "Traceback" in line]
    assert errors == [], errors[:5]
    return text, " ".join(text.split())


def _first_trade(db: Path) -> tuple | None:
    if not db.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        with contextlib.suppress(sqlite3.OperationalError):
            return con.execute("select pair, open_rate, enter_tag from trades order by id").fetchone()
    return None


def freqtrade_dry_run_opens_a_trade(venue: str, tmp_path: Path,
                                    helios_feed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the dry-run until its first trade (or ``WAIT_TRADE_S``) and check the log: it loaded the venue, resolved
    ``HeliosStrategy``, started the Helios feed, logged no error. ``helios_feed`` overrides feed settings. Returns
    the trade ``(pair, open_rate, enter_tag)``, the seconds it took, and the local exchange's REST paths and
    websocket subscriptions as counted by the server."""
    cls = dialect_class(venue)
    userdir = strategy_userdir(tmp_path)
    db = userdir / "trades.sqlite"
    log = userdir / "freqtrade.log"
    now_s = int(time.time())
    origin_us = (now_s - (now_s - ORIGIN_SECOND) % 60) * 1_000_000
    with start_in_thread(SyntheticSource(["BTC/USDT", "ETH/USDT"], seed=FT_SEED, origin_us=origin_us,
                                         history_minutes=300), venue=venue) as exchange:
        config = json.loads((ROOT / "user_data" / "config.dryrun.json").read_text())
        config["exchange"]["name"] = cls.ccxt_id("spot")
        config["exchange"]["ccxt_config"] = exchange.ccxt_config()
        config["exchange"]["pair_whitelist"] = ["BTC/USDT", "ETH/USDT"]
        config["helios"]["decision"] = {"rsi_buy_below": 100, "rsi_sell_above": 100}
        config["helios"]["dashboard"] = {"enabled": False}
        # recorded so that a failure can say whether the engine saw the setup (``_what_the_engine_saw``)
        config["helios"]["recording"] = {"enabled": True, "path": str(userdir / "orderflow")}
        if helios_feed:
            config["helios"]["feed"] = {**config["helios"].get("feed", {}), **helios_feed}
        config["db_url"] = f"sqlite:///{db}"
        (userdir / "config.json").write_text(json.dumps(config))
        t0 = time.monotonic()
        trade: tuple | None = None
        with freqtrade_dry_run(userdir, "HeliosStrategy", log) as proc:
            while time.monotonic() - t0 < WAIT_TRADE_S and proc.poll() is None and trade is None:
                time.sleep(0.5)
                trade = _first_trade(db)
            took = time.monotonic() - t0
            alive = proc.poll() is None
        rest = dict(exchange.log.rest_by_path)
        subscriptions = dict(exchange.log.subscriptions)
    text, flat = ran_without_errors(log, alive)
    assert f'Using Exchange "{exchange_name(venue)}"' in flat, text[:3000]
    assert "Using resolved strategy HeliosStrategy" in flat, text[:3000]
    assert f"helios: live order-flow feed started for BTC/USDT, ETH/USDT on {cls.ccxt_id('spot')}" in flat, \
        text[:6000]
    assert trade is not None, (f"no trade within {WAIT_TRADE_S:.0f} s; {_what_the_engine_saw(userdir / 'orderflow')}; "
                               f"log tail:\n{text[-4000:]}")
    pair, open_rate, _tag = trade
    assert pair in ("BTC/USDT", "ETH/USDT")
    assert any(abs(open_rate / p - 1) < 0.05 for p in START_PRICES), open_rate
    return {"trade": trade, "seconds": took, "rest": rest, "subscriptions": subscriptions}


def _what_the_engine_saw(recording: Path) -> str:
    """The signals the engine computes from what the feed recorded: tells a feed that missed the setup from a
    strategy or a Freqtrade loop that missed the signal."""
    from helios_orderflow.features.compute import compute_features

    try:
        seen = []
        for symbol in ("BTC/USDT", "ETH/USDT"):
            f = compute_features(recording, symbol, cache=False)
            cols = ["absorption_bull", "absorption_bear", "exhaustion_up", "exhaustion_down"]
            hits = f[f[cols].sum(axis=1) > 0]
            seen.append(f"{symbol}: {len(f)} candles, book ok in {int(f['book_ok'].sum())}, signals at "
                        + (", ".join(f"{r['date']:%H:%M} {r[cols].to_dict()}"
                                     for _, r in hits.iterrows()) or "none"))
        return "the engine, replaying the feed's recording, saw " + "; ".join(seen)
    except Exception as exc:  # the diagnosis must not hide the failure
        return f"the feed's recording could not be replayed ({type(exc).__name__}: {exc})"


def exchange_name(venue: str) -> str:
    """The name Freqtrade logs in ``Using Exchange "..."``: ccxt's display name of the venue."""
    import ccxt

    return str(getattr(ccxt, dialect_class(venue).ccxt_id("spot"))().name)
