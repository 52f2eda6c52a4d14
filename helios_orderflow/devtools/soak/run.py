"""One soak run: start the exchange child, run the feed (and optionally a Freqtrade dry-run) against it
through the warm-up and the measured minutes, let every pair settle on the frozen market, then compare the
recording with what the exchange produced and write the report."""

from __future__ import annotations

import array
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.devtools.soak.bot import (
    BotLoop,
    bot_loop_report,
    mount_small_fs,
    unmount,
    whitelist_at,
    whitelist_schedule,
    write_pairlist,
)
from helios_orderflow.devtools.soak.compare import compare_recording
from helios_orderflow.devtools.soak.dryrun import ccxt_config_for, freqtrade_report, start_freqtrade
from helios_orderflow.devtools.soak.report import RECOVERY_LIMIT_S, Measurements, build_report, rss_figures
from helios_orderflow.devtools.soak.schedule import PAIRS, QUIET_S, schedule
from helios_orderflow.devtools.soak.watch import (
    HealthWatcher,
    cpu_seconds,
    load_average,
    progress_line,
    rss_bytes,
    wait_settled,
)

if TYPE_CHECKING:
    from helios_orderflow.live.feed import Feed

#: The module the exchange child runs as (``python -m ... --exchange-child``).
_CLI_MODULE = "helios_orderflow.devtools.soak"
#: Seconds after the market froze before the bot is stopped: its feed takes the last diffs (and a pair that
#: was resyncing its snapshot) as the soak's feed does in ``wait_settled``.
BOT_SETTLE_S = 30.0


