"""The bot in the loop (``--with-freqtrade``, on by default from the command line): what the soak does to the
Freqtrade dry-run and what it reads back from it.

- **Whitelist**: the bot's pairlist is Freqtrade's own ``RemotePairList`` reading a ``file:///`` JSON; the soak
  rewrites the file on a schedule (``whitelist_schedule``): the whitelist holds all but ``LEFT_OUT`` of the
  soak's pairs and rotates by one pair per change, so at each change one pair leaves and another joins, and
  every pair leaves and rejoins over a cycle. Each change must reach the feed (its ``pairs joined: ...;
  pairs left: ...`` log line) within ``WHITELIST_LIMIT_S``.
- **Disk full**: the bot records onto a size-limited tmpfs (``mount_small_fs``; skipped with a message when
  mounting is not allowed). For the disk window the soak fills it with a ballast file, then deletes it: the
  recorder must pause (``recording ... paused: disk full``) and resume (``... resumed after``), declaring
  the hole as gaps.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Pairs out of the whitelist at any time (the rest are in it).
LEFT_OUT = 3
#: A whitelist change must reach the feed within this many seconds of the file's rewrite: RemotePairList's
#: 5 s refresh, Freqtrade's 5 s loop, then ``bot_loop_start``; the rest is margin for a busy machine.
WHITELIST_LIMIT_S = 30.0
#: RemotePairList's refresh period (seconds).
PAIRLIST_REFRESH_S = 5
#: The tmpfs the bot records onto: room for a 30-minute recording of the whitelist's pairs (about 120 MB)
#: and its checkpoints; only what is written uses memory.
SMALL_FS_SIZE = "768m"


def whitelist_at(symbols: list[str], step: int) -> list[str]:
    """The whitelist after ``step`` changes: ``len(symbols) - LEFT_OUT`` pairs, rotated by ``step``; step 0
    (the bot's start) is every pair, so Freqtrade loads every pair's candles before the measured part."""
    if step == 0 or len(symbols) <= LEFT_OUT:
        return list(symbols)
    n = len(symbols)
    return [symbols[(step + j) % n] for j in range(n - LEFT_OUT)]


def whitelist_schedule(start_s: float, end_s: float, every_s: float) -> list[float]:
    """The times (seconds from the exchange's start) the whitelist changes: every ``every_s`` from
    ``start_s``, the last at least ``every_s`` before ``end_s`` (so its effect is seen within the run)."""
    out: list[float] = []
    t = start_s
    while t + every_s <= end_s:
        out.append(t)
        t += every_s
    return out


def write_pairlist(path: Path, pairs: list[str]) -> None:
    """RemotePairList's file, replaced whole (the bot may read it at any time)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"pairs": pairs, "refresh_period": PAIRLIST_REFRESH_S}))
    tmp.replace(path)


def mount_small_fs(mnt: Path, size: str = SMALL_FS_SIZE) -> str | None:
    """Mount a tmpfs of ``size`` at ``mnt``; None when done, else why it could not be (then the disk window
    is skipped)."""
    mnt.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", f"helios-soak-{uuid.uuid4().hex[:8]}",
                               str(mnt)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot mount a tmpfs at {mnt} ({exc}); run as root where mounts are allowed"
    if done.returncode != 0:
        return f"cannot mount a tmpfs at {mnt}: {done.stderr.strip()} (run as root where mounts are allowed)"
    return None


def unmount(mnt: Path) -> None:
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def fill(path: Path) -> int:
    """Write ``path`` until its filesystem is full (the last pages one by one); returns its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 20, 65_536, 4096):
            block = b"\0" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


@dataclass
class BotLoop:
    """The soak's actions on the bot (call ``tick`` often): whitelist rewrites at ``changes`` (wall times)
    and the disk window ``disk`` (fill at its start, free at its end; None: no disk window)."""

    pairlist: Path
    symbols: list[str]
    changes: list[float]
    disk: tuple[float, float] | None
    ballast: Path | None
    done: list[tuple[float, list[str]]] = field(default_factory=list)  # (wall time, whitelist)
    disk_filled_at: float | None = None
    disk_freed_at: float | None = None
    ballast_bytes: int = 0

    def tick(self, now: float) -> None:
        while len(self.done) < len(self.changes) and now >= self.changes[len(self.done)]:
            pairs = whitelist_at(self.symbols, len(self.done) + 1)
            write_pairlist(self.pairlist, pairs)
            self.done.append((now, pairs))
        if self.disk is None or self.ballast is None:
            return
        if self.disk_filled_at is None and now >= self.disk[0]:
            self.ballast_bytes = fill(self.ballast)
            self.disk_filled_at = now
        elif self.disk_filled_at is not None and self.disk_freed_at is None and now >= self.disk[1]:
            self.free()

    def free(self) -> None:
        """Delete the ballast (at the window's end, or when the run stops early)."""
        if self.ballast is not None and self.disk_filled_at is not None and self.disk_freed_at is None:
            with contextlib.suppress(FileNotFoundError):
                self.ballast.unlink()
            self.disk_freed_at = datetime.now(UTC).timestamp()

    def whitelist_now(self) -> list[str]:
        return self.done[-1][1] if self.done else whitelist_at(self.symbols, 0)


def log_lines(log_text: str) -> list[tuple[float, str]]:
    """Freqtrade's log lines with their time (wall seconds; lines that do not start with a time are joined
    to the one before: the rich console may wrap)."""
    out: list[tuple[float, str]] = []
    for line in log_text.splitlines():
        try:
            t = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC).timestamp()
        except ValueError:
            if out:
                out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
            continue
        out.append((t, line))
    return out


def bot_loop_report(loop: BotLoop, log_text: str, skipped_disk: str | None) -> dict[str, Any]:
    """What the bot's log shows of the soak's actions: each whitelist change's delay to the feed's
    ``pairs joined/left`` line, and the recording's pause and resume around the disk window."""
    lines = log_lines(log_text)
    delays: list[float] = []
    missed: list[str] = []
    prev = whitelist_at(loop.symbols, 0)
    for at, pairs in loop.done:
        joined = [p for p in pairs if p not in prev]
        left = [p for p in prev if p not in pairs]
        prev = pairs
        want = "; ".join(part for part in (f"pairs joined: {', '.join(joined)}" if joined else "",
                                           f"pairs left: {', '.join(left)}" if left else "") if part)
        seen = next((t for t, ln in lines if t >= at - 1.0 and want in ln), None)
        if seen is None:
            missed.append(f"{want} (written at {datetime.fromtimestamp(at, UTC):%H:%M:%S})")
        else:
            delays.append(max(0.0, seen - at))
    out: dict[str, Any] = {
        "whitelist_changes": len(loop.done),
        "whitelist_changes_seen": len(delays),
        "whitelist_changes_missed": len(missed),
        "whitelist_longest_delay_s": round(max(delays), 1) if delays else 0.0,
        "whitelist_median_delay_s": round(sorted(delays)[len(delays) // 2], 1) if delays else 0.0,
        "whitelist_limit_s": WHITELIST_LIMIT_S,
        "whitelist_at_end": loop.whitelist_now(),
        "whitelist_missed": missed,
    }
    if skipped_disk is not None:
        out["disk_window"] = f"skipped: {skipped_disk}"
        return out
    if loop.disk_filled_at is None:
        out["disk_window"] = "not reached"
        return out
    filled, freed = loop.disk_filled_at, loop.disk_freed_at or float("inf")
    paused = next((t for t, ln in lines if t >= filled - 1.0 and "paused: disk full" in ln), None)
    resumed = next((t for t, ln in lines if t >= freed - 1.0 and "resumed after" in ln and "recording" in ln), None)
    out.update({
        "disk_window": "ran",
        "disk_ballast_mb": round(loop.ballast_bytes / 2**20, 1),
        "disk_full_s": round(freed - filled, 1) if loop.disk_freed_at else None,
        "recording_paused": paused is not None,
        "recording_paused_after_s": round(paused - filled, 1) if paused is not None else None,
        "recording_resumed": resumed is not None,
        "recording_resumed_after_s": round(resumed - freed, 1) if resumed is not None else None,
    })
    return out
