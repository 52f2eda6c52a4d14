"""docker/: the compose file validates with a real compose tool, publishes only on 127.0.0.1, and the
Dockerfile's base image is pinned. The image build itself is not exercised (no Docker engine in CI)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"


def _compose_command() -> tuple[list[str], bool] | None:
    """(command, speaks JSON): the `docker compose` plugin (v2) if it works, else Debian's
    `docker-compose` 1.29, else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"], True
    if shutil.which("docker-compose"):
        return ["docker-compose"], False
    return None


COMPOSE = _compose_command()
needs_compose = pytest.mark.skipif(
    COMPOSE is None,
    reason="neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)",
)


def compose(*args: str, file: Path = COMPOSE_FILE, profile: str | None = None, **env: str):
    assert COMPOSE is not None
    cmd = [*COMPOSE[0], "-f", str(file)]
    if profile:
        cmd += ["--profile", profile]
    # No secrets or HELIOS_CONFIG from the developer's shell in the resolved output.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FREQTRADE__", "HELIOS_"))}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, env={**clean, **env})


def resolved_services(profile: str | None = "demo", **env: str) -> dict[str, dict]:
    """Services of the resolved compose config: name -> {"environment": set variables,
    "ports": [(host_ip, published, target)],
    "command": str, "keys": set of top-level keys, "text": the service's resolved text}."""
    assert COMPOSE is not None
    if COMPOSE[1]:
        proc = compose("config", "--format", "json", profile=profile, **env)
        assert proc.returncode == 0, proc.stderr
        services = {}
        for name, svc in json.loads(proc.stdout)["services"].items():
            ports = [
                (p.get("host_ip", ""), str(p.get("published", "")), str(p["target"])) for p in svc.get("ports", [])
            ]
            command = svc.get("command") or []
            services[name] = {
                "environment": {k: v for k, v in (svc.get("environment") or {}).items() if v is not None},
                "ports": ports,
                "command": " ".join(command) if isinstance(command, list) else command,
                "keys": set(svc),
                "text": json.dumps(svc),
            }
        return services
    proc = compose("config", profile=profile, **env)
    assert proc.returncode == 0, proc.stderr
    return _parse_compose_v1_output(proc.stdout)


def _parse_compose_v1_output(text: str) -> dict[str, dict]:
    """The parts we check of docker-compose 1.29's normalized YAML (2-space indents, short port syntax)."""
    services: dict[str, dict] = {}
    in_services = False
    current: dict | None = None
    block = None
    for line in text.splitlines():
        if not line.startswith(" "):
            in_services = line == "services:"
            current, block = None, None
            continue
        if not in_services:
            continue
        if m := re.fullmatch(r"  (\S+):", line):
            current = services.setdefault(
                m.group(1), {"environment": {}, "ports": [], "command": "", "keys": set(), "text": ""}
            )
            block = None
            continue
        assert current is not None
        current["text"] += line + "\n"
        if m := re.fullmatch(r"    ([A-Za-z_]+):(.*)", line):
            key, rest = m.group(1), m.group(2).strip()
            current["keys"].add(key)
            block = key
            if key == "command" and rest:
                current["command"] = rest
            continue
        item = line.strip()
        if block == "ports" and line.startswith("    - ") and not re.match(r"- \w+: ", item):
            spec = item[2:].strip("'\"").split("/")[0]  # short syntax: [ip:]published:target[/proto]
            parts = spec.split(":")
            host_ip, published, target = (["", *parts] if len(parts) == 2 else parts)[-3:]
            current["ports"].append((host_ip, published, target))
        elif block == "ports":  # long syntax, one "key: value" per line
            key, _, value = item.removeprefix("- ").partition(": ")
            if item.startswith("- "):
                current["ports"].append(("", "", ""))
            host_ip, published, target = current["ports"][-1]
            fields = {"host_ip": host_ip, "published": published, "target": target, key: value.strip("'\"")}
            current["ports"][-1] = (fields["host_ip"], fields["published"], fields["target"])
        elif block == "environment" and ": " in item:
            key, _, value = item.partition(": ")
            if value != "null":
                current["environment"][key] = value.strip("'\"")
        elif block == "command":
            current["command"] += " " + (item[2:] if item.startswith("- ") else item)
    return services


@needs_compose
@pytest.mark.parametrize("profile", [None, "demo"], ids=["default", "demo-profile"])
def test_compose_file_validates(profile):
    proc = compose("config", "-q", profile=profile)
    assert proc.returncode == 0, proc.stderr


@needs_compose
def test_compose_validation_rejects_a_broken_file(tmp_path):
    """The check above can fail: the same tool rejects a bad port mapping and an unknown key."""
    text = COMPOSE_FILE.read_text()
    broken = tmp_path / "bad-ports.yml"
    broken.write_text(text.replace('"127.0.0.1:8080:8080"', '"127.0.0.1:notaport:8080"'))
    assert compose("config", "-q", file=broken).returncode != 0
    unknown = tmp_path / "unknown-key.yml"
    unknown.write_text(
        text.replace("    restart: unless-stopped\n", "    restart: unless-stopped\n    restat: no\n", 1)
    )
    assert compose("config", "-q", file=unknown).returncode != 0


@needs_compose
def test_published_ports_bind_loopback_only():
    services = resolved_services()
    assert set(services) == {"freqtrade", "exchange"}
    assert sorted(services["freqtrade"]["ports"]) == [("127.0.0.1", "8050", "8050"), ("127.0.0.1", "8080", "8080")]
    assert services["exchange"]["ports"] == []  # reachable inside the compose network only
    for svc in services.values():
        assert "network_mode" not in svc["keys"]


