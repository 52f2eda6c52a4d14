"""Real ``freqtrade hyperopt --spaces buy`` of the strategy file on a synthetic recording: Freqtrade finds the
entry rule's Parameters, searches them and reports the best ones.

Kept small: 3 synthetic hours of one pair (written in-process), 3 epochs on one job. RSI(3) instead of
RSI(14) makes oversold and overbought candles common, so most sampled thresholds trade. Freqtrade loads
markets even in hyperopt, so a local exchange serves them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from helios_orderflow.emulator.process import start_subprocess
from helios_orderflow.emulator.server import ccxt_config
from helios_orderflow.emulator.synth import write_synthetic
from helios_orderflow.features.export_trades import export_trades

ROOT = Path(__file__).resolve().parent.parent
FREQTRADE = [sys.executable, "-m", "freqtrade"]
ORIGIN_US = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
HOURS = 3
SEED = 7
EPOCHS = 3
#: The Parameters the strategy file declares in the buy space, with their ranges.
BUY_PARAMETERS = {"buy_rsi": (10, 50), "short_rsi": (50, 90), "buy_absorption_candles": (1, 5),
                  "buy_wall_min_bps": (0.0, 10.0)}

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


def test_hyperopt_of_the_buy_space_searches_and_reports_the_strategy_files_parameters(tmp_path: Path) -> None:
    ud = tmp_path / "user_data"
    (ud / "strategies").mkdir(parents=True)
    shutil.copy(ROOT / "user_data" / "strategies" / "HeliosStrategy.py", ud / "strategies")
    rec = ud / "orderflow" / "synth"
    write_synthetic(str(rec), ["BTC/USDT"], SEED, ORIGIN_US, HOURS * 3_600_000_000)
    export_trades(rec, ud / "data" / "binance")
    with start_subprocess(["--synthetic", "--symbols", "BTC/USDT", "--history-minutes", "10"],
                          tmp_path / "exchange.log") as exchange:
        config = json.loads((ROOT / "user_data" / "config.backtest.json").read_text())
        config["exchange"]["ccxt_config"] = ccxt_config(exchange.url)
        config["helios"]["decision"] = {"rsi_period": 3}
        (ud / "config.json").write_text(json.dumps(config))
        common = ["--config", str(ud / "config.json"), "--userdir", str(ud)]
        run([*FREQTRADE, "trades-to-ohlcv", *common, "-p", "BTC/USDT", "-t", "1m"], ud)
        out = run([*FREQTRADE, "hyperopt", *common, "--strategy", "HeliosStrategy", "--spaces", "buy",
                   "--hyperopt-loss", "OnlyProfitHyperOptLoss", "-e", str(EPOCHS), "-j", "1",
                   "--random-state", "3", "--disable-param-export"], ud)
    assert "Traceback" not in out, out[-4000:]
    # The Parameters are read in populate_entry_trend only, so every epoch really uses its sampled values.
    assert "used during indicator calculation" not in out, out[-4000:]
    assert f"{EPOCHS}/{EPOCHS}" in out, out[-4000:]
    # Every epoch tried a value of each declared Parameter, within its range (Freqtrade's results file).
    (results,) = (ud / "hyperopt_results").glob("strategy_HeliosStrategy_*.fthypt")
    epochs = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(epochs) == EPOCHS
    for epoch in epochs:
        assert set(epoch["params_dict"]) == set(BUY_PARAMETERS)
        for name, (low, high) in BUY_PARAMETERS.items():
            assert low <= epoch["params_dict"][name] <= high, (name, epoch["params_dict"])
    assert len({json.dumps(e["params_dict"], sort_keys=True) for e in epochs}) > 1  # the search moved
    assert sum(e["results_metrics"]["total_trades"] for e in epochs) > 0
    # ... and the best one is reported as the strategy file's buy_params.
    block = re.search(r"buy_params = (\{.*?\})", out, re.S)
    assert block, f"no best buy_params reported:\n{out[-4000:]}"
    best = json.loads(re.sub(r",\s*\}", "}", block.group(1)))
    assert set(best) == set(BUY_PARAMETERS)
    assert not (ud / "strategies" / "HeliosStrategy.json").exists()  # --disable-param-export
