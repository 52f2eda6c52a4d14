"""Bounded disk: delete a recording's oldest whole UTC days (``recording.retention_days``, ``recording.max_gb``).

A day is every table's and stream's ``date=YYYY-MM-DD`` folder of that date: it goes as a whole, oldest
first, so what is left is always a contiguous run of days with every stream complete in each. Never deleted:
the day of ``now`` (today) and the days a live writer still has a segment open in (``protect_days``;
``RecordingWriter.open_days``), so a writer never loses a file it will rewrite.

Compaction (compact.py) and retention take the same lock (``schema.MAINTENANCE_LOCK``, an ``flock`` on a
dot file readers ignore), so a day is never deleted while it is being compacted. A reader walking a day
while it is deleted gets a HeliosError saying so (the rows are gone by design: read again).

On an object store (``s3://``, store.py) a day is the objects under its ``date=`` prefixes, found by one listing
and deleted by prefix. No lock is taken there: object stores have no ``flock``, and ``helios compact``, the
only other maintenance, refuses object stores.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.recording.schema import MAINTENANCE_LOCK, TABLES, date_of_day, day_of_us
from helios_orderflow.recording.store import Location, RemotePath, location

log = logging.getLogger(__name__)

_GB = 1_000_000_000


@dataclass
class RetentionResult:
    """What one ``apply_retention`` did: ``deleted`` dates (``YYYY-MM-DD``, oldest first), the bytes they
    held, and the recording's data bytes before and after. ``busy``: compaction held the lock, nothing was
    done (try again later)."""

    deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    busy: bool = False


@contextlib.contextmanager
def maintenance_lock(root: Location, *, wait: bool) -> Iterator[bool]:
    """Hold the recording's maintenance lock; yields False (without it) when ``wait`` is False and another
    process or thread holds it. (An object store: no lock, see the module doc.)"""
    if isinstance(root, RemotePath):
        yield True
        return
    fd = os.open(root / MAINTENANCE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def day_folders(root: Path) -> dict[str, list[Path]]:
    """date (``YYYY-MM-DD``) -> every ``date=`` folder of that date, over all tables and streams."""
    out: dict[str, list[Path]] = {}
    assert isinstance(root, Path)
    for table in TABLES:
        tdir = root / table
        if not tdir.is_dir():
            continue
        for edir in _dirs(tdir, "exchange="):
            for sdir in _dirs(edir, "symbol="):
                for ddir in _dirs(sdir, "date="):
                    out.setdefault(ddir.name[len("date="):], []).append(ddir)
    return dict(sorted(out.items()))


def apply_retention(
    root: str | os.PathLike[str] | RemotePath,
    *,
    retention_days: int = 0,
    max_gb: float = 0.0,
    now_us: int | None = None,
    protect_days: Iterable[int] = (),
) -> RetentionResult:
    """Delete the oldest whole days of the recording at ``root`` until it keeps at most ``retention_days``
    UTC days (today included; 0 = no age limit) and at most ``max_gb`` GB of data files (0 = no size
    limit). ``now_us``: wall-clock µs (default: now); ``protect_days``: day numbers never deleted (a live
    writer's open segments). Does nothing (``busy``) while a compaction holds the lock."""
    if retention_days < 0 or max_gb < 0:
        raise HeliosError(f"retention_days and max_gb must be >= 0, got {retention_days} and {max_gb}")
    base = location(root)
    result = RetentionResult()
    if (retention_days == 0 and max_gb == 0) or not (isinstance(base, RemotePath) or base.is_dir()):
        return result
    today = day_of_us(time.time_ns() // 1000 if now_us is None else now_us)
    with maintenance_lock(base, wait=False) as locked:
        if not locked:
            result.busy = True
            return result
        days: dict[str, list[Location]]
        if isinstance(base, RemotePath):
            days, sizes = _remote_days(base)
        else:
            local = day_folders(base)
            days = {d: list[Location](dirs) for d, dirs in local.items()}
            sizes = {d: sum(_size(p) for p in dirs) for d, dirs in local.items()}
        result.bytes_before = result.bytes_after = sum(sizes.values())
        protected = {date_of_day(today), *(date_of_day(d) for d in protect_days)}
        oldest_kept = date_of_day(today - retention_days + 1) if retention_days else None
        limit = max_gb * _GB if max_gb else None
        for date in days:  # oldest first
            if date in protected:
                continue
            too_old = oldest_kept is not None and date < oldest_kept
            too_big = limit is not None and result.bytes_after > limit
            if not (too_old or too_big):
                break  # days are in order: every later one is younger and the size is within the limit
            for ddir in days[date]:
                if isinstance(ddir, RemotePath):
                    ddir.delete_tree()
                else:
                    _delete_day_folder(ddir)
            result.deleted.append(date)
            result.freed_bytes += sizes[date]
            result.bytes_after -= sizes[date]
            why = (f"older than recording.retention_days={retention_days}" if too_old
                   else f"recording over recording.max_gb={max_gb:g}")
            log.info("recording %s: deleted day %s (%.3f GB): %s", base, date, sizes[date] / _GB, why)
        if limit is not None and result.bytes_after > limit:
            log.warning(
                "recording %s holds %.3f GB, over recording.max_gb=%g, and only days it must keep are left "
                "(today and days still being written): raise max_gb or free disk space",
                base, result.bytes_after / _GB, max_gb)
    return result


def _remote_days(base: RemotePath) -> tuple[dict[str, list[Location]], dict[str, int]]:
    """``day_folders`` and the bytes of each day, from one listing of an object store's prefix."""
    folders: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    start = len(base.path) + 1
    for f in base.walk_files():
        parts = f.path[start:].split("/")
        if len(parts) != 5 or parts[0] not in TABLES or not parts[3].startswith("date="):
            continue
        date = parts[3][len("date="):]
        folders.setdefault(date, set()).add("/".join(parts[:4]))
        sizes[date] = sizes.get(date, 0) + f.stat().st_size
    days: dict[str, list[Location]] = {d: [base / rel for rel in sorted(folders[d])] for d in sorted(folders)}
    return days, sizes


def _dirs(path: Path, prefix: str) -> list[Path]:
    with os.scandir(path) as it:
        return sorted(Path(e.path) for e in it if e.name.startswith(prefix) and e.is_dir())


def _size(ddir: Path) -> int:
    total = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(ddir) as it:
        for entry in it:
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def _delete_day_folder(ddir: Path) -> None:
    """Unlink the folder's files, then the folder and its parents that became empty (up to the table)."""
    with contextlib.suppress(FileNotFoundError), os.scandir(ddir) as it:
        names = [e.name for e in it]
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ddir / name)
    for d in (ddir, ddir.parent, ddir.parent.parent):  # date=, symbol=, exchange=
        try:
            d.rmdir()
        except OSError:  # not empty (another stream, or a writer just created a file): keep it
            break