def run_soak(minutes: float, out_dir: Path, *, pairs: int = 10, rate_x: float = 10.0, seed: int = 1,
             warmup_s: float = 120.0, keepalive_s: float = 5.0, quiet_s: float = QUIET_S, segment_s: float = 60.0,
             flush_interval_s: float = 5.0, heatmap_window_s: float = 60.0, with_freqtrade: bool = False,
             recovery_limit_s: float = RECOVERY_LIMIT_S, whitelist_every_s: float | None = None,
             disk_window: bool = True, progress: TextIO | None = sys.stderr,
             progress_every_s: float = 10.0, memdiag: bool = False, memdiag_trace_frames: int = 0,
             memdiag_trace_in: tuple[str, ...] = ("feed", "bot")) -> dict[str, Any]:
    """Run the soak (see the package doc) for ``minutes`` after ``warmup_s``; returns the report dict and
    writes it to ``out_dir/soak.json``. The recording is ``out_dir/recording``; ``helios.log`` (when run from
    the command line), ``exchange.log``, ``faults.jsonl`` (one line per fault window) and ``sent.bin`` (the
    exchange's sent log) are beside it.

    With ``with_freqtrade``, the bot (``dryrun``, ``bot``) records onto a small tmpfs (``bot-disk``) and
    follows a RemotePairList file (``pairlist.json``) the soak rewrites every ``whitelist_every_s`` (default:
    a third of the measured time, 20 to 90 s); with ``disk_window``, the tmpfs is filled for a while in the
    middle of the measured time. Its recording is compared with what the exchange sent as the feed's is
    (``bot_*`` figures), and its RSS is sampled as the feed's.

    With ``memdiag``, both processes write what their memory is made of every minute (``memdiag``:
    ``memdiag-feed.jsonl``, ``memdiag-bot.jsonl``); with ``memdiag_trace_frames`` > 0 also tracemalloc's
    growth from the third measured minute on (``memdiag-*-growth.txt``), tracing from the first, in the
    processes named in ``memdiag_trace_in`` (tracing hides pymalloc's arena counts: trace one, count the other)."""
    from helios_orderflow.core.settings import HeliosSettings
    from helios_orderflow.live.feed import Feed

    if not 1 <= pairs <= len(PAIRS):
        raise HeliosError(f"--pairs must be 1..{len(PAIRS)}, got {pairs}")
    if rate_x <= 0 or minutes <= 0:
        raise HeliosError("--minutes and --rate-x must be > 0")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("exchange.json", "final.json", "sent.bin", "faults.jsonl"):
        (out_dir / name).unlink(missing_ok=True)
    rec_root = out_dir / "recording"
    if rec_root.exists() and any(rec_root.iterdir()):
        raise HeliosError(f"{rec_root} already holds a recording; give an empty --out directory")
    symbols = list(PAIRS[:pairs])
    run_s = warmup_s + minutes * 60.0
    cmd = [sys.executable, "-m", _CLI_MODULE, "--exchange-child", "--dir", str(out_dir),
           "--rate-x", str(rate_x), "--seed", str(seed), "--warmup-s", str(warmup_s), "--run-s", str(run_s),
           "--keepalive-s", str(keepalive_s), "--quiet-s", str(quiet_s), "--symbols", *symbols]
    child_log = open(out_dir / "exchange.log", "w")
    child = subprocess.Popen(cmd, stdout=child_log, stderr=subprocess.STDOUT)
    freqtrade: subprocess.Popen[bytes] | None = None
    feed: Feed | None = None
    botloop: BotLoop | None = None
    bot_disk = out_dir / "bot-disk"
    bot_rec: Path | None = None
    disk_skipped: str | None = None
    mounted = False
    bot_report: dict[str, Any] = {}
    diag = None
    load_start = load_average()
    try:
        info = wait_for_file(out_dir / "exchange.json", child, 120)
        t0 = info["t0"]
        settings = HeliosSettings.from_dict({
            "feed": {"ws_keepalive_s": keepalive_s},
            "recording": {"flush_interval_s": flush_interval_s, "segment_s": segment_s},
            # The heatmap ring is allocated whole but its pages are committed as it fills (11 MB per pair
            # over the default hour): a window shorter than the warm-up makes RSS after warm-up the steady
            # state, so growth measures leaks, not a bounded ring filling up.
            "heatmap": {"window_s": heatmap_window_s},
        })
        feed = Feed("binance", symbols, settings, ccxt_config=ccxt_config_for(info["url"]), record_to=rec_root)
        feed.start()
        measured_s = run_s - warmup_s
        trace_at = t0 + warmup_s + 60.0
        if memdiag:
            from helios_orderflow.devtools.soak import memdiag as md

            diag = md.start(out_dir, "feed", trace_at=trace_at,
                            trace_frames=memdiag_trace_frames if "feed" in memdiag_trace_in else 0)
        if with_freqtrade:
            pairlist = out_dir / "pairlist.json"
            write_pairlist(pairlist, whitelist_at(symbols, 0))
            if not disk_window:
                disk_skipped = "--no-disk-window"
            elif (disk_skipped := mount_small_fs(bot_disk)) is None:
                mounted = True
            if disk_skipped is not None and progress is not None:
                progress.write(f"helios soak: the disk-full window is skipped: {disk_skipped}\n")
            bot_rec = (bot_disk if mounted else out_dir / "freqtrade") / "orderflow"
            freqtrade = start_freqtrade(info["url"], symbols, out_dir, pairlist=pairlist, recording=bot_rec,
                                        heatmap_window_s=heatmap_window_s, segment_s=segment_s,
                                        memdiag=["--out", str(out_dir.resolve()), "--name", "bot", "--trace-at",
                                                 str(trace_at), "--trace-frames",
                                                 str(memdiag_trace_frames if "bot" in memdiag_trace_in else 0)]
                                        if memdiag else None)
            every = whitelist_every_s or min(90.0, max(20.0, measured_s / 3))
            disk_s = min(60.0, max(10.0, measured_s / 5))
            disk_on = t0 + warmup_s + 0.4 * measured_s
            botloop = BotLoop(pairlist, symbols, [t0 + t for t in whitelist_schedule(warmup_s, run_s, every)],
                              (disk_on, disk_on + disk_s) if mounted else None,
                              bot_disk / "ballast" if mounted else None)
        windows = [(t0 + a, t0 + b, w) for a, b, w in schedule(warmup_s, run_s, keepalive_s, quiet_s)]
        watcher = HealthWatcher(feed, windows, measured=(t0 + warmup_s, t0 + run_s))
        sleep_until(t0 + warmup_s, watcher.sample)
        cpu_start, cpu_child_start, wall_start = cpu_seconds(), cpu_seconds(child.pid), time.time()
        events_start = feed.stats.events
        freqtrade_cpu_start = cpu_seconds(freqtrade.pid) if freqtrade is not None else 0.0
        # RSS once a second into storage allocated now, so that measuring does not grow what it measures.
        rss_track = array.array("q", bytes(8 * (int(minutes * 60) + 30)))
        n_rss = 0
        rss_start = rss_bytes()
        bot_rss = array.array("q", bytes(8 * (int(minutes * 60) + 30))) if freqtrade is not None else None
        next_progress = wall_start + progress_every_s
        next_rss = wall_start
        while True:
            now = time.time()
            if now >= t0 + run_s:
                break
            watcher.sample(now)
            if botloop is not None:
                botloop.tick(now)
            if now >= next_rss and n_rss < len(rss_track):
                rss_track[n_rss] = rss_bytes()
                if bot_rss is not None and freqtrade is not None and freqtrade.poll() is None:
                    bot_rss[n_rss] = rss_bytes(freqtrade.pid)
                n_rss += 1
                next_rss += 1.0
            if progress is not None and now >= next_progress:
                next_progress += progress_every_s
                progress_line(progress, feed, now - wall_start, run_s - warmup_s, events_start, wall_start,
                              cpu_start, rss_start, watcher)
            if child.poll() is not None:
                raise HeliosError(f"the soak's exchange exited early; see {out_dir / 'exchange.log'}")
            time.sleep(0.1)
        # Faults are off since the last window; let every pair finish its resync before the market stops
        # (ccxt re-snapshots only after a few diffs arrive: a pair resyncing on a frozen market never would).
        t_end = time.time()
        cpu_end, cpu_child_end, wall_end = cpu_seconds(), cpu_seconds(child.pid), t_end
        if diag is not None:
            diag.stop()
        while time.time() - t_end < 60 and not all(feed.state.is_healthy(s) for s in symbols):
            watcher.sample(time.time())
            time.sleep(0.1)
        watcher.sample(time.time())
        watcher.finish(all(feed.state.is_healthy(s) for s in symbols))
        child.send_signal(signal.SIGUSR1)  # freeze the market, write final.json
        final = wait_for_file(out_dir / "final.json", child, 60)
        settle_s = time.time() - t_end + wait_settled(feed, final["books"], watcher, 20.0)
        freqtrade_facts: dict[str, Any] = {}
        if freqtrade is not None and botloop is not None:
            botloop.free()
            freqtrade_cpu = cpu_seconds(freqtrade.pid) - freqtrade_cpu_start if freqtrade.poll() is None else 0.0
            # the bot's feed gets the frozen market's last diffs too (a pair resyncing takes a few seconds)
            sleep_until(final["frozen_at"] + BOT_SETTLE_S, watcher.sample)
            freqtrade_facts = freqtrade_report(freqtrade, out_dir, freqtrade_cpu, wall_end - wall_start)
            stop_process(freqtrade, 90)  # a clean stop closes the bot's recording
            bot_report = bot_loop_report(botloop, (out_dir / "freqtrade" / "freqtrade.log").read_text(
                errors="replace"), disk_skipped)
            if bot_rss is not None:
                bot_report.update(rss_figures([v for v in bot_rss[:n_rss] if v > 0] or [1], segment_s, "bot_"))
        stats = feed.stats
        health = {s: snap.health for s, snap in feed.state.all().items()}
        feed.stop()
        events_written, bytes_written = feed.recording_stats()
    except BaseException:
        if mounted:
            if freqtrade is not None:
                stop_process(freqtrade, 90)
            unmount(bot_disk)
        raise
    finally:
        if feed is not None:
            feed.stop()
        if botloop is not None:
            botloop.free()
        if freqtrade is not None:
            stop_process(freqtrade, 90)
        stop_process(child)
        child_log.close()
    final = json.loads((out_dir / "final.json").read_text())
    fault_windows = [json.loads(line) for line in (out_dir / "faults.jsonl").read_text().splitlines() if line]
    for res, logged in zip(watcher.results, fault_windows, strict=False):
        res.fired = logged["fired"]
    comparison = compare_recording(rec_root, out_dir / "sent.bin", symbols, final["books"])
    if botloop is not None and bot_rec is not None:
        try:
            bot_cmp = compare_recording(bot_rec, out_dir / "sent.bin", symbols, final["books"],
                                        final_symbols=botloop.whitelist_now())
        finally:
            if mounted:
                # kept for a look after the run (the tmpfs goes with the unmount)
                with contextlib.suppress(OSError):
                    shutil.copytree(bot_rec, out_dir / "freqtrade" / "orderflow", dirs_exist_ok=True)
                unmount(bot_disk)
        bot_report.update({f"bot_{k}": v for k, v in bot_cmp.items()})
        bot_report["bot_final_pairs"] = len(botloop.whitelist_now())
        freqtrade_facts.update(bot_report)
    elif mounted:
        unmount(bot_disk)
    measured = Measurements(
        span_s=wall_end - wall_start, events_start=events_start, stats=stats, health=health, watcher=watcher,
        final=final, rss_samples=list(rss_track[:n_rss]) or [rss_start], cpu_helios_s=cpu_end - cpu_start,
        cpu_exchange_s=cpu_child_end - cpu_child_start, load_start=load_start, settle_s=settle_s,
        events_recorded=events_written, bytes_recorded=bytes_written, comparison=comparison,
        freqtrade=freqtrade_facts)
    report = build_report(measured, minutes=minutes, pairs=pairs, rate_x=rate_x, seed=seed, warmup_s=warmup_s,
                          segment_s=segment_s, recovery_limit_s=recovery_limit_s)
    (out_dir / "soak.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    return report


def wait_for_file(path: Path, child: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    """The JSON the exchange child writes to ``path`` (it renames complete files into place)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if path.exists():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        if child.poll() is not None:
            raise HeliosError(f"the soak's exchange exited with {child.returncode}; see {path.parent / 'exchange.log'}")
        time.sleep(0.05)
    raise HeliosError(f"the soak's exchange did not write {path.name} within {timeout_s:.0f} s")


def sleep_until(t: float, every: Callable[[float], None]) -> None:
    """Sleep until wall time ``t``, calling ``every(now)`` at least every 0.1 s."""
    while (now := time.time()) < t:
        every(now)
        time.sleep(min(0.1, t - now))


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGINT, then SIGKILL after ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
