"""A restarted feed's engines: each pair's newest checkpoint (``recording/checkpoints.py``) with the pair's
recorded events after it replayed, so CVD, VWAP, walls and the candle history go on from where the last run
left them, and equal what a replay of the whole recording gives. Also the other half: an engine turned into a
checkpoint's bytes on the feed thread."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass

from helios_orderflow.core.events import Event
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.recording.checkpoints import Position, checkpoints, fingerprint
from helios_orderflow.recording.reader import read_events_after
from helios_orderflow.recording.store import Location

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Warmed:
    """A pair's engine brought up to the end of its recording: ``engine`` None when there was no usable
    checkpoint (the pair starts fresh); ``replayed``: events replayed after the checkpoint; ``why``: a line for
    the log."""

    engine: PairEngine | None
    replayed: int
    why: str


def warm_engine(root: Location, exchange: str, symbol: str, settings: HeliosSettings, timeframe: str,
                min_clock_us: int = 0) -> Warmed:
    """The newest checkpoint of the pair made under the same settings and timeframe, with the pair's recorded
    events after its position replayed into it. The engine then stands where a replay of the whole recording
    would stand after the pair's last recorded event.

    ``min_clock_us``: use only a checkpoint of at least this event time. A pair that left this process's feed
    and comes back needs the one written as it left: the events before it may still be in the recorder's open
    segment, where a replay from an older checkpoint would not find them."""
    fp = fingerprint(settings, timeframe)
    found = checkpoints(root, exchange, symbol)
    usable = [c for c in found if c.fingerprint == fp]
    if not usable:
        why = ("no checkpoint" if not found else
               f"{len(found)} checkpoint(s) made with other settings or timeframe (not used)")
        return Warmed(None, 0, why)
    if usable[0].clock_us < min_clock_us:
        return Warmed(None, 0, "the checkpoint of its leaving is not written yet (the recorder writes it after "
                               "the pair's last events)")
    for ckpt in usable:
        try:
            engine = ckpt.load()
            if not isinstance(engine, PairEngine):
                raise TypeError(f"it holds a {type(engine).__name__}, not a PairEngine")
        except Exception as exc:  # a damaged file: try the one before
            log.warning("%s %s: checkpoint %s could not be read (%s); trying an older one", exchange, symbol,
                        ckpt.path.name, exc)
            continue
        engine.settings = settings
        n = 0
        for ev in _after(root, exchange, symbol, ckpt.position):
            engine.on_event(ev)
            n += 1
        return Warmed(engine, n, f"checkpoint of {ckpt.path.name.split('-')[0]} µs, {n} recorded events after it")
    return Warmed(None, 0, "no readable checkpoint")


def _after(root: Location, exchange: str, symbol: str, position: Position) -> Iterator[Event]:
    try:
        yield from read_events_after(root, exchange, symbol, position)
    except Exception as exc:  # no stream yet (nothing recorded after the checkpoint's run) and the like
        log.debug("no recorded events after the checkpoint: %s", exc)




def settled_blob(engine: PairEngine) -> bytes:
    """The engine as a checkpoint's bytes: its deferred timer work settled first (it would run before the pair's
    next event anyway), its heatmap ring left out (``PairEngine.__getstate__``). On the feed thread."""
    if engine.unsettled:
        engine.settle()
    return pickle.dumps(engine, protocol=5)
