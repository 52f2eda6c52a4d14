"""Freqtrade's order-flow columns live on OKX, a venue Freqtrade's own order flow refuses: a real
``freqtrade trade --dry-run`` runs ``HeliosStackedImbalance`` (written for Freqtrade's ``use_public_trades``
columns) against the local exchange speaking OKX v5, with ``helios.strategy.freqtrade_orderflow`` on and
``exchange.use_public_trades`` off. The strategy logs its newest candle's ``total_trades``, ``delta`` and stacked
imbalances; the test waits for a candle filled from the feed's websocket trades, and checks that Freqtrade never
asked the exchange for trades over REST.

Wall time: Freqtrade's start-up plus the wait for the first 1m candle to close after the feed subscribed (the
market and Freqtrade's candles run on the wall clock): 30 to 90 s.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

from freqtrade.exchange import Okx
from freqtrade.exchange.exchange import Exchange

from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.emulator.dialects import dialect_class
from tests.venue_dry_run import freqtrade_dry_run, ran_without_errors, strategy_userdir

ROOT = Path(__file__).resolve().parent.parent
VENUE = "okx"
#: Freqtrade's start-up, then at most one whole candle and one analysis loop, with room for a loaded machine
WAIT_S = 240.0
ORDERFLOW = {"cache_size": 1500, "max_candles": 1500, "scale": 2, "imbalance_volume": 0.1, "imbalance_ratio": 3,
             "stacked_imbalance_range": 3}
#: the strategy's log line (HeliosStackedImbalance.populate_indicators)
LINE = re.compile(r"order flow BTC/USDT (\S+ \S+): total_trades=(\S+) delta=(\S+) stacked_ask=(\[[^\]]*\]|nan) "
                  r"stacked_bid=(\[[^\]]*\]|nan)")


def test_freqtrades_own_order_flow_refuses_okx() -> None:
    # Exchange.validate_orderflow raises for use_public_trades unless the class pages trade history
    assert {**Exchange._ft_has_default, **Okx._ft_has}["trades_has_history"] is False


def test_stacked_imbalance_strategy_gets_freqtrades_order_flow_columns_live_on_okx(tmp_path: Path) -> None:
    cls = dialect_class(VENUE)
    userdir = strategy_userdir(tmp_path, "HeliosStackedImbalance")
    log = userdir / "freqtrade.log"
    filled: tuple[str, ...] | None = None
    with start_in_thread(SyntheticSource(["BTC/USDT"], seed=11, history_minutes=120), venue=VENUE) as exchange:
        config = json.loads((ROOT / "user_data" / "config.dryrun.json").read_text())
        config["exchange"]["name"] = cls.ccxt_id("spot")
        config["exchange"]["ccxt_config"] = exchange.ccxt_config()
        config["exchange"]["pair_whitelist"] = ["BTC/USDT"]
        config["exchange"]["use_public_trades"] = False
        config["orderflow"] = ORDERFLOW
        config["helios"]["strategy"] = {**config["helios"].get("strategy", {}), "freqtrade_orderflow": True}
        config["helios"]["dashboard"] = {"enabled": False}
        config["helios"]["recording"] = {"enabled": False}
        config["db_url"] = f"sqlite:///{userdir / 'trades.sqlite'}"
        (userdir / "config.json").write_text(json.dumps(config))
        t0 = time.monotonic()
        with freqtrade_dry_run(userdir, "HeliosStackedImbalance", log) as proc:
            while time.monotonic() - t0 < WAIT_S and proc.poll() is None and filled is None:
                time.sleep(1)
                flat = " ".join(log.read_text(errors="replace").split())
                filled = next((m.groups() for m in LINE.finditer(flat) if m.group(2) != "nan"), None)
            took = time.monotonic() - t0
            alive = proc.poll() is None
        rest = dict(exchange.log.rest_by_path)
    text, flat = ran_without_errors(log, alive)
    assert "Using resolved strategy HeliosStackedImbalance" in flat, text[:3000]
    assert f"helios: live order-flow feed started for BTC/USDT on {cls.ccxt_id('spot')}" in flat, text[:6000]
    assert filled is not None, f"no candle with order flow within {WAIT_S:.0f} s; log tail:\n{text[-4000:]}"
    _date, total_trades, delta, stacked_ask, stacked_bid = filled
    assert float(total_trades) > 0 and float(total_trades).is_integer()
    assert abs(float(delta)) >= 0.0  # a number, not NaN
    assert stacked_ask.startswith("[") and stacked_bid.startswith("[")
    # Freqtrade fetched candles and the book over REST, never trades: the columns came from the websocket feed
    assert not [path for path in rest if "trades" in path], rest
    with contextlib.suppress(Exception):
        print(f"order flow filled live after {took:.0f} s: candle {_date}, total_trades={total_trades} delta={delta}")
