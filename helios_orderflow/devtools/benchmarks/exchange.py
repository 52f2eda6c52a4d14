"""Local exchange: server CPU for 50 synthetic symbols streaming depth diffs (10 msg/s each) and trades to a
subscribed websocket client, measured as the server process's CPU time over wall time (must stay < 0.5).
Also the speed of ``helios synth`` (events/s, no recording writer) for 3 symbols."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from helios_orderflow.emulator.process import start_subprocess
from helios_orderflow.emulator.synth import synth_events

N_SYMBOLS = 50


def _symbols() -> list[str]:
    known = ["BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "LTC", "LINK", "AVAX"]
    return [f"{b}/USDT" for b in known] + [f"X{i:02d}/USDT" for i in range(N_SYMBOLS - len(known))]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def _consume(url: str, symbols: list[str], warmup_s: float, window_s: float, pid: int) -> dict:
    streams = []
    for s in symbols:
        sid = s.replace("/", "").lower()
        streams += [f"{sid}@depth@100ms", f"{sid}@trade"]
    counts = {"depth": 0, "trade": 0}
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/stream") as ws:
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}))
        t_end_warm = time.monotonic() + warmup_s
        measuring = False
        cpu0 = t0 = 0.0
        while True:
            now = time.monotonic()
            if not measuring and now >= t_end_warm:
                measuring, cpu0, t0 = True, _cpu_seconds(pid), now
                counts = {"depth": 0, "trade": 0}
            if measuring and now - t0 >= window_s:
                break
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            head = msg.data[:60]
            if "@depth" in head:
                counts["depth"] += 1
            elif "@trade" in head:
                counts["trade"] += 1
        wall = time.monotonic() - t0
        cpu = _cpu_seconds(pid) - cpu0
    return {"cpu": cpu / wall, "depth_per_s": counts["depth"] / wall, "trades_per_s": counts["trade"] / wall}


def run(quick: bool) -> dict[str, float | int | str]:
    symbols = _symbols()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_subprocess(["--synthetic", "--history-minutes", "60", "--symbols", *symbols],
                                Path(tmp) / "exchange.log")
        try:
            res = asyncio.run(_consume(proc.url, symbols, 3.0, 8.0 if quick else 30.0, proc.pid))
        finally:
            proc.stop()
    t0 = time.perf_counter()
    n = sum(1 for _ in synth_events(["BTC/USDT", "ETH/USDT", "SOL/USDT"], 1, 1_704_067_200_000_000,
                                    (120 if quick else 900) * 1_000_000))
    synth_rate = n / (time.perf_counter() - t0)
    return {
        "exchange_cpu_cores_50sym": res["cpu"],
        "exchange_depth_msgs_per_s_50sym": res["depth_per_s"],
        "exchange_trade_msgs_per_s_50sym": res["trades_per_s"],
        "synth_events_per_s_3sym": synth_rate,
    }
