"""Reading source files line by line: gzip or plain, with a progress bar and clear errors.

Shared by every importer so that each one handles truncated gzip, undecodable bytes and progress the
same way.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from helios_orderflow.core.errors import InputError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


class _CountingReader(io.RawIOBase):
    """Counts compressed bytes read, so the progress bar tracks the file on disk."""

    def __init__(self, raw: io.BufferedIOBase, bar: tqdm | None) -> None:
        self._raw = raw
        self._bar = bar

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        n = self._raw.readinto(b)
        if self._bar is not None and n:
            self._bar.update(n)
        return n or 0


def iter_lines(path: Path | str, progress: bool | None = None, desc: str | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each line of ``path`` (1-based, newline stripped).

    gzip is detected by magic bytes. A truncated or corrupt gzip raises ``InputError`` naming the file
    and the last complete line; bytes that are not UTF-8 raise ``InputError`` with the line number.
    ``progress``: True shows a bar, False never, None shows one when stderr is a terminal.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), None, "no such file", "check the path")
    size = os.path.getsize(path)
    bar = tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        desc=desc or path.name,
        disable=(not progress) if progress is not None else None,
        leave=False,
    )
    lineno = 0
    try:
        with open(path, "rb") as raw:
            counted = io.BufferedReader(_CountingReader(raw, bar), buffer_size=1 << 20)
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=counted) if is_gzip(path) else counted
            try:
                for lineno, data in enumerate(stream, start=1):
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise InputError(str(path), lineno, f"not UTF-8 text ({exc.reason})") from None
                    yield lineno, text.rstrip("\r\n")
            except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
                raise InputError(
                    str(path),
                    lineno + 1,
                    f"file is truncated or corrupt after line {lineno} ({exc})",
                    "the lines before it were read; re-download or re-copy the file",
                ) from None
    finally:
        bar.close()
