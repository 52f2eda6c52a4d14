"""Secrets stay out of logs: the redaction helpers, and real runs of `helios init` and Freqtrade with
secret values injected through the config file and the environment."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helios_orderflow.freqtrade.credentials import (
    MIN_SECRET_LEN,
    REDACTED,
    ApiServerCredentials,
    RedactingFilter,
    Redactor,
    secret_values_from_config,
)

ROOT = Path(__file__).resolve().parent.parent
FREQTRADE = Path(sys.executable).parent / "freqtrade"


def _clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without pytest's markers (Freqtrade skips its file logging when it
    sees PYTEST_VERSION) and without any FREQTRADE__ variable of the developer's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FREQTRADE__"))}
    env.update(extra)
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


# --- unit: Redactor, RedactingFilter, secret_values_from_config -------------------------------------


def test_redactor_replaces_each_value_and_its_escaped_forms():
    secret = 'p@ss/wo"rd\\x+1'
    r = Redactor([secret, "abc"])  # "abc" is below MIN_SECRET_LEN: ignored
    assert len(r) == 1
    text = (
        f"plain {secret} | repr {secret!r} | json {json.dumps(secret)} | "
        f"url {__import__('urllib.parse').parse.quote(secret, safe='')} | abc stays"
    )
    out = r.redact(text)
    assert secret not in out
    assert repr(secret)[1:-1] not in out
    assert json.dumps(secret)[1:-1] not in out
    assert "p%40ss" not in out
    assert out.count(REDACTED) == 4
    assert out.endswith("abc stays")


def test_redactor_replaces_a_longer_secret_whole_when_it_contains_a_shorter_one():
    r = Redactor(["token", "token-extended-value"])
    assert r.redact("x token-extended-value y token z") == f"x {REDACTED} y {REDACTED} z"


def test_redacting_filter_removes_secrets_from_message_args_and_traceback():
    secret = secrets.token_urlsafe(32)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(Redactor([secret])))
    log = logging.getLogger("helios.test.redacting_filter")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("ccxt config: %s", {"apiKey": secret})
        log.warning(f"inline {secret}")
        try:
            raise ValueError(f"exchange rejected key {secret}")
        except ValueError:
            log.exception("request failed")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert secret not in out
    assert out.count(REDACTED) == 3  # the argument, the f-string, the exception message in the traceback
    assert "ValueError: exchange rejected key [redacted]" in out
    assert "Traceback (most recent call last)" in out


def test_secret_values_from_config_finds_credentials_anywhere_and_in_freqtrade_env_vars():
    creds = ApiServerCredentials.generate()
    config = {
        "exchange": {
            "name": "binance",
            "key": "cfg-key-0001",
            "secret": "cfg-secret-0002",
            "ccxt_config": {"apiKey": "ccxt-key-0003", "options": {"defaultType": "spot"}},
            "pair_whitelist": ["BTC/USDT"],
        },
        "telegram": {"enabled": False, "token": "tg-token-0004", "chat_id": 123456789},
        "webhook": {"url": "https://hooks.example/secret-path-0005"},
        "api_server": {
            "username": "helios",
            "password": creds.password,
            "jwt_secret_key": creds.jwt_secret_key,
            "ws_token": [creds.ws_token],
        },
        "pairlists": [{"method": "VolumePairList", "sort_key": "quoteVolume"}],
        "helios": {"recording": {"path": "orderflow"}},
        "dry_run": True,
    }
    environ = {
        "FREQTRADE__EXCHANGE__KEY": "env-key-0006",
        "FREQTRADE__EXCHANGE__SECRET": "env-secret-0007",
        "FREQTRADE__EXCHANGE__PASSWORD": "abc",  # too short to redact
        "FREQTRADE__BOT_NAME": "not-a-secret",
        "HOME": "/root",
    }
    found = secret_values_from_config(config, environ)
    assert found == {
        "cfg-key-0001",
        "cfg-secret-0002",
        "ccxt-key-0003",
        "tg-token-0004",
        "123456789",
        "https://hooks.example/secret-path-0005",
        creds.password,
        creds.jwt_secret_key,
        creds.ws_token,
        "env-key-0006",
        "env-secret-0007",
    }
    assert all(len(v) >= MIN_SECRET_LEN for v in found)


def test_api_server_credentials_repr_does_not_show_the_secrets():
    creds = ApiServerCredentials.generate()
    text = repr(creds) + str(creds)
    assert "helios" in text
    assert not any(v in text for v in creds.values())


# --- install_redaction in a real process, with Freqtrade's own logging setup ------------------------

_LOGGING_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys, threading
    from freqtrade.loggers import bufferHandler, setup_logging, setup_logging_pre
    from helios_orderflow.freqtrade.credentials import install_redaction, secret_values_from_config

    config_path, logfile, mode = sys.argv[1:4]
    config = json.load(open(config_path))
    setup_logging_pre()
    setup_logging({"verbosity": 1, "logfile": logfile})
    if mode == "redact":
        install_redaction(secret_values_from_config(config, os.environ))
    log = logging.getLogger("freqtrade.exchange.exchange")
    log.info("Applying additional ccxt config: %s", config["exchange"])
    log.info(f"env key {os.environ['FREQTRADE__EXCHANGE__KEY']}")
    logging.getLogger("freqtrade.rpc.api_server").debug("api server %r", config["api_server"])
    try:
        raise RuntimeError("binance apiKey=" + os.environ["FREQTRADE__EXCHANGE__SECRET"])
    except RuntimeError:
        log.exception("request failed")
    def worker():
        raise ValueError("thread saw " + config["api_server"]["password"])
    t = threading.Thread(target=worker, name="feed")
    t.start(); t.join()
    print("\\n".join(bufferHandler.format(r) for r in bufferHandler.buffer))
    sys.stdout.flush()
    raise SystemError("uncaught " + config["api_server"]["ws_token"])
    """
)


