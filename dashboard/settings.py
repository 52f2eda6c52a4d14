"""Settings of the liquidity page (``helios.dashboard`` in the Freqtrade config), and who may see it.

Safe defaults: the page binds 127.0.0.1 and needs no password there. Binding any other address requires
basic-auth credentials, from the environment (``HELIOS_DASHBOARD_USER`` / ``HELIOS_DASHBOARD_PASSWORD``,
which win) or from the config; without them the page refuses to start (``check_bind``).
"""

from __future__ import annotations

import ipaddress

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.settings import (
    DASHBOARD_COLORS,
    DASHBOARD_ENV_PASSWORD,
    DASHBOARD_ENV_USER,
    DASHBOARD_SCALES,
    DashboardSettings,
)

# The settings themselves live with every other tunable in helios_orderflow.core.settings.
ENV_USER = DASHBOARD_ENV_USER
ENV_PASSWORD = DASHBOARD_ENV_PASSWORD
SCALES = DASHBOARD_SCALES
COLORS = DASHBOARD_COLORS

__all__ = ["COLORS", "ENV_PASSWORD", "ENV_USER", "SCALES", "DashboardAuthError", "DashboardSettings",
           "HeliosDashboardError", "check_bind", "is_loopback"]


class HeliosDashboardError(HeliosError):
    """The page cannot start (a missing piece of its installation)."""


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
