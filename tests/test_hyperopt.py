"""Real ``freqtrade hyperopt --spaces buy sell`` of the strategy file on a synthetic recording: Freqtrade finds
the rule's Parameters, the order-flow thresholds among them, searches them on features built once, and
reports the best ones.

Kept small: 3 synthetic hours of one pair (written in-process), 12 epochs on one job (about one in six random
samples of eight Parameters trades on 3 hours; random state 3 trades in two), one hyperopt run shared
by the tests of this module. RSI(3) instead of RSI(14) makes oversold and overbought candles common. Freqtrade
loads markets even in hyperopt, so a local exchange serves them (one for the module). A second, shorter run with
``--analyze-per-epoch`` (populate_indicators in every epoch) shows the later epochs reuse the features.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_hyperopt_thresholds import _check_reproduces

from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.devtools.demo import child_env
from helios_orderflow.emulator.process import start_subprocess
from helios_orderflow.emulator.server import ccxt_config
from helios_orderflow.emulator.synth import write_synthetic
from helios_orderflow.features.compute import compute_features
from helios_orderflow.features.export_trades import export_trades
from tests.commands import run_ok

ROOT = Path(__file__).resolve().parent.parent
FREQTRADE = [sys.executable, "-m", "freqtrade"]
ORIGIN_US = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
HOURS = 3
SEED = 7
EPOCHS = 12
#: Epochs of the ``--analyze-per-epoch`` run (each runs populate_indicators).
PER_EPOCH_EPOCHS = 3
#: The order-flow thresholds the strategy file declares (searched on the engine's per-candle measurements).
ORDERFLOW_PARAMETERS = {"buy_absorption_frac": (0.5, 1.0), "buy_wall_size_k": (0.0, 6.0),
                        "buy_wall_min_age_s": (0, 180), "sell_exhaustion_volume_frac": (0.1, 0.7)}
#: Every Parameter the strategy file declares in the buy and sell spaces, with its range.
PARAMETERS = {"buy_rsi": (10, 50), "short_rsi": (50, 90), "buy_absorption_candles": (1, 5),
              "buy_wall_min_bps": (0.0, 10.0), **ORDERFLOW_PARAMETERS}

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> str:
    # child_env: without PYTEST_VERSION, with which Freqtrade sets up no logging (Helios's log lines are read here);
    # 1000 columns: Freqtrade's console wraps at 200, which cut a log line with a long tmp path in two.
    return run_ok(cmd, cwd, timeout, env={**child_env(), "COLUMNS": "1000"})


@dataclass(frozen=True)
class Workspace:
    """A user_data folder with the strategy file, the synthetic recording, its 1m candles and a config whose
    markets come from the module's local exchange."""
    user_data: Path
    recording: Path
    config: dict[str, Any]

    @property
    def settings(self) -> HeliosSettings:
        return HeliosSettings.from_dict(self.config["helios"])

    def hyperopt(self, *args: str, config: dict[str, Any] | None = None) -> tuple[str, list[dict[str, Any]]]:
        """Freqtrade's output of one ``freqtrade hyperopt --spaces buy sell`` run on one job with ``args``, and
        the epochs of the results file it wrote."""
        ud = self.user_data
        path = ud / "config.json"
        if config is not None:
            path = ud / f"config.{len(list(ud.glob('config.*.json')))}.json"
            path.write_text(json.dumps(config))
        before = set((ud / "hyperopt_results").glob("*.fthypt"))
        out = run([*FREQTRADE, "hyperopt", "--config", str(path), "--userdir", str(ud), "--strategy",
                   "HeliosStrategy", "--spaces", "buy", "sell", "--hyperopt-loss", "OnlyProfitHyperOptLoss",
                   "-j", "1", "--disable-param-export", *args], ud)
        assert "Traceback" not in out, out[-4000:]
        (results,) = set((ud / "hyperopt_results").glob("strategy_HeliosStrategy_*.fthypt")) - before
        return out, [json.loads(line) for line in results.read_text().splitlines()]


@dataclass(frozen=True)
class Hyperopt:
    user_data: Path
    recording: Path
    settings: HeliosSettings
    #: Freqtrade's output, and its results file's epochs.
    out: str
    epochs: list[dict[str, Any]]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    tmp_path = tmp_path_factory.mktemp("hyperopt")
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
        run([*FREQTRADE, "trades-to-ohlcv", "--config", str(ud / "config.json"), "--userdir", str(ud),
             "-p", "BTC/USDT", "-t", "1m"], ud)
        yield Workspace(ud, rec, config)


@pytest.fixture(scope="module")
def hyperopt(workspace: Workspace) -> Hyperopt:
    out, epochs = workspace.hyperopt("-e", str(EPOCHS), "--random-state", "3")
    return Hyperopt(workspace.user_data, workspace.recording, workspace.settings, out, epochs)


