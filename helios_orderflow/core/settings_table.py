"""The table of every ``helios`` configuration key: (key, default, description), generated from the settings
dataclasses and their ``#:`` comments. docs/strategy.md's table is checked against it (tests), so the docs
cannot drift from the code."""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any

from helios_orderflow.core.settings import HeliosSettings


def settings_table() -> list[tuple[str, str, str]]:
    """(key, default, description) of every ``helios`` key, from the settings dataclasses and their
    ``#:`` comments (docs/strategy.md's table is checked against this)."""
    rows: list[tuple[str, str, str]] = []
    defaults = HeliosSettings()
    for name in (f.name for f in dataclasses.fields(HeliosSettings)):
        cls = type(getattr(defaults, name))  # each section's own dataclass
        comments = _field_comments(inspect.getsource(cls))
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                raise TypeError(f"settings field {name}.{f.name} has no default: every helios key needs one")
            key = f"{name}.{f.name}"
            rows.append((key, _json(default), comments.get(f.name) or _UNCOMMENTED.get(key, "")))
    return rows


#: Descriptions of keys whose dataclass field carries no ``#:`` comment.
_UNCOMMENTED = {
    "recording.enabled": "Record the live feed's events (the strategy records to user_data/orderflow by default).",
    "risk.min_risk_fraction": "Lower clamp of risk_fraction.",
    "risk.max_risk_fraction": "Upper clamp of risk_fraction.",
    "feed.backoff_max_s": "Reconnect backoff cap, seconds.",
    "feed.backoff_jitter": "Fraction of each reconnect delay taken off at random.",
    "dashboard.port": "TCP port of the page (0 = any free port).",
    "dashboard.password": "Basic-auth password (with username; the environment variable wins).",
}


def _json(value: Any) -> str:
    return json.dumps(value)


def _field_comments(source: str) -> dict[str, str]:
    """``#:`` comment lines above each field of a dataclass source, joined."""
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("#:"):
            pending.append(s[2:].strip())
            continue
        if ":" in s and not s.startswith(("def ", "class ", "@", '"', "#", "_require")):
            name = s.split(":", 1)[0].strip()
            if name.isidentifier():
                out[name] = " ".join(pending)
        pending = []
    return out
