"""The liquidity page without a browser: history, scaling, figures, live appends, auth, the command."""

from __future__ import annotations

import base64
import gzip
import json
import math
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import _dashboard_oracle as oracle
import numpy as np
import pandas as pd
import pytest
from plotly.io.json import to_json_plotly

from dashboard import figures, scaling
from dashboard.app import create_app, run_in_thread
from dashboard.history import PairHistory
from dashboard.settings import ENV_PASSWORD, ENV_USER, DashboardAuthError, DashboardSettings, check_bind
from dashboard.sources import HistorySource, RecordingSource
from dashboard.synthetic import synthetic_history
from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
from helios_orderflow.engine.candles import CandleFeatures
from helios_orderflow.importers import binance_raw
from helios_orderflow.recording.writer import RecordingWriter

ROOT = Path(__file__).resolve().parent.parent
#: Checked figure of the bundled BTCUSDT capture (../shared/README.md).
BTCUSDT_CVD = -28.93328


@pytest.fixture(scope="module")
def btc_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rec")
    with RecordingWriter(root, RecordingSettings(), flush_by_time=False) as w:
        for ev in binance_raw.iter_events(BINANCE_BTCUSDT_FILES, progress=False):
            w.write(ev)
    return root


@pytest.fixture(scope="module")
def btc_source(btc_recording: Path) -> RecordingSource:
    src = RecordingSource(btc_recording, timeframe="15s")
    src.start()
    assert src.wait(120), "replay of the bundled BTCUSDT recording did not finish"
    assert src.error is None
    return src


def _decode_z(trace: dict) -> np.ndarray:
    spec = trace["z"]
    n, m = (int(v) for v in spec["shape"].split(","))
    return np.frombuffer(base64.b64decode(spec["bdata"]), np.uint8).reshape(n, m)


# ---- history -----------------------------------------------------------------------------------------


def test_history_averages_liquidity_and_sums_trades_within_a_column_across_anchor_moves() -> None:
    h = PairHistory("x", "A/B", 1.0, 2, 1_000_000, 10)  # columns cover anchor-2 .. anchor+2
    nan = math.nan
    h.add_column(0, 100, np.array([1, 2, 3, 4, 5], np.float32), np.array([0, 0, 1, 0, 0], np.float32),
                 np.zeros(5, np.float32), (99.0, 101.0, 1.0, 0.5))
    # Half a second later the mid moved up one bin: its vector is shifted by one against the first.
    h.add_column(500_000, 101, np.array([3, nan, 5, 7, 9], np.float32), np.zeros(5, np.float32),
                 np.array([0, 0, 2, 0, 0], np.float32), (100.0, 102.0, 3.0, 1.5))
    h.add_column(1_000_000, 101, np.ones(5, np.float32), np.zeros(5, np.float32), np.zeros(5, np.float32),
                 (100.0, 102.0, 3.0, 1.5))  # opens the next column: the first is complete
    sl = h.slice()
    assert len(sl) == 1 and sl.seq == 0
    assert sl.anchor_bin[0] == 100
    # bins 98..102: [1], [2, 3], [3, nan -> not counted], [4, 5], [5, 7] (bin 103's 9 falls off the column)
    np.testing.assert_allclose(sl.liquidity[0], [1.0, 2.5, 3.0, 4.5, 6.0])
    np.testing.assert_allclose(sl.buy[0], [0, 0, 1, 0, 0])
    np.testing.assert_allclose(sl.sell[0], [0, 0, 0, 2, 0])  # the second sample's bin 102 is index 3 here
    assert (sl.best_bid[0], sl.best_ask[0], sl.cvd[0], sl.ofi[0]) == (100.0, 102.0, 3.0, 1.5)
    h.flush()
    assert len(h.slice()) == 2


def test_history_memory_is_fixed_by_capacity() -> None:
    h = PairHistory("x", "A/B", 1.0, 3, 1_000, 50)
    v = np.ones(7, np.float32)
    for i in range(500):
        h.add_column(i * 1_000, 10, v, v, v, (1.0, 2.0, 0.0, 0.0))
    h.flush()
    assert h.seq == 500
    assert len(h.slice()) == 50
    assert h.span() == (450_000, 500_000)


# ---- scaling --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", ["percentile", "log"])
def test_a_wall_takes_the_brightest_level_and_empty_cells_stay_black(scale: str) -> None:
    rng = np.random.default_rng(1)
    sizes = rng.uniform(0.5, 2.0, size=1000)
    sizes[123] = 80.0  # the wall
    sizes[7] = 0.0
    thr = scaling.thresholds(sizes, scale)
    lv = scaling.levels(sizes, thr)
    assert lv[123] == 255
    assert lv[7] == 0
    if scale == "percentile":  # each level holds about 1/255 of the 999 cells: the top one about 4
        assert (lv == 255).sum() <= 5
        assert np.median(lv[lv > 0]) == pytest.approx(128, abs=4)
    else:  # log: only the wall reaches the top; the thin book sits far below it
        assert (lv == 255).sum() == 1
        assert lv[np.arange(1000) != 123].max() < 200