@needs_compose
def test_freqtrade_service_runs_helios_strategy_with_user_data_mounted_and_is_supervised():
    svc = resolved_services(profile=None)["freqtrade"]
    assert "trade --strategy HeliosStrategy --config /freqtrade/user_data/config.json" in svc["command"]
    # 1.29 prints "src:dst:rw", v2 a bind mapping: check both ends, not the syntax.
    assert str(ROOT / "user_data") in svc["text"] and "/freqtrade/user_data" in svc["text"]
    assert {"healthcheck", "restart"} <= svc["keys"]
    assert "/api/v1/ping" in svc["text"]
    assert "unless-stopped" in svc["text"]


@needs_compose
def test_demo_profile_runs_the_local_exchange_and_the_bot_can_use_the_demo_config():
    services = resolved_services(HELIOS_CONFIG="config.docker-demo.json")
    assert "--config /freqtrade/user_data/config.docker-demo.json" in services["freqtrade"]["command"]
    exchange = services["exchange"]
    assert "exchange --synthetic --host 0.0.0.0" in exchange["command"]
    assert "demo" in exchange["text"]  # profiles: [demo]


def test_dockerfile_base_image_is_the_pinned_freqtrade_release_helios_is_tested_with():
    froms = [line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("FROM ")]
    assert len(froms) == 1
    image, _, tag = froms[0].partition(":")
    assert image == "freqtradeorg/freqtrade"
    assert re.fullmatch(r"\d{4}\.\d{1,2}", tag), f"base image tag {tag!r} is not a pinned release"
    assert tag == version("freqtrade")


def test_dockerfile_copies_only_paths_that_exist_in_the_repository():
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            sources += words[:-1]
    assert "setup.cfg" in sources and "helios_orderflow" in sources
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert missing == []


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """One .dockerignore pattern as Docker reads it (Go's filepath.Match plus ``**``): ``*`` and ``?`` stay
    within one path segment, ``**`` spans any number of them."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(f"^{out}$")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out: the last pattern matching the path or
    one of its parent folders decides, ``!`` patterns bring a path back."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        keep = raw.startswith("!")
        regex = _dockerignore_regex(raw.lstrip("!").strip("/"))
        if any(regex.match(p) for p in prefixes):
            ignored = not keep
    return ignored


def test_dockerignore_keeps_what_the_dockerfile_copies_and_leaves_out_devtools_tests_and_secrets():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    copied = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            copied += [w.rstrip("/") for w in line.split()[1:] if not w.startswith("--")][:-1]
    kept = []
    for src in copied:
        path = ROOT / src
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        kept += [str(f.relative_to(ROOT)) for f in files
                 if "__pycache__" not in f.parts and "devtools" not in f.parts]
    assert {"setup.cfg", "README.md", "helios_orderflow/cli/main.py", "dashboard/assets/dashboard.css",
            "user_data/strategies/HeliosStrategy.py"} <= set(kept)
    assert [f for f in kept if dockerignored(f, patterns)] == []
    left_out = [
        "helios_orderflow/devtools/data/samples/binance-spot-btcusdt/btcusdt_20240808.gz",
        "helios_orderflow/devtools/soak/run.py", "helios_orderflow/devtools/benchmarks/feed.py",
        "tests/conftest.py", ".venv/bin/python", ".git/HEAD", "build/lib/helios_orderflow/devtools/demo.py",
        "user_data/config.json", "user_data/data/binance/BTC_USDT-1m.feather", "user_data/orderflow/book/x.parquet",
        "user_data/tradesv3.sqlite", "docker/.env", "helios_orderflow/__pycache__/strategy.cpython-311.pyc",
        "user_data/strategies/__pycache__/HeliosStrategy.cpython-311.pyc",
    ]
    assert [f for f in left_out if not dockerignored(f, patterns)] == []


@needs_compose
def test_environment_overrides_reach_freqtrade_and_helios_as_valid_settings(tmp_path):
    """The compose file opens the API and the dashboard on the container's interface through Freqtrade's
    FREQTRADE__SECTION__KEY variables; the result must still be a config both accept."""
    strategy_config = pytest.importorskip("helios_orderflow.freqtrade.config")
    from freqtrade.configuration.environment_vars import _flat_vars_to_nested_dict
    from freqtrade.misc import deep_merge_dicts

    from helios_orderflow.freqtrade.config_template import InitOptions, build_config
    from helios_orderflow.freqtrade.credentials import ApiServerCredentials

    env = resolved_services(profile=None)["freqtrade"]["environment"]
    assert env["FREQTRADE__API_SERVER__LISTEN_IP_ADDRESS"] == "0.0.0.0"
    assert not any(k.startswith("FREQTRADE__EXCHANGE__") for k in env)  # keys: passed through only when set
    overrides = _flat_vars_to_nested_dict(env, "FREQTRADE__")
    assert overrides["api_server"] == {"listen_ip_address": "0.0.0.0"}
    written = build_config(InitOptions(), ApiServerCredentials.generate())
    config = deep_merge_dicts(overrides, copy.deepcopy(written))  # what Freqtrade does with the variables
    assert config["api_server"] == {**written["api_server"], "listen_ip_address": "0.0.0.0"}
    *_, dashboard = strategy_config.read_section(config["helios"])
    assert (dashboard.enabled, dashboard.host, dashboard.port) == (True, "0.0.0.0", 8050)
