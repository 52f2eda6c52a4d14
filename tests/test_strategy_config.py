"""The ``helios`` section of the Freqtrade config as HeliosStrategy reads it, and the run-mode logic."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.core.settings_table import settings_table
from helios_orderflow.freqtrade.config import load_config, read_section

ROOT = Path(__file__).resolve().parent.parent


def test_empty_section_gives_every_default() -> None:
    settings, strategy, backtest, dashboard = read_section(None)
    assert settings == HeliosSettings()
    assert strategy.max_spread_bps == 10.0 and strategy.max_loss == 0.02 and not strategy.cross_book
    assert backtest.recordings == "orderflow"
    assert dashboard.enabled is False and dashboard.host == "127.0.0.1"


def test_values_reach_the_typed_settings() -> None:
    settings, strategy, backtest, _ = read_section({
        "decision": {"rsi_buy_below": 45}, "risk": {"risk_fraction": 0.02},
        "strategy": {"max_spread_bps": 3, "cross_book": True}, "backtest": {"recordings": "/data/rec"},
    })
    assert settings.decision.rsi_buy_below == 45.0
    assert settings.risk.risk_fraction == 0.02
    assert strategy.max_spread_bps == 3.0 and strategy.cross_book is True
    assert backtest.recordings == "/data/rec"


@pytest.mark.parametrize(("section", "message"), [
    ({"walls_x": {}}, r"unknown key\(s\) 'walls_x' in helios; allowed: .*strategy"),
    ({"strategy": {"max_spread": 5}}, r"unknown key\(s\) 'max_spread' in helios.strategy"),
    ({"decision": {"rsi_buy_below": "low"}}, r"helios.decision.rsi_buy_below must be a number"),
    ({"strategy": {"max_loss": 2}}, r"helios.strategy.max_loss must be in \(0, 1\)"),
    ({"dashboard": {"enabled": "yes"}}, r"helios.dashboard.enabled must be true or false"),
    ({"strategy": 5}, r"helios.strategy must be an object"),
])
def test_unknown_key_or_bad_value_stops_start_up_naming_the_key(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_section(section)


def test_live_only_in_live_and_dry_run() -> None:
    cfg = {"exchange": {"name": "Binance", "pair_whitelist": ["BTC/USDT"]}, "timeframe": "5m"}
    modes = {m: load_config(cfg, m).live for m in
             ("live", "dry_run", "backtest", "hyperopt", "plot", "webserver", "other")}
    assert modes == {"live": True, "dry_run": True, "backtest": False, "hyperopt": False, "plot": False,
                     "webserver": False, "other": False}
    c = load_config(cfg, "backtest")
    assert c.exchange == "binance" and c.timeframe == "5m" and c.pairs == ("BTC/USDT",)


def test_paths_are_relative_to_user_data_and_recording_can_be_off() -> None:
    c = load_config({"user_data_dir": "/srv/ud", "helios": {"backtest": {"recordings": "rec"}}})
    assert c.recordings_dir == Path("/srv/ud/rec")
    assert c.recording_dir == Path("/srv/ud/orderflow")
    off = load_config({"helios": {"recording": {"enabled": False}}})
    assert off.recording_dir is None


def test_feed_gets_ccxt_config_but_never_api_keys() -> None:
    c = load_config({"trading_mode": "futures", "exchange": {
        "name": "binance", "key": "k-123", "secret": "s-456",
        "ccxt_config": {"urls": {"api": {"public": "http://127.0.0.1:1/api/v3"}}},
        "ccxt_async_config": {"options": {"x": 1}}}})
    assert c.ccxt_config["urls"]["api"]["public"] == "http://127.0.0.1:1/api/v3"
    assert c.ccxt_config["options"] == {"x": 1, "defaultType": "swap"}
    assert "k-123" not in json.dumps(c.ccxt_config) and "s-456" not in json.dumps(c.ccxt_config)


@pytest.mark.parametrize("name", ["config.live.json", "config.dryrun.json", "config.backtest.json"])
def test_example_configs_load(name: str) -> None:
    cfg = json.loads((ROOT / "user_data" / name).read_text())
    c = load_config(cfg, "dry_run")
    assert cfg["strategy"] == "HeliosStrategy"
    assert c.exchange == "binance"
    if name == "config.live.json":
        # keys come from FREQTRADE__EXCHANGE__KEY / FREQTRADE__EXCHANGE__SECRET, never from the file
        assert cfg["dry_run"] is False and cfg["exchange"]["key"] == "" and cfg["exchange"]["secret"] == ""


def test_docs_table_lists_every_key_with_its_default() -> None:
    text = (ROOT / "docs" / "strategy.md").read_text()
    rows = settings_table()
    assert len(rows) > 40
    for key, default, _ in rows:
        m = re.search(rf"^\| `{re.escape(key)}` \| `([^`]*)` \|", text, re.M)
        assert m, f"docs/strategy.md has no row for helios.{key}"
        assert m.group(1) == default, f"helios.{key}: docs say {m.group(1)}, settings say {default}"
    # ... and no row for a key the settings do not have (a deleted setting leaves the table with it).
    documented = re.findall(r"^\| `([a-z_]+\.[a-z_0-9]+)` \| `", text, re.M)
    assert sorted(documented) == sorted(key for key, _, _ in rows)


def test_a_retired_key_from_an_older_config_loads_with_a_warning_saying_what_to_do(
        caplog: pytest.LogCaptureFixture) -> None:
    from helios_orderflow.core.settings import HeliosSettings

    with caplog.at_level(logging.WARNING, logger="helios_orderflow.core.settings"):
        settings = HeliosSettings.from_dict({"dashboard": {"refresh_ms": 500, "window_s": 60}})
    assert settings.dashboard.window_s == 60
    assert [r.getMessage() for r in caplog.records] == [
        "helios: helios.dashboard.refresh_ms is no longer used (the page no longer polls: the server pushes "
        "updates over a WebSocket; delete the key)"]