# ---- figures on real data ----------------------------------------------------------------------------


def test_recording_replay_reproduces_the_captures_cvd_and_fills_the_history(btc_source: RecordingSource) -> None:
    pair = "binance BTC/USDT"
    assert btc_source.pairs() == [pair]
    hist = btc_source.history(pair)
    assert hist is not None
    assert hist.state.cvd_total == pytest.approx(BTCUSDT_CVD, abs=1e-6)
    lo, hi = hist.span()
    # ~10.8 minutes of book at one column per 500 ms
    assert 1250 <= hist.seq <= 1310
    assert hist.column_us == 500_000
    assert hi - lo == hist.seq * hist.column_us
    assert len(hist.candles) >= 40  # 15 s candles
    assert btc_source.health(pair).level == "ok"


def test_figure_of_the_bundled_recording_draws_every_panel_on_one_price_grid(btc_source: RecordingSource) -> None:
    hist = btc_source.history("binance BTC/USDT")
    fig, meta = figures.build_figure(hist, None, None, "percentile", "1m", 480, final=True, max_bubbles=10**6)
    data = fig["data"]
    for name, i in figures.TRACE.items():
        bars = ("profile_visible", "profile_session")
        kind = "heatmap" if name == "heatmap" else "bar" if name in bars else "scatter"
        assert data[i]["type"] == kind, name
    z = _decode_z(data[0])
    assert z.shape == (meta["n_cols"], meta["n_bins"])
    assert meta["n_cols"] == math.ceil(hist.seq / math.ceil(hist.seq / 480))
    assert (z > 0).mean() > 0.3  # the book covers the grid around the mid
    assert (z == 255).sum() > 0  # walls at the top level
    # Best bid lies on the grid, below the best ask; the heatmap's row of the best bid holds liquidity.
    bid = np.array(data[figures.TRACE["best_bid"]]["y"], float)
    ask = np.array(data[figures.TRACE["best_ask"]]["y"], float)
    assert np.all(bid < ask)
    row = np.floor((bid - data[0]["y0"]) / data[0]["dy"] + 0.5).astype(int)
    assert (z[np.arange(z.shape[0]), row] > 0).mean() > 0.95
    # Bubbles carry every traded lot the heatmap sampled: the recording's taker buy 204.49112 and sell
    # 233.4244 BTC, less the trades printed before the first column (book not yet synced) and after the last.
    sl = hist.slice()
    buys = sum(data[figures.TRACE["buys"]]["customdata"])
    sells = sum(data[figures.TRACE["sells"]]["customdata"])
    assert buys == pytest.approx(float(sl.buy.sum(dtype=np.float64)), rel=1e-6)
    assert sells == pytest.approx(float(sl.sell.sum(dtype=np.float64)), rel=1e-6)
    assert 204.49112 - 0.05 < buys <= 204.49112 + 1e-6
    assert 233.4244 - 0.05 < sells <= 233.4244 + 1e-6
    # The candle side (Lightweight Charts since issue 16; it was Plotly rows 2-4): 1 m candles from 15 s ones
    # over the figure's time range, CVD at each candle's close, volume summed.
    lw = figures.technical_data(hist, "1m", meta["start_us"], meta["end_us"], hist.last_ts_us)
    series = lw["series"]
    assert 10 <= len(series["t"]) <= 12
    assert all(len(v) == len(series["t"]) for v in series.values())
    assert series["cvd"][-1] == pytest.approx(hist.candles[-1].cvd_total, abs=1e-6)
    m = 60_000_000
    shown = [c for c in hist.candles if c.open_time_us // m * m < meta["end_us"] and
             (c.open_time_us // m + 1) * m > meta["start_us"]]
    assert sum(series["volume"]) == pytest.approx(sum(c.volume for c in shown), rel=1e-6)
    assert all(lo <= min(o, c) and hi >= max(o, c) for o, hi, lo, c in zip(
        series["open"], series["high"], series["low"], series["close"], strict=True))
    assert series["t"] == sorted(set(series["t"])) and all(t % 60 == 0 for t in series["t"])
    json.dumps(lw)
    walls = hist.walls(0, 2**62)
    n_ended = sum(1 for w in walls if w.ended_us >= 0)
    assert n_ended > 0
    assert len(data[figures.TRACE["walls_ended"]]["x"]) == 3 * n_ended
    assert len(data[figures.TRACE["walls"]]["x"]) == 3 * (len(walls) - n_ended)
    json.dumps(fig)  # plain JSON, as Dash sends it
    # The default volume filter keeps the 1500 largest bubbles.
    capped, _ = figures.build_figure(hist, None, None, "percentile", "1m", 480, final=True)
    kept = capped["data"][figures.TRACE["buys"]]["customdata"] + capped["data"][figures.TRACE["sells"]]["customdata"]
    every = data[figures.TRACE["buys"]]["customdata"] + data[figures.TRACE["sells"]]["customdata"]
    assert len(every) > 1500 and len(kept) == 1500
    assert min(kept) >= sorted(every)[-1500]


def test_resampled_candles_keep_open_high_low_close_of_their_group() -> None:
    def c(t: int, o: float, h: float, lo: float, cl: float) -> CandleFeatures:
        n = math.nan
        return CandleFeatures(t * 15_000_000, o, h, lo, cl, 1.0, 1, 0.5, 0.5, 0.0, 0.0, 0.0, cl, cl + 1, cl - 1,
                              cl + 2, cl - 2, 0, 0, n, n, n, n, n, n, n, n, n, 0, 0, 0, 0, 1)

    candles = [c(0, 10, 12, 9, 11), c(1, 11, 15, 10, 14), c(2, 14, 14, 8, 9), c(3, 9, 10, 9, 10), c(4, 10, 11, 7, 8)]
    out = figures.resample_candles(candles, "1m", 0, 10**12)
    assert out["open"] == [10, 10] and out["high"] == [15, 11] and out["low"] == [8, 7] and out["close"] == [10, 8]
    assert out["vwap"] == [10, 8]  # VWAP at each group's last candle
    assert out["x"] == [30_000.0, 90_000.0]  # group centres, ms
    assert out["t"] == [0.0, 60.0]  # group opens, s (Lightweight Charts' bar times)
    assert out["volume"] == [4.0, 1.0]


# ---- live appends -----------------------------------------------------------------------------------------


def _grow(h: PairHistory, t0: int, n: int, anchor: int) -> None:
    w = 2 * h.half_bins + 1
    for i in range(n):
        liq = np.full(w, 1.0, np.float32)
        liq[3] = 50.0
        buy = np.zeros(w, np.float32)
        buy[h.half_bins] = 0.25
        cvd = (t0 // h.column_us + i) * 0.25
        h.add_column(t0 + i * h.column_us, anchor, liq, buy, np.zeros(w, np.float32), (9.5, 10.5, cvd, 0.0))


def test_live_update_appends_only_complete_display_columns_then_asks_for_a_redraw_off_grid() -> None:
    h = PairHistory("x", "A/B", 1.0, 5, 1_000_000, 1000)
    _grow(h, 0, 40, 10)  # 40 s of columns; the 40th is still open
    fig, meta = figures.build_figure(h, None, None, "percentile", "1m", 10, final=False)
    # 39 complete history columns, 4 per display column: 9 complete display columns + 1 still filling
    assert meta["disp_us"] == 4_000_000
    assert meta["n_cols"] == 9 and len(fig["data"][0]["x"]) == 9
    assert figures.build_update(h, meta, final=False) == ("none", None)
    _grow(h, 40_000_000, 9, 10)  # up to t=49 s: display columns 9 (36-39 s) and 10 (40-43 s), 11 (44-47 s) done
    kind, upd = figures.build_update(h, meta, final=False)
    assert kind == "append"
    assert upd["heat"]["x"] == [38_000, 42_000, 46_000]
    assert [len(r) for r in upd["heat"]["z"]] == [meta["n_bins"]] * 3
    assert upd["lines"]["best_bid"] == [9.5, 9.5, 9.5]  # at each column's last sample (39, 43, 47 s)
    assert "cvd" not in upd["lines"]  # CVD is drawn per candle by Lightweight Charts (technical_data)
    assert upd["meta"]["n_cols"] == 10  # a sliding window of max_columns
    # the push socket sends it with json.dumps: plain Python numbers only (a held-back display column once made
    # meta.seq a NumPy int64 and killed every socket of a page showing more than max_columns columns)
    json.dumps(upd, allow_nan=False)
    json.dumps(meta, allow_nan=False)
    assert sum(upd["buys"]["v"]) == pytest.approx(12 * 0.25)
    # The wall (bin anchor-5+3) keeps the colour it had in the first figure.
    z0 = _decode_z(fig["data"][0])
    assert upd["heat"]["z"][0][int(np.argmax(z0[0]))] == z0[0].max()
    meta2 = upd["meta"]
    _grow(h, 49_000_000, 10, 10 + 5)  # the mid jumps 5 bins: past the grid's margin
    assert figures.build_update(h, meta2, final=False)[0] == "redraw"


def test_one_hour_of_400_bins_and_10k_trades_fits_300_kb_on_the_wire() -> None:
    hist = synthetic_history(3600, 200, 10_000)
    fig, meta = figures.build_figure(hist, None, None, "percentile", "1m", DashboardSettings().max_display_columns,
                                     final=True)
    body = to_json_plotly({"response": {"graph": {"figure": fig}, "meta": {"data": meta}}, "multi": True})
    wire = len(gzip.compress(body.encode(), 6))
    z = _decode_z(fig["data"][0])
    assert z.shape[1] >= 401 and z.shape[0] * hist.column_us * math.ceil(3600 / z.shape[0]) >= 3600 * 10**6 * 0.99
    trades = len(fig["data"][1]["x"]) + len(fig["data"][2]["x"])
    assert trades > 1000
    assert wire <= 300_000, f"{wire} bytes gzip ({len(body)} raw)"


# ---- auth and binding ------------------------------------------------------------------------------------


def test_a_public_bind_without_credentials_is_refused_and_env_credentials_allow_it() -> None:
    with pytest.raises(DashboardAuthError, match="HELIOS_DASHBOARD_USER"):
        check_bind("0.0.0.0", DashboardSettings(host="0.0.0.0").credentials(environ={}))
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    creds = DashboardSettings(host="0.0.0.0").credentials(environ={ENV_USER: "ann", ENV_PASSWORD: "s3cret-pw"})
    assert creds == ("ann", "s3cret-pw")
    check_bind("0.0.0.0", creds)
    with pytest.raises(DashboardAuthError):
        run_in_thread(HistorySource([]), DashboardSettings(host="192.168.1.10", port=0), credentials=None)


def test_basic_auth_answers_401_without_and_200_with_credentials() -> None:
    src = HistorySource([synthetic_history(60, 20, 100)])
    handle = run_in_thread(src, DashboardSettings(port=0), credentials=("ann", "s3cret-pw"))
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(handle.url, timeout=10)
        assert err.value.code == 401
        assert "Basic" in err.value.headers["WWW-Authenticate"]
        bad = urllib.request.Request(handle.url, headers={"Authorization": "Basic " + base64.b64encode(
            b"ann:wrong").decode()})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=10)
        assert err.value.code == 401
        good = urllib.request.Request(handle.url, headers={"Authorization": "Basic " + base64.b64encode(
            b"ann:s3cret-pw").decode()})
        with urllib.request.urlopen(good, timeout=10) as r:
            assert r.status == 200
            assert b"Helios" in r.read()
    finally:
        handle.stop()


def test_an_app_created_with_settings_for_a_public_host_enforces_env_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_USER, "ann")
    monkeypatch.setenv(ENV_PASSWORD, "s3cret-pw")
    app = create_app(HistorySource([synthetic_history(60, 20, 100)]), DashboardSettings(host="0.0.0.0"))
    c = app.server.test_client()
    assert c.get("/").status_code == 401
    assert c.get("/", headers={"Authorization": "Basic " + base64.b64encode(b"ann:s3cret-pw").decode()}).status_code \
        == 200


def test_dashboard_command_refuses_a_public_host_without_credentials(btc_recording: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k not in (ENV_USER, ENV_PASSWORD)}
    r = subprocess.run([sys.executable, "-m", "helios_orderflow.cli", "dashboard", "--recording", str(btc_recording),
                        "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert r.returncode == 2
    assert "refusing to serve the dashboard on '0.0.0.0' without a password" in r.stderr


# ---- health banner, walls and signals ---------------------------------------------------------------------


def test_health_banner_says_resyncing_after_a_feed_gap_in_a_recording(tmp_path: Path) -> None:
    from helios_orderflow.core.events import FeedGap

    events = list(binance_raw.iter_events(BINANCE_BTCUSDT_FILES[:1], progress=False))[:20_000]
    last = events[-1]
    gap = FeedGap(last.exchange, last.symbol, last.ts_us + 1, last.local_ts_us + 1, "test: connection lost")
    with RecordingWriter(tmp_path, RecordingSettings(), flush_by_time=False) as w:
        for ev in [*events, gap]:
            w.write(ev)
    src = RecordingSource(tmp_path)
    src.start()
    assert src.wait(60)
    health = src.health("binance BTC/USDT")
    assert health.level == "bad"
    assert health.text.startswith("replay done · RESYNCING: book out of sync")
    assert "feed gaps 1" in health.text


def test_health_banner_turns_stale_when_the_live_feed_stops_publishing() -> None:
    from dashboard.sources import SharedStateSource
    from helios_orderflow.core.settings import HealthSettings
    from helios_orderflow.live.health import PairHealth
    from helios_orderflow.live.state import PairSnapshot, SharedState

    now = [100.0]
    state = SharedState("binance", ["BTC/USDT"], HealthSettings(stale_after_s=5.0), clock=lambda: now[0])
    state.publish(PairSnapshot("binance", "BTC/USDT", PairHealth("binance", "BTC/USDT", has_book=True, in_sync=True,
                                                                  last_book_mono_s=99.0, resyncs=2), seq=1))
    src = SharedStateSource(state)
    ok = src.health("binance BTC/USDT")
    assert ok.level == "ok" and ok.text.startswith("live · book updated 1.0 s ago · resyncs 2")
    # a full disk pauses recording: a warning on the banner, not a failure (trading goes on)
    state.publish(PairSnapshot("binance", "BTC/USDT", PairHealth(
        "binance", "BTC/USDT", has_book=True, in_sync=True, last_book_mono_s=99.0, resyncs=2,
        recording_problem="recording paused: the disk is full"), seq=2))
    warn = src.health("binance BTC/USDT")
    assert warn.level == "warn" and "recording paused: the disk is full (trading goes on" in warn.text
    now[0] = 107.5
    stale = src.health("binance BTC/USDT")
    assert stale.level == "bad"
    assert stale.text.startswith("STALE: stale: no book update for 8.5 s (limit 5 s)")


def test_walls_are_drawn_from_first_seen_to_now_with_their_age_and_signals_as_markers() -> None:
    from helios_orderflow.signals.absorption import AbsorptionSignal
    from helios_orderflow.signals.exhaustion import ExhaustionSignal
    from helios_orderflow.signals.walls import Wall

    s = 1_000_000
    active = Wall("bid", 61600.0, 61600.0, 61605.0, 61601.5, 10 * s, 20 * s, 100 * s, 12.5, 14.0, 3.2, 1.0)
    ended = Wall("ask", 61710.0, 61705.0, 61710.0, 61707.0, 5 * s, 15 * s, 40 * s, 1.0, 9.0, 5.0, 8.5, 41 * s,
                 "traded")
    d = figures.walls_data([ended, active], now_us=135 * s, digits=2)
    assert d["walls"]["x"] == [10_000.0, 135_000.0, None] and d["walls"]["y"] == [61602.5, 61602.5, None]
    assert d["wall_labels"]["text"] == ["bid wall 12.5 · 2m05s"]
    assert d["walls_ended"]["x"] == [5_000.0, 41_000.0, None]
    assert d["walls_ended"]["text"][0] == "ask wall 61705-61710, peak 9, lived 36s, traded"
    bull = AbsorptionSignal(50 * s, "bull", 61600.0, 61600.0, 61605.0, 12.5, 14.0, 7.25, 30.0)
    up = ExhaustionSignal(60 * s, "up", 61720.0, 61715.0, 3.0, 4.0, 0.5, 1.2)
    sig = figures.signals_data([bull, up], digits=2)
    assert sig["absorption"]["x"] == [50_000.0] and sig["absorption"]["y"] == [61600.0]
    assert sig["absorption"]["marker.symbol"] == ["triangle-up"]
    assert sig["absorption"]["text"] == ["bullish absorption: 7.25 into wall 14 at 61600"]
    assert sig["exhaustion"]["y"] == [61720.0]
    assert sig["exhaustion"]["text"] == ["buying exhaustion at 61720 (CVD 3 vs 4)"]


def test_the_time_range_control_scrubs_the_recording_when_follow_is_off(btc_source: RecordingSource) -> None:
    app = create_app(btc_source, DashboardSettings())
    c = app.server.test_client()
    deps = c.get("/_dash-dependencies").get_json()
    render = next(d for d in deps if d["output"].startswith("..graph.figure"))
    lo, _ = btc_source.history("binance BTC/USDT").span()

    def inputs(follow: list[str], rng: list[int]) -> list[dict]:
        values = {"pair": "binance BTC/USDT", "timeframe": "15s", "scale": "log", "colors": "bookmap",
                  "views": ["profile"], "follow": follow, "range": rng, "redraw": 0}
        return [{"id": i["id"], "property": i["property"], "value": values[i["id"]]} for i in render["inputs"]]

    body = {"output": render["output"], "outputs": [{"id": "graph", "property": "figure"},
                                                      {"id": "meta", "property": "data"},
                                                      {"id": "lwdata", "property": "data"}],
            "inputs": inputs([], [60, 179]), "changedPropIds": ["range.value"],
            "state": [{"id": "meta", "property": "data", "value": None}]}
    r = c.post("/_dash-update-component", json=body)
    assert r.status_code == 200
    resp = r.get_json()["response"]
    x = resp["graph"]["figure"]["data"][0]["x"]
    assert lo / 1000 + 60_000 <= x[0] and x[-1] < lo / 1000 + 180_000
    assert len(x) == 240  # two minutes of 500 ms columns
    assert resp["meta"]["data"]["scale"] == "log" and "log scale" in resp["graph"]["figure"]["layout"]["title"]["text"]
    # The candles (Lightweight Charts) cover the same two minutes: the 15 s candles overlapping them.
    assert resp["lwdata"]["data"]["series"]["t"][0] * 1000 >= lo / 1000 + 60_000 - 15_000
    assert 8 <= len(resp["lwdata"]["data"]["series"]["t"]) <= 9


# ---- footprint, volume profiles, colours (issue 16) ----------------------------------------------------------


def _cells(trace: dict, bin_size: float, tf_us: int) -> pd.DataFrame:
    """The footprint trace's cells as (candle open µs, bin) -> bid, ask."""
    x = np.array(trace["x"], float)
    y = np.array(trace["y"], float)
    cd = np.array(trace["customdata"], float).reshape(-1, 2)
    idx = pd.MultiIndex.from_arrays([np.round(x * 1000 - tf_us / 2).astype(np.int64),
                                     np.floor(y / bin_size).astype(np.int64)], names=["open_us", "bin"])
    return pd.DataFrame({"bid": cd[:, 0], "ask": cd[:, 1]}, index=idx).sort_index()


def _covered_trades(hist: PairHistory, lag_us: int, start_us: int | None = None) -> pd.DataFrame:
    """The capture's trades the history's columns from ``start_us`` on hold: an engine column sampled at t holds
    [t - lag, t). (The first column holds only the trades since the engine's heatmap began, at the book's sync:
    start after it to compare whole intervals.)"""
    df = oracle.capture_trades()
    lo, hi = hist.span()
    lo = lo if start_us is None else start_us
    return df[(df.ts_us >= lo - lag_us) & (df.ts_us < hi - lag_us)]


@pytest.mark.parametrize("timeframe", ["15s", "1m"])
def test_page_footprint_of_the_capture_equals_a_pandas_groupby_and_flags_imbalances_as_freqtrade(
        btc_source: RecordingSource, timeframe: str) -> None:
    hist = btc_source.history("binance BTC/USDT")
    flow = figures.PageFlow()
    start = hist.span()[0] + hist.column_us  # from the second column: every column a whole interval
    fig, meta = figures.build_figure(hist, start, None, "percentile", timeframe, 480, final=True, flow=flow)
    tf_us = meta["tf_us"]
    ours = _cells(fig["data"][figures.TRACE["footprint"]], hist.bin_size, tf_us)
    want = oracle.footprint(_covered_trades(hist, flow.lag_us, start), hist.bin_size, tf_us)
    assert ours.index.tolist() == want.index.tolist()  # the same (candle, bin) cells, none more, none less
    # float32 column sums (the heatmap's storage) against float64 pandas sums
    np.testing.assert_allclose(ours.bid, want.bid, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.ask, want.ask, rtol=1e-5, atol=1e-6)
    assert len(ours) > (300 if timeframe == "15s" else 150)
    # Imbalances: Freqtrade's own rule function on each candle's traded bins (volumes), ratio 3, minimum 1.
    ft = oracle.freqtrade_imbalances(want, flow.imbalance_ratio, flow.imbalance_volume)
    for name in ("bid_imbalance", "ask_imbalance"):
        drawn = _cells({**fig["data"][figures.TRACE[name]], "customdata": [[0, 0]] * len(
            fig["data"][figures.TRACE[name]]["x"])}, hist.bin_size, tf_us).index
        assert sorted(drawn.tolist()) == sorted(ft.index[ft[name]].tolist()), name
        assert len(drawn) > 5
    # The text shows bid x ask.
    trace = fig["data"][figures.TRACE["footprint"]]
    assert all("×" in t for t in trace["text"]) and trace["visible"] is False  # off by default


def test_hand_worked_imbalances_on_the_page_follow_freqtrades_diagonal_rule() -> None:
    # One 1 m candle, bin 1.0, all trades in one 1 s column (volumes, base units):
    #   bin  97: bid 3.0              next traded bin 99 (98 is empty): 3.0 / ask 0.9 = 3.3 > 3 -> bid imbalance
    #   bin  99: bid 0.5, ask 0.9     ask[100] 4.0 / bid 0.5 = 8 > 3                          -> ask imbalance (at 99)
    #   bin 100: bid 2.0, ask 4.0     bid 2.0 / ask[101] 0.5 = 4 > 3                          -> bid imbalance
    #   bin 101: bid 0.1, ask 0.5     ask[102] 6.0 / 0.1 = 60, but 0.6 < 1.0 (the minimum)     -> none
    #   bin 102: bid 1.0, ask 6.0     the highest in its candle: no next bin (the next candle's 103 does not count)
    # The next candle: bin 103 ask 0.1 (bid[102] 1.0 / 0.1 = 10 would flag 102 if candles were mixed).
    h = oracle.hand_history()
    t0 = oracle.HAND_T0_US
    fig, _ = figures.build_figure(h, None, None, "percentile", "1m", 480, final=True)
    d = fig["data"]
    y = {name: d[figures.TRACE[name]]["y"] for name in ("bid_imbalance", "ask_imbalance")}
    assert y == {"bid_imbalance": [97.5, 100.5], "ask_imbalance": [99.5]}  # bin centres
    assert d[figures.TRACE["bid_imbalance"]]["x"] == [(t0 + 30_000_000) / 1000] * 2  # the first candle's centre
    fp = d[figures.TRACE["footprint"]]
    assert fp["text"][:5] == ["3×0", "0.5×0.9", "2×4", "0.1×0.5", "1×6"]
    assert fp["customdata"][1] == [0.5, 0.9]
    # The same flags from Freqtrade's own function on these cells.
    want = pd.DataFrame({"bid": [3.0, 0.5, 2.0, 0.1, 1.0], "ask": [0.0, 0.9, 4.0, 0.5, 6.0]},
                        index=pd.MultiIndex.from_product([[t0], [97, 99, 100, 101, 102]]))
    want["total_volume"] = want.bid + want.ask
    ft = oracle.freqtrade_imbalances(want, 3.0, 1.0)
    assert ft.bid_imbalance.tolist() == [True, False, True, False, False]
    assert ft.ask_imbalance.tolist() == [False, True, False, False, False]
    # A stricter ratio from helios.footprint: 4 is not > 4, 3.3 not > 4; only 99's 8 stays.
    strict, _ = figures.build_figure(h, None, None, "percentile", "1m", 480, final=True,
                                     flow=figures.PageFlow(imbalance_ratio=4.0))
    assert strict["data"][figures.TRACE["bid_imbalance"]]["y"] == []
    assert strict["data"][figures.TRACE["ask_imbalance"]]["y"] == [99.5]


def test_session_profile_of_the_capture_equals_pandas_on_the_sessions_trades(btc_source: RecordingSource) -> None:
    from dashboard.profile import SessionProfiles

    hist = btc_source.history("binance BTC/USDT")
    flow = figures.PageFlow()
    got = SessionProfiles(flow.lag_us, "00:00", 70.0, 2).profile("p", hist)
    assert got is not None
    start, _since, lv = got
    midnight = 1_723_161_600_000_000  # the capture runs 23:54-00:05 UTC: the session is the 9th's
    assert start == midnight
    part = _covered_trades(hist, flow.lag_us)
    part = part[part.ts_us >= midnight]
    per_bin = part.groupby(oracle.heatmap_bin(part.price, hist.bin_size))["amount"].sum()
    poc, lo, hi = oracle.value_area(per_bin)
    b = hist.bin_size
    assert (lv.poc, lv.val, lv.vah) == ((poc + 0.5) * b, lo * b, (hi + 1) * b)
    assert (lv.poc, lv.val, lv.vah) == (61652.5, 61600.0, 61695.0)
    np.testing.assert_allclose(lv.volume[per_bin.index - lv.first_bin], per_bin.to_numpy(), rtol=1e-5)
    # Drawn: bars (volume / largest bin) and the POC/VAH/VAL lines, labelled.
    fig, _ = figures.build_figure(hist, None, None, "percentile", "15s", 480, final=True, session=got)
    lines = fig["data"][figures.TRACE["session_levels"]]
    assert lines["y"][::3] == [61652.5, 61695.0, 61600.0]
    assert "sPOC 61652.50" in lines["text"]
    bars = fig["data"][figures.TRACE["profile_session"]]
    assert max(bars["x"]) == 1.0 and sum(bars["customdata"]) == pytest.approx(per_bin.sum(), rel=1e-5)
    assert "2024-08-09 00:00 UTC" in bars["name"]


def test_a_live_update_replaces_the_footprint_from_the_candle_its_columns_fall_in() -> None:
    h = PairHistory("x", "A/B", 1.0, 5, 1_000_000, 1000)
    _grow(h, 0, 40, 10)  # 0.25 bought per column at the mid's bin (10)
    fig, meta = figures.build_figure(h, None, None, "percentile", "1m", 10, final=False,
                                     flow=figures.PageFlow(lag_us=1_000_000))
    fp = fig["data"][figures.TRACE["footprint"]]
    # With lag = the column width, the column starting at 0 s holds the trades of [-1, 0) s: the candle before.
    # The figure holds 36 columns (9 display columns of 4): 0 s in candle -1, 1-35 s in candle 0.
    assert fp["x"] == [-30_000.0, 30_000.0] and fp["customdata"] == [[0.0, 0.25], [0.0, 0.25 * 35]]
    _grow(h, 40_000_000, 30, 10)  # to 70 s: the first candle completes, the second begins
    kind, upd = figures.build_update(h, meta, final=False)
    assert kind == "append"
    f = upd["footprint"]
    assert f["from_x"] == 30_000.0  # the first new column (36 s) is in candle 0: resent whole (columns 1-60 s) ...
    assert f["footprint"]["x"] == [30_000.0, 90_000.0]
    assert f["footprint"]["customdata"] == [[0.0, 0.25 * 60], [0.0, 0.25 * 7]]  # ... and candle 1 so far (61-67 s)
    # the figure's window slid to 28 s (10 display columns of 4 s): candle -1's cells leave the page
    assert upd["meta"]["start_us"] == 28_000_000 and f["trim_x"] == 30_000.0


def test_black_yellow_red_colours_are_a_setting_and_a_figure_option() -> None:
    assert DashboardSettings().heatmap_colors == "bookmap"
    assert DashboardSettings(heatmap_colors="black-yellow-red").heatmap_colors == "black-yellow-red"
    with pytest.raises(ConfigError, match="heatmap_colors"):
        DashboardSettings(heatmap_colors="viridis")
    hist = synthetic_history(120, 20, 200)
    for scale in ("percentile", "log"):
        fig, _ = figures.build_figure(hist, None, None, scale, "1m", 480, final=True, colors="black-yellow-red")
        cs = fig["data"][0]["colorscale"]
        assert cs[0] == [0.0, "#000000"] and cs[-1][1] == "#ff0000"  # black to red ...
        assert any(c[1].startswith("#ff") and c[1][3:5] >= "e0" for c in cs)  # ... through yellow
        assert cs == scaling.colorscale(scale, "black-yellow-red")
    assert figures.build_figure(hist, None, None, "log", "1m", 480, final=True)[0]["data"][0]["colorscale"] == \
        scaling.COLORSCALE_LOG


def test_entry_and_exit_markers_come_from_a_real_freqtrade_database(tmp_path: Path) -> None:
    # A real Freqtrade trade database, written by Freqtrade's own persistence layer (init_db, Trade, Order), read
    # by the page in another process (as the page reads it inside the bot's process).
    script = tmp_path / "bot.py"
    script.write_text(BOT_DB_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "tradesv3.sqlite")], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    t0 = 1_723_161_600
    # Freqtrade's own close profit: +0.08 % on the price, less 0.1 % fee each way.
    assert got["trades"] == [
        [t0 * 10**6 + 65_000_000, "entry", True, 61600.5, "long entry absorption"],
        [t0 * 10**6 + 185_000_000, "exit", False, 61650.0, "exit roi -0.12%"],
        [t0 * 10**6 + 250_000_000, "entry", True, 61620.0, "long entry"],
    ]
    # On the candles: each on the bar it happened in (1 m bars), buys below the bar, sells above.
    assert got["markers"] == [
        {"time": t0 + 60, "kind": "entry", "position": "belowBar", "shape": "arrowUp", "text": "long entry absorption",
         "price": 61600.5},
        {"time": t0 + 180, "kind": "exit", "position": "aboveBar", "shape": "arrowDown", "text": "exit roi -0.12%",
         "price": 61650.0},
        {"time": t0 + 240, "kind": "entry", "position": "belowBar", "shape": "arrowUp", "text": "long entry",
         "price": 61620.0},
    ]


BOT_DB_SCRIPT = """
import json, sys
from datetime import datetime, timedelta, timezone

from freqtrade.persistence import Order, Trade, init_db

from dashboard import figures
from dashboard.bot_trades import freqtrade_trades
from dashboard.synthetic import synthetic_history

init_db(f"sqlite:///{sys.argv[1]}")
t0 = datetime(2024, 8, 9, tzinfo=timezone.utc)


def trade(opened, rate, tag, closed=None, close_rate=None, reason=None):
    t = Trade(pair="BTC/USDT", stake_amount=100.0, amount=100.0 / rate, amount_requested=100.0 / rate,
              open_rate=rate, open_date=opened, fee_open=0.001, fee_close=0.001, exchange="binance",
              is_open=True, enter_tag=tag, leverage=1.0, trading_mode="spot", strategy="HeliosStrategy",
              timeframe=1)
    t.orders.append(Order(ft_order_side="buy", ft_pair="BTC/USDT", ft_is_open=False, ft_amount=t.amount,
                          ft_price=rate, order_id=f"b{rate}", status="closed", symbol="BTC/USDT", order_type="limit",
                          side="buy", price=rate, average=rate, amount=t.amount, filled=t.amount, remaining=0,
                          cost=100.0, order_date=opened, order_filled_date=opened))
    Trade.session.add(t)
    Trade.commit()
    if closed is not None:
        t.orders.append(Order(ft_order_side="sell", ft_pair="BTC/USDT", ft_is_open=False, ft_amount=t.amount,
                              ft_price=close_rate, order_id=f"s{rate}", status="closed", symbol="BTC/USDT",
                              order_type="limit", side="sell", price=close_rate, average=close_rate,
                              amount=t.amount, filled=t.amount, remaining=0, cost=t.amount * close_rate,
                              order_date=closed, order_filled_date=closed))
        t.close(close_rate)
        t.close_date = closed
        t.exit_reason = reason
        Trade.commit()


trade(t0 + timedelta(seconds=65), 61600.5, "absorption", t0 + timedelta(seconds=185), 61650.0, "roi")
trade(t0 + timedelta(seconds=250), 61620.0, None)
Trade.session.remove()  # the page reads what is in the database, not this session's objects
found = freqtrade_trades("BTC/USDT")
hist = synthetic_history(600, 10, 50, start_us=1_723_161_600_000_000)
lw = figures.technical_data(hist, "1m", hist.span()[0], hist.span()[1], hist.last_ts_us, bot_trades=found)
marks = [{k: m[k] for k in ("time", "kind", "position", "shape", "text", "price")} for m in lw["markers"]
         if m["kind"] in ("entry", "exit")]
print(json.dumps({"trades": [[b.ts_us, b.kind, b.is_buy, b.price, b.label] for b in found], "markers": marks}))
"""
