"""Waiting on a condition instead of sleeping a fixed time: the tests that run real processes and servers poll what
they need (a count reached, a line logged, a subscription made) and fail with what they waited for.

A deadline here is a bound on a hang, not a measurement: generous, so that a busy machine passes where an idle
one is quick."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

#: The bound on a hang for a read that something else ends (an event): generous, never reached when it works.
HANG_S = 300.0

T = TypeVar("T")
R = TypeVar("R")


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


async def read_ws_until(ws: Any, take: Callable[[str], Any], done: Callable[[], Any], timeout_s: float, what: str,
                        closed_ok: bool = False, poll_s: float = 0.25) -> None:
    """Hand every text frame of the aiohttp websocket ``ws`` to ``take`` until ``done()`` holds (checked after
    each frame, and every ``poll_s`` while none comes, so that ``done`` may be an event set elsewhere). A close
    by the server ends the read when ``closed_ok`` (a fault under test), else fails; so does ``timeout_s`` (a
    bound on a hang), naming ``what``."""
    t0 = time.monotonic()
    while not done():
        left = timeout_s - (time.monotonic() - t0)
        if left <= 0:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        try:
            msg = await ws.receive(timeout=min(poll_s, left))
        except TimeoutError:
            continue
        if msg.type == aiohttp.WSMsgType.TEXT:
            take(msg.data)
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                          aiohttp.WSMsgType.ERROR):
            if closed_ok:
                return
            raise AssertionError(f"the server closed the websocket ({msg.type.name}) while waiting for {what}")


async def beside(follow: Awaitable[T], reader: Callable[[asyncio.Event], Awaitable[R]]) -> tuple[T, R]:
    """Run ``reader(stop)`` (a raw client reading until ``stop`` is set) beside ``follow`` and stop it when
    ``follow`` ends, however it ends: (what ``follow`` returned, what the reader returned)."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(reader(stop))
    try:
        result = await follow
    finally:
        stop.set()
    return result, await task
