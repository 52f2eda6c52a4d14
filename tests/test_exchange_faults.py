"""Every fault the local exchange injects is seen by a real ccxt.pro client (an error or a resync) or by a
raw websocket client, and the client's book converges to the server's again (top 100 levels, exact)."""

from __future__ import annotations

import asyncio
import itertools
import json

import aiohttp
import pytest

from tests.exchange_fixtures import (
    assert_exact_and_converged,
    ccxt_client,
    converge,
    errors_of,
    follow_books,
    rest_book_results,
    synthetic_server,
)
from tests.waits import HANG_S, beside, read_ws_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMS = ["BTC/USDT", "ETH/USDT"]


async def raw_depth_frames(url: str, stop: asyncio.Event) -> list[str]:
    """Every text frame of ``btcusdt@depth@100ms`` on the raw endpoint until ``stop`` is set (or the server
    closes the connection: a fault)."""
    frames: list[str] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/ws/btcusdt@depth@100ms") as ws:
        await read_ws_until(ws, frames.append, stop.is_set, HANG_S, "the followers to finish", closed_ok=True)
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
            stats, frames = await beside(follow_books(ex, handle, SYMS, seconds),
                                         lambda stop: raw_depth_frames(handle.url, stop))
            rest_errors = await rest_book_results(ex, "BTC/USDT", 100, rest_calls)
            converged = await converge(ex, handle, SYMS)
            counts = handle.fault_counts()
            depth_fetches = handle.log.rest_by_path.get("/api/v3/depth", 0)
        finally:
            await ex.close()
    return stats, frames, converged, counts, depth_fetches, rest_errors


@pytest.mark.parametrize("kind", ["drop", "reorder", "gap"])
def test_broken_diff_sequence_makes_ccxt_resync_and_converge(kind: str):
    stats, frames, converged, counts, depth_fetches, _ = asyncio.run(run_fault(f"{kind}=1/15"))
    assert counts[kind] >= 4
    ids = id_pairs(frames)
    breaks = sum(1 for (_, u0), (u1_first, _) in itertools.pairwise(ids) if u1_first != u0 + 1)
    assert breaks >= 1  # a raw client sees the sequence break
    assert sum(errors_of(stats).values()) >= 2  # ccxt raised on the break ...
    assert depth_fetches >= len(SYMS) + 2  # ... and re-snapshotted
    assert_exact_and_converged(stats, converged, SYMS)


def test_duplicated_diff_is_seen_raw_and_ignored_by_ccxt():
    stats, frames, converged, counts, depth_fetches, _ = asyncio.run(run_fault("dup=1/10"))
    assert counts["dup"] >= 4
    ids = id_pairs(frames)
    assert sum(1 for a, b in itertools.pairwise(ids) if a == b) >= 1
    assert errors_of(stats) == {}  # a repeated u <= nonce is dropped as stale, no resync needed
    assert depth_fetches == len(SYMS)  # one snapshot per symbol, never another
    assert_exact_and_converged(stats, converged, SYMS)


def test_malformed_frame_reaches_the_client_and_it_recovers():
    stats, frames, converged, counts, _, _ = asyncio.run(run_fault("malformed=1/20", seconds=10.0))
    assert counts["malformed"] >= 2
    bad = [f for f in frames if not _is_json(f)]
    assert bad and bad[0].startswith('{"e":"depthUpdate"')
    # ccxt's receive loop dies on it (orjson raises inside a callback): the client sees a silent stall
    assert errors_of(stats).get("Stall", 0) >= 1
    assert_exact_and_converged(stats, converged, SYMS)


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
    assert_exact_and_converged(stats, converged, SYMS)


def test_stale_snapshot_makes_ccxt_fail_the_sync_and_retry():
    stats, _, converged, counts, depth_fetches, _ = asyncio.run(run_fault("stale=0.5,drop=1/20", seconds=8.0))
    assert counts["stale"] >= 1
    # every stale snapshot costs a failed sync and one more snapshot
    assert sum(errors_of(stats).values()) >= 2 + counts["stale"] - 1
    assert depth_fetches >= len(SYMS) + counts["drop"] + counts["stale"] - 2
    assert_exact_and_converged(stats, converged, SYMS)


@pytest.mark.parametrize(("spec", "error"), [("rest429=1/2", "DDoSProtection"),
                                               ("rest5xx=1/2", "OperationFailed")])
def test_rest_errors_reach_ccxt_as_its_exception_and_books_still_converge(spec: str, error: str):
    stats, _, converged, _counts, _, rest_errors = asyncio.run(run_fault(f"{spec},drop=1/30", rest_calls=4))
    assert rest_errors.count(error) == 2, rest_errors  # every 2nd of 4 depth requests
    assert_exact_and_converged(stats, converged, SYMS)


def test_server_disconnects_make_ccxt_raise_and_reconnect():
    stats, _, converged, counts, depth_fetches, _ = asyncio.run(run_fault("disconnect=2", seconds=7.0))
    assert counts["disconnect"] >= 2
    assert errors_of(stats).get("NetworkError", 0) >= 2
    assert depth_fetches >= 3 * len(SYMS)
    assert_exact_and_converged(stats, converged, SYMS)


def test_unanswered_pings_time_the_ccxt_connection_out():
    stats, _, converged, _counts, _, _ = asyncio.run(run_fault("noping=1.5", seconds=7.0, keep_alive_ms=500))
    assert errors_of(stats).get("RequestTimeout", 0) >= 1, errors_of(stats)
    assert_exact_and_converged(stats, converged, SYMS)
