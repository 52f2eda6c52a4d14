"""The page's push socket without a browser: basic auth on the handshake, the message protocol, and resume
after a dropped connection with every column exactly once (dashboard/push.py)."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import numpy as np
import pytest
import websocket  # websocket-client, installed with selenium (the test extra)

from dashboard import figures
from dashboard.app import ServerHandle, run_in_thread
from dashboard.history import PairHistory
from dashboard.push import WS_URL
from dashboard.settings import DashboardSettings
from helios_orderflow.devtools.benchmarks.page import GrowingSource


def _column(h: PairHistory, i: int) -> None:
    w = 2 * h.half_bins + 1
    liq = np.full(w, 1.0, np.float32)
    liq[3] = 50.0
    buy = np.zeros(w, np.float32)
    buy[h.half_bins] = 0.25
    h.add_column(i * h.column_us, 10, liq, buy, np.zeros(w, np.float32), (9.5, 10.5, i * 0.25, 0.0))


def _ws_url(handle: ServerHandle) -> str:
    return handle.url.replace("http://", "ws://").rstrip("/") + WS_URL


def _recv(ws: Any, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ws.settimeout(max(0.05, end - time.monotonic()))
        msg = json.loads(ws.recv())
        if msg["type"] == kind:
            return msg
    raise AssertionError(f"no {kind!r} message in {timeout} s")


def test_an_unauthenticated_websocket_is_refused_when_credentials_are_set() -> None:
    h = PairHistory("x", "A/B", 1.0, 5, 1_000_000, 1000, sample_us=1_000_000)
    for i in range(30):
        _column(h, i)
    handle = run_in_thread(GrowingSource(h), DashboardSettings(port=0), credentials=("ann", "s3cret-pw"))
    try:
        for headers in ([], ["Authorization: Basic " + base64.b64encode(b"ann:wrong").decode()]):
            with pytest.raises(websocket.WebSocketBadStatusException) as err:
                websocket.create_connection(_ws_url(handle), header=headers, timeout=10)
            assert err.value.status_code == 401
        good = ["Authorization: Basic " + base64.b64encode(b"ann:s3cret-pw").decode()]
        ws = websocket.create_connection(_ws_url(handle), header=good, timeout=10)
        try:
            ws.send(json.dumps({"type": "subscribe", "pair": "x A/B", "meta": None}))
            assert _recv(ws, "health")["text"] == "growing"
            assert _recv(ws, "redraw") == {"type": "redraw"}  # data exists, the page has no figure yet
        finally:
            ws.close()
    finally:
        handle.stop()


def test_a_dropped_socket_resumes_after_the_last_column_with_no_gap_and_no_duplicate() -> None:
    h = PairHistory("x", "A/B", 1.0, 5, 500_000, 10_000, sample_us=500_000)
    for i in range(40):
        _column(h, i)
    src = GrowingSource(h)
    handle = run_in_thread(src, DashboardSettings(port=0))
    hub = handle.hub
    stop = threading.Event()
    made: list[int] = [40]

    def grow() -> None:
        while not stop.is_set() and made[0] < 400:
            _column(h, made[0])
            made[0] += 1
            time.sleep(0.01)

    _, meta = figures.build_figure(h, None, None, "percentile", "1m", 5000, final=False)
    meta.update(fig_id=7, follow=True)
    got: list[float] = [*figures.build_figure(h, None, None, "percentile", "1m", 5000, final=False)[0]["data"][0]["x"]]
    grower = threading.Thread(target=grow, daemon=True)
    grower.start()
    try:
        drops = 0
        while made[0] < 400 or got[-1] < (made[0] - 1) * 500:
            ws = websocket.create_connection(_ws_url(handle), timeout=10)
            ws.send(json.dumps({"type": "subscribe", "pair": "x A/B", "meta": meta}))
            try:
                for _ in range(5):  # a few updates, then the server side drops the socket
                    msg = _recv(ws, "columns")
                    assert msg["from_seq"] == meta["seq"] and msg["fig_id"] == 7
                    got += msg["heat"]["x"]
                    meta = msg["meta"]
                    assert json.dumps(msg["lw"])  # the candle update rides along
                if drops < 3:
                    assert hub.drop_all() == 1
                    drops += 1
                    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
                        for _ in range(100):
                            ws.recv()
                else:
                    break
            finally:
                ws.close()
        assert drops == 3
    finally:
        stop.set()
        grower.join(5)
        handle.stop()
    # Every column the engine completed up to the last one received, once each, in order (x = column centres).
    assert got == [i * 500 + 250 for i in range(len(got))]
    assert len(got) > 40


def test_a_live_history_completes_a_column_with_its_last_sample_not_the_next_columns_first() -> None:
    h = PairHistory("x", "A/B", 1.0, 5, 1_000_000, 100, sample_us=500_000)  # two engine samples per column
    _column(h, 0)  # t = 0 s: the first of column 0's two samples
    assert h.seq == 0 and h.complete_until_us() == 0
    h.add_column(500_000, 10, np.ones(11, np.float32), np.zeros(11, np.float32), np.zeros(11, np.float32),
                 (9.5, 10.5, 0.0, 0.0))  # t = 0.5 s: its last: complete now, half a second before t = 1 s arrives
    assert h.seq == 1 and h.complete_until_us() == 1_000_000
