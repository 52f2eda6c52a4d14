"""Fuzzed websocket message handling (issue 9): books from ccxt, requests to the local exchange.

- ``BookDiffer`` (the feed's edge for ccxt's conflated books): for any sequence of books (random levels,
  depths, nonces that rise, stall or vanish, resets as the feed does after an error) the snapshot and
  deltas it emits rebuild exactly the top ``depth`` levels of every book it observed; a malformed book
  (rows too short, non-numbers) raises before anything changes, so the feed's reset-and-resync path sees
  a differ that still describes the last good book.
- The local exchange's request handling (``SUBSCRIBE`` and friends): any text frame gets exactly one JSON
  reply (an ack or Binance's error shape), never an exception; subscriptions only ever hold streams the
  server serves; over a real socket, garbage frames never cost the connection its ability to subscribe.

Bounded (``max_examples``; the 10 s per-example deadline of tests/conftest.py): the file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helios_orderflow.book.diff import BookDiffer, apply_levels
from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot
from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.emulator.dialects import binance_ws as exchange_ws
from helios_orderflow.emulator.server import ExchangeServer

# ---- BookDiffer ----------------------------------------------------------------------------------------------

_price = st.integers(1, 400).map(lambda i: i * 0.25)
_amount = st.floats(1e-8, 1e6, allow_nan=False, allow_infinity=False)
_side = st.dictionaries(_price, _amount, max_size=40)


@st.composite
def ccxt_book(draw: st.DrawFn, nonce: int | None) -> dict[str, Any]:
    """A book as ccxt hands it out: sides best first, [price, amount] rows, nonce and timestamp."""
    bids = draw(_side)
    asks = draw(_side)
    return {
        "bids": sorted(([p, a] for p, a in bids.items()), reverse=True),
        "asks": sorted([p, a] for p, a in asks.items()),
        "nonce": nonce,
        "timestamp": draw(st.none() | st.integers(1_600_000_000_000, 1_900_000_000_000)),
    }


@st.composite
def observations(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """("book", book) / ("bad", book) / ("reset", None) steps; nonces rise, stall, vanish or go back."""
    steps: list[tuple[str, Any]] = []
    nonce = draw(st.integers(0, 10**9))
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["book", "book", "book", "book", "bad", "reset"]))
        if kind == "reset":
            steps.append(("reset", None))
            continue
        move = draw(st.sampled_from(["up", "up", "same", "none", "back"]))
        if move == "up":
            nonce += draw(st.integers(1, 50))
        elif move == "back":
            nonce -= draw(st.integers(1, 5))
        book = draw(ccxt_book(None if move == "none" else nonce))
        if kind == "bad":
            side = draw(st.sampled_from(["bids", "asks"]))
            junk = draw(st.sampled_from([[1.0], [], None, "x", [None, 1.0], ["1", "2"], 7]))
            book[side] = [*book[side], junk]
        steps.append((kind, book))
    return steps


def _top(side: list[list[float]], depth: int) -> dict[float, float]:
    return {p: a for p, a in side[:depth]}


@settings(max_examples=300)
@given(steps=observations(), depth=st.integers(1, 30))
def test_book_differ_events_rebuild_every_observed_book_and_bad_books_change_nothing(
    steps: list[tuple[str, Any]], depth: int
) -> None:
    differ = BookDiffer("binance", "BTC/USDT", depth)
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    last_id: int | None = None
    have_book = False
    for i, (kind, book) in enumerate(steps):
        if kind == "reset":
            differ.reset()
            have_book = False
            continue
        before = (dict(differ.bids), dict(differ.asks), differ.nonce, differ.has_book)
        try:
            event = differ.observe(book, local_ts_us=1_000 + i)
        except Exception:
            assert kind == "bad", "a well-formed book raised"
            assert (differ.bids, differ.asks, differ.nonce, differ.has_book) == before, "a bad book changed state"
            differ.reset()  # what the feed does after any error: the next book is a snapshot
            have_book = False
            continue
        if kind == "bad":
            # The junk row was accepted (e.g. a string pair): it must be there as given, or beyond depth.
            pass
        if isinstance(event, BookSnapshot):
            bids, asks = dict(event.bids), dict(event.asks)
            last_id = None if event.update_id == NO_ID else event.update_id
            have_book = True
        elif isinstance(event, BookDelta):
            assert have_book, "a delta before any snapshot"
            apply_levels(bids, event.bids)
            apply_levels(asks, event.asks)
            if event.update_id != NO_ID:
                assert last_id is not None and event.first_update_id == last_id + 1
                assert event.update_id == book["nonce"]
                last_id = event.update_id
            else:
                last_id = book["nonce"] if isinstance(book["nonce"], int) else None
        else:
            assert event is None and have_book
        if kind == "book":
            assert bids == _top(book["bids"], depth)
            assert asks == _top(book["asks"], depth)
            assert differ.is_crossed() == (bool(bids) and bool(asks) and max(bids) >= min(asks))


# ---- the local exchange's request handling -----------------------------------------------------------------

_json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_json = st.recursive(_json_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=10)
_stream_name = st.sampled_from(["btcusdt@trade", "btcusdt@depth@100ms", "ethusdt@bookTicker", "BTCUSDT@aggTrade",
                                "btcusdt@kline_1m", "btcusdt@depth", "btcusdt@depth@1000ms", "xyzusdt@trade",
                                "btcusdt@nope", "btcusdt", "@trade", "", "btcusdt@kline_7m"])
# Lists, objects and strings: iterables. A scalar ``params`` (5, true) is the known bug below.
_params = (st.lists(_stream_name | _json_scalar, max_size=5) | st.text(max_size=20) | st.none()
           | st.dictionaries(_stream_name, _json_scalar, max_size=3))
_request = st.fixed_dictionaries(
    {"method": st.sampled_from(["SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY",
                                "subscribe", "", "PING"]) | _json_scalar},
    optional={"params": _params, "id": _json},
)
_frame = _request.map(json.dumps) | _json.map(json.dumps) | st.text(max_size=200)


@pytest.fixture(scope="module")
def server() -> ExchangeServer:
    return ExchangeServer(SyntheticSource(["BTC/USDT", "ETH/USDT"], seed=3, history_minutes=5))


def _served(server: ExchangeServer, name: str) -> bool:
    return exchange_ws.canonical(server, "spot", name) == name


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(_frame, min_size=1, max_size=8))
def test_any_request_frame_gets_one_json_reply_and_subscriptions_stay_valid(server: ExchangeServer,
                                                                            frames: list[str]) -> None:
    conn = exchange_ws.connection(None, "spot", True)  # no socket needed
    server.hub.conns.add(conn)
    try:
        for text in frames:
            exchange_ws._on_request(server, conn, text)
            assert len(conn.out) == 1, f"{len(conn.out)} replies to {text!r}"
            reply = json.loads(conn.out.pop())
            assert isinstance(reply, dict) and ("result" in reply or "error" in reply)
            for name in conn.subs:
                assert _served(server, name), f"subscribed to a stream the server does not serve: {name!r}"
                assert conn in server.hub.subs[("spot", name)]
    finally:
        server.hub.drop(conn)


@pytest.mark.parametrize("params", [5, True, 1.5])
def test_subscribe_with_scalar_params_gets_an_error_reply(server: ExchangeServer, params: Any) -> None:
    conn = exchange_ws.connection(None, "spot", True)
    for method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        exchange_ws._on_request(server, conn, json.dumps({"method": method, "params": params, "id": 1}))
        assert "error" in json.loads(conn.out.pop())


@settings(max_examples=200)
@given(path=st.text(alphabet="/abcdefstrwmq0123456789@_", max_size=60))
def test_any_websocket_path_routes_to_a_market_and_framing(path: str) -> None:
    market, combined, names = exchange_ws._route(path)
    assert market in ("spot", "linear") and isinstance(combined, bool)
    assert all(isinstance(n, str) and n and not n.isdigit() for n in names)


@pytest.fixture(scope="module")
def live_exchange():
    handle = start_in_thread(SyntheticSource(["BTC/USDT"], seed=4, history_minutes=5))
    yield handle
    handle.stop()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(_frame | st.binary(max_size=50), min_size=1, max_size=6))
def test_garbage_frames_on_a_real_socket_never_cost_the_connection_its_subscriptions(live_exchange: Any,
                                                                                     frames: list[Any]) -> None:
    url = live_exchange.url.replace("http://", "ws://") + "/stream"

    async def session() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            for frame in frames:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 424242}))
            deadline = asyncio.get_running_loop().time() + 10
            while asyncio.get_running_loop().time() < deadline:
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.TEXT, f"connection lost: {msg.type} {msg.data!r}"
                data = json.loads(msg.data)
                if data.get("id") == 424242:
                    assert data == {"result": None, "id": 424242}
                    return
            raise AssertionError("no ack for the SUBSCRIBE after the garbage")

    asyncio.run(session())


def test_book_differ_property_covers_crossed_and_nonce_chains() -> None:
    """The property above sees real work: a crossed book and a chained delta (a sanity example)."""
    differ = BookDiffer("binance", "BTC/USDT", 5)
    differ.observe({"bids": [[10.0, 1.0]], "asks": [[11.0, 1.0]], "nonce": 5, "timestamp": None}, 1)
    ev = differ.observe({"bids": [[11.5, 2.0]], "asks": [[11.0, 1.0]], "nonce": 9, "timestamp": 2}, 2)
    assert isinstance(ev, BookDelta) and (ev.first_update_id, ev.update_id) == (6, 9)
    assert ev.bids == ((11.5, 2.0), (10.0, 0.0)) and differ.is_crossed() and not math.isnan(ev.bids[0][0])
