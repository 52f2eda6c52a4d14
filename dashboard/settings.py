"""Settings of the liquidity page (``helios.dashboard`` in the Freqtrade config), and who may see it.

Safe defaults: the page binds 127.0.0.1 and needs no password there. Binding any other address requires
basic-auth credentials, from the environment (``HELIOS_DASHBOARD_USER`` / ``HELIOS_DASHBOARD_PASSWORD``,
which win) or from the config; without them the page refuses to start (``check_bind``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from helios_orderflow.errors import ConfigError, HeliosError

ENV_USER = "HELIOS_DASHBOARD_USER"
ENV_PASSWORD = "HELIOS_DASHBOARD_PASSWORD"
SCALES = ("percentile", "log")


def _require(ok: bool, where: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"helios.dashboard.{where} {problem}")


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """The liquidity page. Memory per pair is fixed by ``history_columns`` (see ``history.PairHistory``)."""

    #: Start the page beside the bot (live and dry-run).
    enabled: bool = False
    #: Address and TCP port to bind (0 = any free port). Anything but a loopback address needs credentials.
    host: str = "127.0.0.1"
    port: int = 8050
    #: Basic-auth credentials; the environment variables HELIOS_DASHBOARD_USER/_PASSWORD take precedence.
    username: str = ""
    password: str = ""
    #: How often the browser asks for new data, milliseconds.
    refresh_ms: int = 1000
    #: Heatmap colour scaling: "percentile" (each colour step holds the same share of cells: walls are the
    #: top steps) or "log" (colour proportional to log size).
    heatmap_scale: str = "percentile"
    #: The page shows at most this much history per pair (seconds) ...
    window_s: float = 3600.0
    #: ... kept as at most this many time columns per pair (their width is window_s / history_columns,
    #: never below the engine's snapshot interval).
    history_columns: int = 3600
    #: A figure has at most this many time columns on screen (older columns are averaged together).
    max_display_columns: int = 480
    #: Trade bubbles drawn at most per figure: the largest (a volume filter; the browser draws each one).
    max_bubbles: int = 1500

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "port", "must be in 0..65535")
        _require(self.refresh_ms >= 100, "refresh_ms", "must be >= 100")
        _require(self.heatmap_scale in SCALES, "heatmap_scale", f"must be one of {', '.join(SCALES)}")
        _require(self.window_s > 0, "window_s", "must be > 0")
        _require(10 <= self.history_columns <= 100_000, "history_columns", "must be in 10..100000")
        _require(10 <= self.max_display_columns <= 5000, "max_display_columns", "must be in 10..5000")
        _require(self.max_bubbles >= 0, "max_bubbles", "must be >= 0")
        _require(bool(self.username) == bool(self.password), "username",
                 "and password must be set together (or neither)")

    def credentials(self, environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """(user, password) from the environment, else from the config; None when neither has both."""
        env = os.environ if environ is None else environ
        user = env.get(ENV_USER, "") or self.username
        password = env.get(ENV_PASSWORD, "") or self.password
        if user and password:
            return user, password
        return None


class DashboardAuthError(HeliosError):
    """The page would be reachable from other machines without a password."""


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (the only binds that need no credentials)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, credentials: tuple[str, str] | None) -> None:
    """Refuse a non-loopback bind without credentials (raises DashboardAuthError with what to do)."""
    if credentials is None and not is_loopback(host):
        raise DashboardAuthError(
            f"refusing to serve the dashboard on {host!r} without a password: anyone who can reach this "
            f"machine could read it. Set {ENV_USER} and {ENV_PASSWORD} (or helios.dashboard.username and "
            "password), or bind 127.0.0.1 and use an SSH tunnel"
        )
