"""The Helios liquidity page (Dash): in-process beside the bot, or standalone on a recording.

May import: core, signals, engine, recording.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "run_in_thread"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing the package (e.g. for its settings) does not import Dash.
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
