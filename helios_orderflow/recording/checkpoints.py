"""Engine checkpoints beside a recording: a restarted feed continues each pair's session (CVD, VWAP, walls,
candle history) instead of starting from zero, and still computes exactly what a replay of the whole recording
computes.

A checkpoint is one pair's engine as it stood after a known position of the recording: every event of that
pair with (receive time, run, seq) at or before the position, and no later one. The live feed asks for one
every ``recording.checkpoint_every_s`` of event time and when it stops; the recorder thread writes it after
flushing every event before it (``Recorder.checkpoint``), so the position is on disk when the checkpoint is.
A restart loads the newest checkpoint whose settings match and replays the pair's recorded events after its
position (``live/warmup.py``): at most ``checkpoint_every_s`` of events after a crash, none after a clean stop.

Layout: ``ROOT/_checkpoints/<exchange>/<symbol path>/<receive µs>-<run>-<seq>.ckpt`` (the leading underscore
keeps the data readers away). A file is a JSON header line (``CHECKPOINT_VERSION``, the settings fingerprint,
stream, position, the engine's event clock), then the engine pickled. A pickle runs code when it is loaded:
Helios only loads checkpoints from the bot's own recording folder, which is as trusted as its config. Files are
written to a temp name, fsynced and renamed, so a crash never leaves half of one; only the newest
``KEEP`` per pair are kept. The heatmap's ring (11 MB, only the page draws it) is not saved: a restored engine
starts an empty one on the same grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.core.symbols import symbol_to_path
from helios_orderflow.recording.store import Location, RemotePath

CHECKPOINT_DIR = "_checkpoints"
#: Bumped when the engine's pickled layout changes: older checkpoints are then ignored (the pair starts fresh).
CHECKPOINT_VERSION = 3  # 2: tracked book sides replaced ofi.TopLevels; 3: the compiled book (book/flow_book.py)
#: Checkpoints kept per pair (older ones are deleted when a new one is written).
KEEP = 3

#: (receive time µs, run id, seq) of the last event a checkpoint's engine has seen (the reader's order).
Position = tuple[int, str, int]


def fingerprint(settings: HeliosSettings, timeframe: str) -> str:
    """What an engine's results depend on: its settings but the parts the engine never reads, and the timeframe.
    A checkpoint made under another fingerprint is not used (the pair starts fresh, with a log line)."""
    engine_part = {k: v for k, v in dataclasses.asdict(settings).items()
                   if k not in ("recording", "feed", "health", "dashboard", "strategy", "backtest", "risk")}
    engine_part["heatmap"] = {k: v for k, v in engine_part["heatmap"].items() if k != "enabled"}
    text = json.dumps([engine_part, timeframe], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    path: Location
    exchange: str
    symbol: str
    position: Position
    clock_us: int
    fingerprint: str

    def load(self) -> Any:
        """The pickled object (an engine: ``live/warmup.py`` checks its type)."""
        if isinstance(self.path, RemotePath):
            return pickle.loads(self.path.read_bytes().split(b"\n", 1)[1])  # the bot's own recording: see above
        with open(self.path, "rb") as f:
            f.readline()
            return pickle.load(f)  # the bot's own recording folder: see the module docstring


def _folder(root: Location, exchange: str, symbol: str) -> Location:
    return root / CHECKPOINT_DIR / exchange / symbol_to_path(symbol)


def write_checkpoint(root: Location, exchange: str, symbol: str, position: Position, clock_us: int, fp: str,
                     blob: bytes) -> Location:
    """Write one checkpoint atomically (temp file, fsync, rename; on an object store one upload) and keep the
    newest ``KEEP`` of the pair."""
    folder = _folder(root, exchange, symbol)
    folder.mkdir(parents=True, exist_ok=True)
    lts, run, seq = position
    path = folder / f"{lts:020d}-{run}-{seq:012d}.ckpt"
    header = {"version": CHECKPOINT_VERSION, "fingerprint": fp, "exchange": exchange, "symbol": symbol,
              "position": [lts, run, seq], "clock_us": clock_us}
    if isinstance(path, RemotePath):
        path.write_bytes(json.dumps(header).encode() + b"\n" + blob)
        _keep_newest(folder)
        return path
    assert isinstance(folder, Path) and isinstance(path, Path)
    tmp = folder / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        f.write(json.dumps(header).encode() + b"\n")
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _keep_newest(folder)
    return path


def _keep_newest(folder: Location) -> None:
    found: list[Location] = list(folder.glob("*.ckpt"))
    for old in sorted(found, key=lambda p: p.name)[:-KEEP]:  # one folder: by name
        old.unlink(missing_ok=True)


def checkpoints(root: Location, exchange: str, symbol: str) -> list[Checkpoint]:
    """The pair's readable checkpoints, newest first (unreadable or other-version ones are skipped)."""
    out = []
    folder = _folder(root, exchange, symbol)
    # (An object store lists nothing for a folder that does not exist: no need to ask first.)
    found: list[Location] = list(folder.glob("*.ckpt")) if isinstance(folder, RemotePath) or folder.is_dir() else []
    for path in sorted(found, key=lambda p: p.name, reverse=True):
        try:
            if isinstance(path, RemotePath):
                header = json.loads(path.read_bytes().split(b"\n", 1)[0])
            else:
                with open(path, "rb") as f:
                    header = json.loads(f.readline())
            if header.get("version") != CHECKPOINT_VERSION:
                continue
            lts, run, seq = header["position"]
            out.append(Checkpoint(path, exchange, symbol, (int(lts), str(run), int(seq)), int(header["clock_us"]),
                                  str(header["fingerprint"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


__all__ = ["CHECKPOINT_DIR", "Checkpoint", "Position", "checkpoints", "fingerprint", "write_checkpoint"]
