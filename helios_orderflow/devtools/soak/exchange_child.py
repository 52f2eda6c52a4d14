"""The soak's exchange, run as a child process (``--exchange-child``) so its CPU and memory are measured
apart from Helios: the synthetic market at ``rate_x`` times Binance's rate, faults on the schedule, and the
files the run compares the recording with (``sent.bin``, ``faults.jsonl``, ``exchange.json``, ``final.json``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

from helios_orderflow.devtools.soak.schedule import BINANCE_DIFF_US, schedule
from helios_orderflow.devtools.soak.sent_log import DIGEST_LEVELS, book_digest, sent_record


def run_exchange_child(out_dir: Path, symbols: list[str], *, rate_x: float, seed: int, warmup_s: float,
                       run_s: float, keepalive_s: float, quiet_s: float) -> int:
    """Run the soak's exchange until SIGINT/SIGTERM: synthetic market at ``rate_x``, faults on the schedule
    from ``warmup_s`` to ``run_s`` (seconds from its start), every diff in the sent log. SIGUSR1 freezes the
    market and writes ``final.json`` (last books and trade ids, counters)."""
    from helios_orderflow.emulator import server as server_mod
    from helios_orderflow.emulator import synthetic
    from helios_orderflow.emulator.faults import Rate, parse_faults
    from helios_orderflow.emulator.market import Batch, MarketState
    from helios_orderflow.emulator.synthetic import SyntheticSource

    # The model's intensities and the diff grid are module constants of the exchange (read at call time);
    # this process exists only for the soak, so it scales them here.
    for name in ("LIMIT_RATE", "CANCEL_RATE", "MARKET_RATE"):
        setattr(synthetic, name, getattr(synthetic, name) * rate_x)
    step_us = max(1000, int(BINANCE_DIFF_US / rate_x))
    server_mod.STEP_US = step_us
    diffs_per_s = 1e6 / step_us
    index = {s: i for i, s in enumerate(symbols)}
    sent = open(out_dir / "sent.bin", "wb", buffering=1 << 20)
    windows_log = open(out_dir / "faults.jsonl", "w", buffering=1)

    class SoakServer(server_mod.ExchangeServer):
        def _publish(self, st: MarketState, batch: Batch, ts_ms: int, elapsed: float) -> None:
            super()._publish(st, batch, ts_ms, elapsed)
            d = batch.diff
            if d is not None:
                bids, asks = st.top_floats(DIGEST_LEVELS)
                sent.write(sent_record(index[st.inst.symbol], d.first_id, d.last_id, ts_ms, book_digest(bids, asks)))

    source = SyntheticSource(symbols, seed=seed, history_minutes=120)
    server = SoakServer(source, faults=parse_faults(f"seed={seed}"), ping_interval_s=keepalive_s)
    plan = server.faults  # the schedule switches faults on and off in the plan the server holds

    def rate(text: str) -> Rate:
        if text == "per_s":
            return Rate(every=max(2, round(diffs_per_s)))
        if text.startswith("1/"):
            return Rate(every=int(text[2:]))
        return Rate(probability=float(text))

    async def run_schedule(t0: float) -> None:
        for on_s, off_s, w in schedule(warmup_s, run_s, keepalive_s, quiet_s):
            await asyncio.sleep(max(0.0, t0 + on_s - time.time()))
            before = dict(plan.counts)
            started = time.time()
            for kind, text in w.rates:
                plan.rates[kind] = rate(text)
            if w.noping_s:
                plan.noping_s = w.noping_s
            closed = 0
            if w.disconnect:
                closed = await server.hub.close_all(code=1001)
                server.log.disconnects += 1
                plan.counts["disconnect"] = plan.counts.get("disconnect", 0) + 1
            await asyncio.sleep(max(0.0, t0 + off_s - time.time()))
            plan.rates.clear()
            plan.noping_s = 0.0
            ended = time.time()
            fired = {k: plan.counts.get(k, 0) - before.get(k, 0) for k in plan.counts}
            fired = {k: v for k, v in fired.items() if v}
            if w.noping_s:
                fired["noping"] = len(server.hub.conns)  # connections that went without pongs
            if w.disconnect:
                fired["connections_closed"] = closed
            windows_log.write(json.dumps({"kind": w.kind, "on": started, "off": ended, "fired": fired,
                                          "disturbs": w.disturbs}) + "\n")

    async def main() -> None:
        await server.start()
        t0 = time.time()
        (out_dir / "exchange.json").write_text(json.dumps({"url": server.url, "t0": t0, "step_us": step_us}))
        stop = asyncio.Event()
        freeze = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, freeze.set)
        sched = asyncio.ensure_future(run_schedule(t0))
        await asyncio.wait([asyncio.ensure_future(stop.wait()), asyncio.ensure_future(freeze.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        sched.cancel()
        plan.rates.clear()
        plan.noping_s = 0.0
        server.freeze()  # the market stops; websockets and REST keep serving
        final = {}
        for st in source.states:
            bids, asks = st.top_floats(DIGEST_LEVELS)
            final[st.inst.symbol] = {"last_update_id": st.last_update_id, "last_trade_id": st.next_trade_id - 1,
                                     "digest": book_digest(bids, asks)}
        sent.flush()
        tmp = out_dir / ".final.json"
        tmp.write_text(json.dumps({"books": final, "fault_counts": plan.counts, "frozen_at": time.time(),
                                   "diffs_published": server.log.diffs_published,
                                   "trades_published": server.log.trades_published,
                                   "ws_connections": server.log.ws_connections,
                                   "rest_by_path": server.log.rest_by_path}))
        tmp.rename(out_dir / "final.json")
        await stop.wait()
        await server.stop()
        sent.close()
        windows_log.close()

    asyncio.run(main())
    return 0
