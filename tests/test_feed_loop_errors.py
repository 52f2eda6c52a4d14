"""The feed loop's handler of task exceptions nobody retrieved: ccxt answers a venue's ping with a pong task it
never awaits; when the connection is closing meanwhile, that task fails with "Cannot write to closing
transport". The loss of the connection is handled where it is read (a gap, a reconnect), so this must not be
an ERROR line in the bot's log (the soak counts those); any other unretrieved exception still is. A real
aiohttp websocket server and client on localhost."""

from __future__ import annotations

import asyncio
import gc
import logging

import aiohttp
import pytest
from aiohttp import web

from helios_orderflow.live.runner import _loop_exception


async def _unretrieved_failures() -> None:
    """A pong on a websocket whose transport is closing, and a task failing with a bug, neither awaited."""
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.add_routes([web.get("/ws", handler)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws", autoping=False)
            assert ws._response.connection is not None
            ws._response.connection.transport.close()  # the venue drops it: the transport is closing
            pong = asyncio.ensure_future(ws.pong(b"x"))  # what ccxt does on a ping, never awaited

            async def bug() -> None:
                raise ValueError("a bug in a task")

            other = asyncio.ensure_future(bug())
            await asyncio.wait([pong, other])
            del pong, other  # unretrieved: their exceptions reach the loop's handler when collected
            gc.collect()
            await ws.close()
    finally:
        await runner.cleanup()


def test_a_pong_to_a_closing_websocket_is_not_an_error_and_any_other_unretrieved_exception_is(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_loop_exception)
    try:
        with caplog.at_level(logging.DEBUG):
            loop.run_until_complete(_unretrieved_failures())
            gc.collect()
    finally:
        loop.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].getMessage().startswith("Task exception was never retrieved")
    assert "ValueError('a bug in a task')" in errors[0].getMessage()
    assert any("pong to a closing connection failed" in r.getMessage() and r.levelno == logging.DEBUG
               for r in caplog.records)
