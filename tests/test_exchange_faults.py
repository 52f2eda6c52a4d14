"""Every fault the local exchange injects is seen by a real ccxt.pro client (an error or a resync) or by a
raw websocket client, and the client's book converges to the server's again (top 100 levels, exact)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import aiohttp
import pytest

from tests.exchange_fixtures import ccxt_client, converge, follow_books, synthetic_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMS = ["BTC/USDT", "ETH/USDT"]


async def raw_depth_frames(url: str, seconds: float) -> list[str]:
    """Every text frame of ``btcusdt@depth@100ms`` on the raw endpoint for ``seconds``."""
    frames: list[str] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/ws/btcusdt@depth@100ms") as ws:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                msg = await ws.receive(timeout=max(0.05, end - time.monotonic()))
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.TEXT:
                frames.append(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    return frames


def id_pairs(frames: list[str]) -> list[tuple[int, int]]:
    out = []
    for f in frames:
        try:
            d = json.loads(f)
        except ValueError:
            continue
        out.append((d["U"], d["u"]))
    return out


async def run_fault(spec: str, seconds: float = 6.0, keep_alive_ms: int | None = None, rest_calls: int = 0):
    with synthetic_server(SYMS, seed=3, faults=f"{spec},after=1") as handle:
        ex = ccxt_client(handle, keep_alive_ms=keep_alive_ms)
        try:
            await ex.load_markets()
            raw_task = asyncio.ensure_future(raw_depth_frames(handle.url, seconds))
            stats = await follow_books(ex, handle, SYMS, seconds)
            frames = await raw_task
            rest_errors: list[str] = []
            for _ in range(rest_calls):
                try:
                    await ex.fetch_order_book("BTC/USDT", 100)
                except Exception as exc:
                    rest_errors.append(type(exc).__name__)
            converged = await converge(ex, handle, SYMS)
            counts = handle.fault_counts()
            depth_fetches = handle.log.rest_by_path.get("/api/v3/depth", 0)
        finally:
            await ex.close()
    return stats, frames, converged, counts, depth_fetches, rest_errors


def errors_of(stats) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in stats.values():
        for k, v in s.errors.items():
            out[k] = out.get(k, 0) + v
    return out


def assert_consistent_and_converged(stats, converged) -> None:
    for sym, s in stats.items():
        assert s.mismatches == 0, (sym, s.first_mismatch)
        assert s.checks > 5, sym
    assert converged == {s: True for s in SYMS}


@pytest.mark.parametrize("kind", ["drop", "reorder", "gap"])
def test_broken_diff_sequence_makes_ccxt_resync_and_converge(kind: str):
    stats, frames, converged, counts, depth_fetches, _ = asyncio.run(run_fault(f"{kind}=1/15"))
    assert counts[kind] >= 4
    ids = id_pairs(frames)
    breaks = sum(1 for (_, u0), (u1_first, _) in itertools.pairwise(ids) if u1_first != u0 + 1)
    assert breaks >= 1  # a raw client sees the sequence break
    assert sum(errors_of(stats).values()) >= 2  # ccxt raised on the break ...
    assert depth_fetches >= len(SYMS) + 2  # ... and re-snapshotted
    assert_consistent_and_converged(stats, converged)


def test_duplicated_diff_is_seen_raw_and_ignored_by_ccxt():
    stats, frames, converged, counts, depth_fetches, _ = asyncio.run(run_fault("dup=1/10"))
    assert counts["dup"] >= 4
    ids = id_pairs(frames)
    assert sum(1 for a, b in itertools.pairwise(ids) if a == b) >= 1
    assert errors_of(stats) == {}  # a repeated u <= nonce is dropped as stale, no resync needed
    assert depth_fetches == len(SYMS)  # one snapshot per symbol, never another
    assert_consistent_and_converged(stats, converged)


def test_malformed_frame_reaches_the_client_and_it_recovers():
    stats, frames, converged, counts, _, _ = asyncio.run(run_fault("malformed=1/20", seconds=10.0))
    assert counts["malformed"] >= 2
    bad = [f for f in frames if not _is_json(f)]
    assert bad and bad[0].startswith('{"e":"depthUpdate"')
    # ccxt's receive loop dies on it (orjson raises inside a callback): the client sees a silent stall
    assert errors_of(stats).get("Stall", 0) >= 1
    assert_consistent_and_converged(stats, converged)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def test_crossed_book_is_seen_by_ccxt_then_uncrossed():
    stats, _, converged, counts, _, _ = asyncio.run(run_fault("crossed=1/40", seconds=8.0))
    assert counts["crossed"] >= 2
    assert sum(s.crossed_seen for s in stats.values()) >= 1
    assert_consistent_and_converged(stats, converged)


def test_stale_snapshot_makes_ccxt_fail_the_sync_and_retry():
    stats, _, converged, counts, depth_fetches, _ = asyncio.run(run_fault("stale=0.5,drop=1/20", seconds=8.0))
    assert counts["stale"] >= 1
    # every stale snapshot costs a failed sync and one more snapshot
    assert sum(errors_of(stats).values()) >= 2 + counts["stale"] - 1
    assert depth_fetches >= len(SYMS) + counts["drop"] + counts["stale"] - 2
    assert_consistent_and_converged(stats, converged)


@pytest.mark.parametrize(("spec", "error"), [("rest429=1/2", "DDoSProtection"),
                                               ("rest5xx=1/2", "OperationFailed")])
def test_rest_errors_reach_ccxt_as_its_exception_and_books_still_converge(spec: str, error: str):
    stats, _, converged, _counts, _, rest_errors = asyncio.run(run_fault(f"{spec},drop=1/30", rest_calls=4))
    assert rest_errors.count(error) == 2, rest_errors  # every 2nd of 4 depth requests
    assert_consistent_and_converged(stats, converged)


def test_server_disconnects_make_ccxt_raise_and_reconnect():
    stats, _, converged, counts, depth_fetches, _ = asyncio.run(run_fault("disconnect=2", seconds=7.0))
    assert counts["disconnect"] >= 2
    assert errors_of(stats).get("NetworkError", 0) >= 2
    assert depth_fetches >= 3 * len(SYMS)
    assert_consistent_and_converged(stats, converged)


def test_unanswered_pings_time_the_ccxt_connection_out():
    stats, _, converged, _counts, _, _ = asyncio.run(run_fault("noping=1.5", seconds=7.0, keep_alive_ms=500))
    assert errors_of(stats).get("RequestTimeout", 0) >= 1, errors_of(stats)
    assert_consistent_and_converged(stats, converged)