def test_hyperopt_of_the_buy_and_sell_spaces_searches_and_reports_the_strategy_files_parameters(
        hyperopt: Hyperopt) -> None:
    out, epochs = hyperopt.out, hyperopt.epochs
    # The Parameters are read in populate_entry_trend only, so every epoch really uses its sampled values.
    assert "used during indicator calculation" not in out, out[-4000:]
    assert f"{EPOCHS}/{EPOCHS}" in out, out[-4000:]
    # Every epoch tried a value of each declared Parameter, within its range (Freqtrade's results file).
    assert len(epochs) == EPOCHS
    for epoch in epochs:
        assert set(epoch["params_dict"]) == set(PARAMETERS)
        for name, (low, high) in PARAMETERS.items():
            assert low <= epoch["params_dict"][name] <= high, (name, epoch["params_dict"])
    assert len({json.dumps(e["params_dict"], sort_keys=True) for e in epochs}) > 1  # the search moved
    assert sum(e["results_metrics"]["total_trades"] for e in epochs) > 0
    # ... and the best ones are reported as the strategy file's buy_params and sell_params.
    best: dict[str, Any] = {}
    for space in ("buy", "sell"):
        block = re.search(space + r"_params = (\{.*?\})", out, re.S)
        assert block, f"no best {space}_params reported:\n{out[-4000:]}"
        best.update(json.loads(re.sub(r",\s*\}", "}", block.group(1))))
    assert set(best) == set(PARAMETERS)
    assert not (hyperopt.user_data / "strategies" / "HeliosStrategy.json").exists()  # --disable-param-export


def test_hyperopt_searches_the_order_flow_thresholds_on_features_built_once(hyperopt: Hyperopt) -> None:
    out, epochs = hyperopt.out, hyperopt.epochs
    moved = [name for name in ORDERFLOW_PARAMETERS if len({e["params_dict"][name] for e in epochs}) > 1]
    assert len(moved) >= 2, [e["params_dict"] for e in epochs]
    # The engine replayed the recording once, before the first epoch; no epoch built features again (one job:
    # the epochs share the strategy and its frames; a worker process would read the cache).
    built = [line for line in out.splitlines() if "helios: order-flow features of BTC/USDT" in line]
    assert len(built) == 1 and "cache miss" in built[0], built
    assert out.index(built[0]) < out.index("Hyperopting with data"), built
    # Freqtrade's run filled the same cache the library reads: the next request is a hit.
    frame = compute_features(hyperopt.recording, "BTC/USDT", "1m", hyperopt.settings)
    assert frame.attrs["helios_cache"] == "hit" and len(frame) == HOURS * 60 + 1


def test_on_the_hyperopt_recording_the_measurements_at_the_engines_thresholds_are_its_signals(
        hyperopt: Hyperopt) -> None:
    frame = compute_features(hyperopt.recording, "BTC/USDT", "1m", hyperopt.settings)
    counts = _check_reproduces(frame, hyperopt.settings)
    assert counts["absorption"] >= 10 and counts["exhaustion"] >= 10, counts


def test_hyperopt_analyzing_per_epoch_builds_the_features_in_the_first_epoch_and_reuses_them_in_every_later_one(
        workspace: Workspace) -> None:
    # --analyze-per-epoch runs populate_indicators in every epoch. On a copy of the recording without its disk
    # cache (the module's other run may have filled the original's), the first epoch builds the features; the
    # later ones are served by the strategy's frames in memory (one job: the epochs share the strategy).
    fresh = workspace.user_data / "orderflow_per_epoch"
    shutil.copytree(workspace.recording, fresh / workspace.recording.name, ignore=shutil.ignore_patterns(".cache"))
    config = json.loads(json.dumps(workspace.config))
    config["helios"]["backtest"]["recordings"] = fresh.name
    out, epochs = workspace.hyperopt("--analyze-per-epoch", "-e", str(PER_EPOCH_EPOCHS), "--random-state", "3",
                                     config=config)
    assert f"{PER_EPOCH_EPOCHS}/{PER_EPOCH_EPOCHS}" in out, out[-4000:]
    assert len(epochs) == PER_EPOCH_EPOCHS
    assert all(set(ORDERFLOW_PARAMETERS) <= set(e["params_dict"]) for e in epochs)
    lines = [line for line in out.splitlines() if "helios: order-flow features of BTC/USDT" in line]
    built = [line for line in lines if ": cache " in line]
    reused = [line for line in lines if ": in memory, " in line]
    # One build (a miss: the fresh copy had no cache), after the data load, i.e. in the first epoch ...
    assert len(built) == 1 and "cache miss" in built[0] and f"from {fresh}" in built[0], lines
    assert out.index("Dataload complete") < out.index(built[0]), lines
    # ... and each later epoch's populate_indicators reused it: uses 2 and 3, nothing else.
    assert len(lines) == len(built) + len(reused) == PER_EPOCH_EPOCHS, lines
    uses = re.findall(r"in memory, use (\d+) \((\d+) candles\)", "\n".join(reused))
    assert uses == [(str(n), str(HOURS * 60 + 1)) for n in range(2, PER_EPOCH_EPOCHS + 1)], reused
    assert all(out.index(built[0]) < out.index(line) for line in reused)
