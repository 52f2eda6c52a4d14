"""Waiting on a condition instead of sleeping a fixed time: the tests that run real processes and servers poll what
they need (a count reached, a line logged, a subscription made) and fail with what they waited for.

A deadline here is a bound on a hang, not a measurement: generous, so that a busy machine passes where an idle
one is quick."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, every: Callable[[], None] | None = None,
             alive: Callable[[], str | None] | None = None, poll_s: float = 0.05,
             detail: Callable[[], str] | None = None) -> float:
    """Poll ``cond`` until it is true; returns the seconds it took. ``every`` runs before each poll (sampling);
    ``alive`` returns why the wait cannot succeed any more (a process exited) or None; ``detail`` adds to the
    failure message (a log tail). Raises AssertionError naming ``what`` after ``timeout_s``."""
    t0 = time.monotonic()
    while True:
        if every is not None:
            every()
        if cond():
            return time.monotonic() - t0
        dead = alive() if alive is not None else None
        if dead:
            raise AssertionError(f"{dead} while waiting for {what}" + (f"\n{detail()}" if detail else ""))
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}"
                                 + (f"\n{detail()}" if detail else ""))
        time.sleep(poll_s)


async def wait_for_async(cond: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.05) -> float:
    """``wait_for`` inside an event loop: the loop runs on (ccxt reads its sockets) between the polls."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(poll_s)
    return time.monotonic() - t0


def process_exited(proc: Any, name: str = "the process") -> Callable[[], str | None]:
    """An ``alive`` check for ``wait_for``: says so once ``proc`` (a ``subprocess.Popen``) has exited."""
    return lambda: None if proc.poll() is None else f"{name} exited ({proc.returncode})"
