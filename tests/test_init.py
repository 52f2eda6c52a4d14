"""`helios init`: the config file it writes (mode, secrets, contents) and Freqtrade accepting it.

The command runs in a subprocess: it installs process-wide log redaction, which must not leak into the
test process."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import re
import select
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.freqtrade.config_template import InitOptions, build_config, local_exchange_ccxt_config
from helios_orderflow.freqtrade.credentials import ApiServerCredentials

URLSAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def helios_init(*args: str, cwd: Path, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(
        [sys.executable, "-m", "helios_orderflow.cli", "init", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
    )


def api_secrets(config: dict) -> list[str]:
    api = config["api_server"]
    return [api["password"], api["jwt_secret_key"], api["ws_token"]]


def assert_strong(token: str) -> None:
    assert set(token) <= URLSAFE
    assert len(token) == 43
    assert len(base64.urlsafe_b64decode(token + "=")) == 32  # 256 random bits


def test_init_writes_default_config_mode_0600_even_with_a_permissive_umask(tmp_path):
    proc = helios_init(cwd=tmp_path, umask=0)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "user_data" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = json.loads(path.read_text())
    assert config["strategy"] == "HeliosStrategy"
    assert config["timeframe"] == "1m"
    assert config["dry_run"] is True
    assert config["trading_mode"] == "spot"
    assert config["exchange"]["name"] == "binance"
    assert config["exchange"]["pair_whitelist"] == ["BTC/USDT", "ETH/USDT"]
    assert config["pairlists"] == [{"method": "StaticPairList"}]
    api = config["api_server"]
    assert (api["enabled"], api["listen_ip_address"], api["listen_port"], api["username"]) == (
        True,
        "127.0.0.1",
        8080,
        "helios",
    )
    # Where the password is, not what it is.
    assert f"jq -r .api_server.password {Path('user_data') / 'config.json'}" in proc.stdout


def test_init_generates_strong_secrets_that_differ_per_run_and_are_never_printed(tmp_path):
    runs = []
    for name in ("a.json", "b.json"):
        proc = helios_init("--config", name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        values = api_secrets(json.loads((tmp_path / name).read_text()))
        for v in values:
            assert_strong(v)
            assert v not in proc.stdout + proc.stderr
        runs.append(values)
    assert len(set(runs[0]) | set(runs[1])) == 6  # no value repeats within or across runs


def test_init_refuses_to_overwrite_without_force_and_replaces_with_force(tmp_path):
    path = tmp_path / "cfg.json"
    assert helios_init("--config", str(path), cwd=tmp_path).returncode == 0
    before = path.read_bytes()

    refused = helios_init("--config", str(path), "--exchange", "binanceusdm", cwd=tmp_path)
    assert refused.returncode == 2
    assert "already exists" in refused.stderr and "--force" in refused.stderr
    assert path.read_bytes() == before
    assert not any(v in refused.stderr + refused.stdout for v in api_secrets(json.loads(before)))

    path.chmod(0o644)  # a loosened old file must not hand its mode to the new one
    forced = helios_init("--config", str(path), "--exchange", "binanceusdm", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    new = json.loads(path.read_text())
    assert new["trading_mode"] == "futures" and new["margin_mode"] == "isolated"
    assert new["exchange"]["pair_whitelist"] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert set(api_secrets(new)).isdisjoint(api_secrets(json.loads(before)))
    assert [p.name for p in tmp_path.iterdir()] == ["cfg.json"]  # no temporary file left behind


def test_init_rejects_bad_input_with_a_message_and_writes_nothing(tmp_path):
    bad_pair = helios_init("--config", "x.json", "--exchange", "binanceusdm", "--pairs", "BTC/USDT", cwd=tmp_path)
    assert bad_pair.returncode == 2
    assert "'BTC/USDT' is not a USD-M futures pair" in bad_pair.stderr and "BTC/USDT:USDT" in bad_pair.stderr
    live_local = helios_init("--config", "x.json", "--exchange", "local", "--live", cwd=tmp_path)
    assert live_local.returncode == 2
    assert "cannot trade live" in live_local.stderr
    assert not (tmp_path / "x.json").exists()


def test_config_holds_no_exchange_keys_and_says_where_they_come_from():
    config = build_config(InitOptions(dry_run=False), ApiServerCredentials.generate())
    assert config["dry_run"] is False
    assert config["db_url"] == "sqlite:///user_data/tradesv3.sqlite"
    exchange_keys = set(config["exchange"])
    assert exchange_keys.isdisjoint({"key", "api_key", "apiKey", "secret", "password", "uid"})
    assert "FREQTRADE__EXCHANGE__KEY" in config["_comment"] and "FREQTRADE__EXCHANGE__SECRET" in config["_comment"]


def test_helios_section_holds_the_engine_settings_defaults_and_loads_back():
    section = build_config(InitOptions(), ApiServerCredentials.generate())["helios"]
    engine = json.loads(json.dumps(dataclasses.asdict(HeliosSettings())))
    assert {k: section[k] for k in engine} == engine
    reloaded = HeliosSettings.from_dict(engine)
    assert json.loads(json.dumps(dataclasses.asdict(reloaded))) == engine


def test_helios_section_is_accepted_whole_by_the_strategy_config_reader():
    from helios_orderflow.freqtrade import config as strategy_config  # a failing import fails the test

    section = build_config(InitOptions(), ApiServerCredentials.generate())["helios"]
    settings, strategy, backtest, dashboard = strategy_config.read_section(section)
    assert settings == HeliosSettings()
    assert (strategy, backtest, dashboard) == (
        strategy_config.StrategySettings(),
        strategy_config.BacktestSettings(),
        strategy_config.DashboardSettings(),
    )


def test_api_server_disabled_still_gets_generated_secrets():
    creds = ApiServerCredentials.generate()
    api = build_config(InitOptions(api_server=False), creds)["api_server"]
    assert api["enabled"] is False
    assert [api["password"], api["jwt_secret_key"], api["ws_token"]] == list(creds.values())


def test_local_exchange_config_sends_every_ccxt_binance_request_to_the_local_port():
    import ccxt

    config = build_config(InitOptions(exchange="local", local_port=9123), ApiServerCredentials.generate())
    exchange = config["exchange"]
    assert exchange["enable_ws"] is False
    assert exchange["ccxt_config"]["options"]["fetchMarkets"]["types"] == ["spot"]
    # A real ccxt client built the way Freqtrade builds it (deep merge of ccxt_config).
    client = ccxt.binance(copy.deepcopy(exchange["ccxt_config"]))
    rest = {k: v for k, v in client.urls["api"].items() if isinstance(v, str)}
    assert len(rest) >= 20
    assert all(v.startswith("http://127.0.0.1:9123/") for v in rest.values()), rest
    assert client.urls["api"]["public"] == "http://127.0.0.1:9123/api/v3"
    assert client.urls["api"]["ws"]["spot"] == "ws://127.0.0.1:9123/stream"
    assert client.options["fetchMarkets"]["types"] == ["spot"]


def test_local_exchange_host_is_configurable_for_docker_compose():
    ccxt_config = local_exchange_ccxt_config("exchange", 8765)
    assert ccxt_config["urls"]["api"]["fapiPublic"] == "http://exchange:8765/fapi/v1"


def test_pairs_must_match_the_stake_currency():
    with pytest.raises(ConfigError, match="quoted in USDC"):
        build_config(InitOptions(pairs=("BTC/USDT",), stake_currency="USDC"), ApiServerCredentials.generate())


@pytest.mark.parametrize(
    "options",
    [InitOptions(), InitOptions(exchange="binanceusdm", dry_run=False), InitOptions(exchange="local")],
    ids=["binance-dry-run", "binanceusdm-live", "local"],
)
def test_freqtrade_accepts_the_generated_config_for_trading(tmp_path, options):
    from freqtrade.configuration import Configuration
    from freqtrade.configuration.config_validation import validate_config_consistency, validate_config_schema
    from freqtrade.enums import RunMode
    from freqtrade.exceptions import ConfigurationError

    written = build_config(options, ApiServerCredentials.generate())
    path = tmp_path / "config.json"
    path.write_text(json.dumps(written))
    (tmp_path / "user_data").mkdir()
    runmode = RunMode.DRY_RUN if options.dry_run else RunMode.LIVE
    config = Configuration({"config": [str(path)], "user_data_dir": str(tmp_path / "user_data")}, runmode).get_config()
    assert config["runmode"] == runmode
    assert config["helios"] == written["helios"]
    assert (config["trading_mode"], config["dry_run"]) == (written["trading_mode"], options.dry_run)
    # Trading requires stoploss and minimal_roi, which HeliosStrategy supplies; the rest must come from us.
    config = copy.deepcopy(config)
    config.update(stoploss=-0.02, minimal_roi={"0": 0.01})
    validate_config_schema(copy.deepcopy(config))
    validate_config_consistency(copy.deepcopy(config))
    # The same validation does reject a trading config that lacks what we write.
    del config["exit_pricing"]
    with pytest.raises(ConfigurationError, match="exit_pricing"):
        validate_config_schema(config)


@pytest.mark.slow
@pytest.mark.integration
def test_freqtrade_loads_its_markets_from_the_local_exchange_with_the_generated_config(tmp_path):
    """`helios init --exchange local` against a running `helios exchange --synthetic`: Freqtrade's own
    test-pairlist loads markets through the generated ccxt_config override, offline."""
    pytest.importorskip("helios_orderflow.cli.commands.exchange")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FREQTRADE__", "PYTEST_"))}
    server = subprocess.Popen(
        [sys.executable, "-m", "helios_orderflow.cli", "exchange", "--synthetic", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready, _, _ = select.select([server.stdout], [], [], 60)
        assert ready, "helios exchange printed nothing within 60 s"
        first = server.stdout.readline()
        port = re.search(r"listening on http://127\.0\.0\.1:(\d+)", first)
        assert port, first
        init = helios_init("--config", "cfg.json", "--exchange", "local", "--local-port", port.group(1), cwd=tmp_path)
        assert init.returncode == 0, init.stderr
        (tmp_path / "user_data").mkdir(exist_ok=True)
        freqtrade = str(Path(sys.executable).parent / "freqtrade")
        pairlist = subprocess.run(
            [freqtrade, "test-pairlist", "--config", "cfg.json", "--userdir", "user_data"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert pairlist.returncode == 0, pairlist.stderr
        assert "['BTC/USDT', 'ETH/USDT']" in pairlist.stdout
    finally:
        server.terminate()
        rest, _ = server.communicate(timeout=30)
    assert "exchangeInfo" in rest  # the markets came from the emulator, not from binance.com