def _logging_run(tmp_path: Path, mode: str) -> tuple[str, list[str]]:
    creds = ApiServerCredentials.generate()
    values = {
        "cfg_secret": "cfgsecret-" + secrets.token_hex(12),
        "env_key": "envkey-" + secrets.token_hex(12),
        "env_secret": "envsecret-" + secrets.token_hex(12),
    }
    config = {
        "exchange": {"name": "binance", "secret": values["cfg_secret"]},
        "api_server": {"password": creds.password, "ws_token": creds.ws_token, "jwt_secret_key": creds.jwt_secret_key},
    }
    cfg = tmp_path / f"cfg-{mode}.json"
    cfg.write_text(json.dumps(config))
    logfile = tmp_path / f"log-{mode}.txt"
    env = _clean_env(FREQTRADE__EXCHANGE__KEY=values["env_key"], FREQTRADE__EXCHANGE__SECRET=values["env_secret"])
    proc = _run([sys.executable, "-c", _LOGGING_SCRIPT, str(cfg), str(logfile), mode], env, tmp_path)
    assert proc.returncode == 1, proc.stderr  # the deliberate uncaught SystemError
    captured = "\n".join([proc.stdout, proc.stderr, logfile.read_text()])
    return captured, [*values.values(), *creds.values()]


def test_install_redaction_keeps_secrets_out_of_freqtrade_handlers_and_tracebacks(tmp_path):
    captured, values = _logging_run(tmp_path, "redact")
    leaked = [v for v in values if v in captured]
    assert leaked == []
    # The messages and tracebacks are still there, with the values replaced.
    assert "Applying additional ccxt config" in captured
    assert "RuntimeError: binance apiKey=[redacted]" in captured
    assert "ValueError: thread saw [redacted]" in captured
    assert "SystemError: uncaught [redacted]" in captured


def test_without_redaction_the_same_run_leaks_which_shows_the_check_can_fail(tmp_path):
    captured, values = _logging_run(tmp_path, "plain")
    assert all(v in captured for v in values)


# --- end to end: helios init, then Freqtrade loading that config, secrets injected -------------------


@pytest.mark.slow
@pytest.mark.integration
def test_helios_init_and_freqtrade_runs_log_no_secret_value(tmp_path):
    injected_env = {
        "FREQTRADE__EXCHANGE__KEY": "envkey" + secrets.token_hex(16),
        "FREQTRADE__EXCHANGE__SECRET": "envsecret" + secrets.token_hex(16),
        "FREQTRADE__EXCHANGE__PASSWORD": "envpass" + secrets.token_hex(8),
    }
    env = _clean_env(**injected_env)
    cfg = tmp_path / "user_data" / "config.json"
    init = _run([sys.executable, "-m", "helios_orderflow.cli", "-v", "init", "--config", str(cfg)], env, tmp_path)
    assert init.returncode == 0, init.stderr

    # Secrets in the file as well: the generated API server ones, plus exchange fields a user might add.
    config = json.loads(cfg.read_text())
    file_secrets = {"uid": "cfguid" + secrets.token_hex(12), "account_id": "cfgacct" + secrets.token_hex(12)}
    config["exchange"].update(file_secrets)
    cfg.write_text(json.dumps(config))
    api = config["api_server"]
    generated = [api["password"], api["jwt_secret_key"], api["ws_token"]]
    all_values = [*injected_env.values(), *file_secrets.values(), *generated]

    userdir = tmp_path / "user_data"
    # The project's strategy files when present, so that importing them happens with the secrets injected.
    strategies = userdir / "strategies"
    strategies.mkdir(parents=True, exist_ok=True)
    for source in (ROOT / "user_data" / "strategies").glob("*.py"):
        shutil.copy(source, strategies / source.name)
    logfile = tmp_path / "freqtrade.log"
    listing = _run(
        [
            str(FREQTRADE),
            "list-strategies",
            "--config",
            str(cfg),
            "--userdir",
            str(userdir),
            "--strategy-path",
            str(strategies),
            "-vv",
            "--logfile",
            str(logfile),
        ],
        env,
        tmp_path,
    )
    assert listing.returncode == 0, listing.stderr
    shown = _run([str(FREQTRADE), "show-config", "--config", str(cfg), "--userdir", str(userdir)], env, tmp_path)
    assert shown.returncode == 0, shown.stderr

    log_text = logfile.read_text()
    # The runs really loaded this config and these variables (else the check below proves nothing).
    # (Freqtrade's first lines go to stderr only: the log file is configured after the config is read.)
    assert "Loading variable 'FREQTRADE__EXCHANGE__KEY'" in listing.stderr
    assert f"Using config: {cfg}" in listing.stderr
    assert "Searching for IStrategy" in log_text
    assert '"exchange"' in shown.stdout and "REDACTED" in shown.stdout

    logs = "\n".join([init.stdout, init.stderr, listing.stdout, listing.stderr, log_text, shown.stderr])
    assert [v for v in all_values if v in logs] == []
    # show-config prints the config by design: Freqtrade hides exchange credentials and the API password
    # there, but shows jwt_secret_key and ws_token (documented in docker/README.md).
    hidden_by_show_config = [*injected_env.values(), *file_secrets.values(), api["password"]]
    assert [v for v in hidden_by_show_config if v in shown.stdout] == []
