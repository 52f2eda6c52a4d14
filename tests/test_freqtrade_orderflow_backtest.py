"""A strategy written for Freqtrade's own order flow (``user_data/strategies/HeliosStackedImbalance.py``) backtests
unchanged on top of HeliosStrategy, in a real ``freqtrade backtesting``, on a Helios recording: its
``stacked_imbalances_*`` / ``delta`` columns come from the recording's trades (``helios.strategy.freqtrade_orderflow``),
with ``exchange.use_public_trades`` off and no trades file for Freqtrade to read.

Pipeline as a user runs it: a recording (``helios synth``), candles from its trades (``helios export-trades`` ->
``freqtrade trades-to-ohlcv``; the trades file is removed before the backtest), then ``freqtrade backtesting``.
Freqtrade loads markets even in backtesting, so a local exchange serves them.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from helios_orderflow.emulator.process import ExchangeProcess, start_subprocess
from helios_orderflow.emulator.server import ccxt_config
from helios_orderflow.emulator.synth import write_synthetic
from helios_orderflow.features.export_trades import export_trades
from tests.commands import run_ok

ROOT = Path(__file__).resolve().parent.parent
FREQTRADE = [sys.executable, "-m", "freqtrade"]
ORIGIN_US = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
MINUTES = 120
SEED = 7
ORDERFLOW = {"cache_size": 1500, "max_candles": 1500, "scale": 2, "imbalance_volume": 0.1, "imbalance_ratio": 3,
             "stacked_imbalance_range": 3}

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> str:
    return run_ok(cmd, cwd, timeout)


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeProcess]:
    log = tmp_path_factory.mktemp("exchange") / "exchange.log"
    with start_subprocess(["--synthetic", "--symbols", "BTC/USDT", "--history-minutes", "10"], log) as ex:
        yield ex


@pytest.fixture(scope="module")
def userdir(tmp_path_factory: pytest.TempPathFactory, exchange: ExchangeProcess) -> Path:
    """A Freqtrade user_data dir with a 2 h synthetic BTC/USDT recording and 1m candles made from its trades."""
    ud = tmp_path_factory.mktemp("user_data")
    (ud / "strategies").mkdir()
    shutil.copy(ROOT / "user_data" / "strategies" / "HeliosStackedImbalance.py", ud / "strategies")
    rec = ud / "orderflow" / "synth"
    write_synthetic(str(rec), ["BTC/USDT"], SEED, ORIGIN_US, MINUTES * 60_000_000)
    datadir = ud / "data" / "binance"
    [exported] = export_trades(rec, datadir)
    config = json.loads((ROOT / "user_data" / "config.backtest.json").read_text())
    config["exchange"]["ccxt_config"] = ccxt_config(exchange.url)
    config["exchange"]["pair_whitelist"] = ["BTC/USDT"]
    config["exchange"]["use_public_trades"] = False
    config["orderflow"] = ORDERFLOW
    config.setdefault("helios", {}).setdefault("strategy", {})["freqtrade_orderflow"] = True
    (ud / "config.json").write_text(json.dumps(config))
    run([*FREQTRADE, "trades-to-ohlcv", "--config", str(ud / "config.json"), "--userdir", str(ud),
         "-p", "BTC/USDT", "-t", "1m"], ud)
    # Freqtrade must not need trades of its own: the order flow comes from the recording
    exported.path.unlink()
    return ud


def test_stacked_imbalance_strategy_backtests_on_a_helios_recording_and_trades_on_its_signals(userdir: Path) -> None:
    out = run([*FREQTRADE, "backtesting", "--config", str(userdir / "config.json"), "--userdir", str(userdir),
               "--strategy", "HeliosStackedImbalance", "--export", "trades", "--cache", "none"], userdir)
    assert "use_public_trades" not in out
    results = sorted((userdir / "backtest_results").glob("*.zip"))
    assert results, out[-3000:]
    with zipfile.ZipFile(results[-1]) as z:
        name = next(n for n in z.namelist() if n.endswith(".json") and "_config" not in n and "meta" not in n)
        stats = json.loads(z.read(name))
    trades = pd.DataFrame(stats["strategy"]["HeliosStackedImbalance"]["trades"])
    assert len(trades) >= 3, out[-3000:]
    assert set(trades.enter_tag) == {"stacked_ask"}
    assert set(trades.pair) == {"BTC/USDT"}
    # entries are at candle opens inside the recording (the signal candle has the recording's trades)
    opens = pd.to_datetime(trades.open_date, utc=True)
    assert (opens > pd.Timestamp(ORIGIN_US, unit="us", tz="UTC")).all()
    assert (opens <= pd.Timestamp(ORIGIN_US + MINUTES * 60_000_000, unit="us", tz="UTC")).all()
