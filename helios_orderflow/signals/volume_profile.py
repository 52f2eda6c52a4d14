"""Volume profile: traded volume per price bin, its point of control (POC) and value area (VAH/VAL).

Inputs are trades as arrays: ``ts_us`` (exchange time, epoch microseconds), ``price`` (quote units),
``amount`` (base units) and, optionally, ``is_buy`` (True = the taker bought). Volumes are base units.

Bins (shared with ``footprint.py``, and Freqtrade's order-flow ``scale``): bin ``k`` is centred on
``k * bin_size`` and covers ``[(k - 1/2) * bin_size, (k + 1/2) * bin_size]``; a price is put in bin
``round(price / bin_size)``, a price exactly on an edge going to the even ``k`` (round half to even, as NumPy
and Freqtrade round). With ``bin_size`` = the tick, each traded price is its own bin and ``k * bin_size`` is
that price. (The heatmap's bins are ``[b * bin_size, (b + 1) * bin_size)``: half a bin lower.)

The POC is the bin with the most volume; on a tie (exactly equal sums), the one nearest the middle of the
profile's traded range (lowest to highest traded bin), and of two equally near, the lower.

The value area (Market Profile's construction): start with the POC bin; while it holds less than
``value_area_pct`` percent of the total volume, compare the volume of the next ``value_area_step`` bins above it
with that of the next ``value_area_step`` bins below it (fewer where the profile ends; empty bins count as 0)
and add the side with more; on a tie (exactly equal sums) add both sides. The default step 2 is Market
Profile's two-bins-at-a-time rule; step 1 compares single bins. A step adds all its bins even when the first
would have been enough, so the value area may hold more than the percentage. The comparison with the target
allows 1e-9 of the total volume, so float rounding in the sums never adds a step. VAL and VAH are the lower edge
of the value area's lowest bin and the upper edge of its highest bin. No volume: POC, VAH and VAL are NaN.

Sessions start every day at ``session_anchor_utc`` ("HH:MM", UTC; ``helios.flow.session_anchor_utc``).
``RunningProfile`` accumulates trades one at a time (or in batches) and answers the profile of the trades added
so far, for "the session so far" without look-ahead; its sums are bit-identical to ``volume_profile`` on the same
trades in the same order. ``session_levels`` uses it for per-candle columns: the session-so-far and the previous
session's POC/VAH/VAL at each candle close. Defaults (70 %, step 2) live in ``helios.volume_profile``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pandas as pd

from helios_orderflow.core.settings import VolumeProfileSettings

_DEFAULTS = VolumeProfileSettings()
#: Defaults of ``helios.volume_profile`` (their one home: core/settings.py).
VALUE_AREA_PCT = _DEFAULTS.value_area_pct
VALUE_AREA_STEP = _DEFAULTS.value_area_step
DAY_US = 86_400_000_000
#: A step is added only while the value area is short of its target by more than this fraction of the total.
_TARGET_TOLERANCE = 1e-9


def price_bins(price: npt.ArrayLike, bin_size: float) -> npt.NDArray[np.int64]:
    """Bin index ``round(price / bin_size)`` of each price (round half to even); see the module docstring."""
    _check_bin_size(bin_size)
    return np.round(np.asarray(price, dtype=np.float64) / bin_size).astype(np.int64)


def _check_bin_size(bin_size: float) -> None:
    if not (isinstance(bin_size, (int, float)) and math.isfinite(bin_size) and bin_size > 0):
        raise ValueError(f"bin_size must be a price step > 0 (quote units, e.g. 0.5), got {bin_size!r}")


def _check_value_area(value_area_pct: float, value_area_step: int) -> None:
    if not 0 < value_area_pct <= 100:
        raise ValueError(f"value_area_pct must be in (0, 100], e.g. 70, got {value_area_pct!r}")
    if value_area_step not in (1, 2):
        raise ValueError(f"value_area_step must be 1 or 2 (bins added at a time), got {value_area_step!r}")


def session_start_us(ts_us: npt.ArrayLike, session_anchor_utc: str = "00:00") -> npt.NDArray[np.int64]:
    """Start (epoch microseconds) of the daily session holding each time: sessions start every day at
    ``session_anchor_utc`` ("HH:MM", UTC)."""
    anchor = _anchor_us(session_anchor_utc)
    ts = np.asarray(ts_us, dtype=np.int64)
    return (ts - anchor) // DAY_US * DAY_US + anchor


def _anchor_us(session_anchor_utc: str) -> int:
    hh, sep, mm = session_anchor_utc.partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
        raise ValueError(f"session_anchor_utc must be 'HH:MM' (UTC), got {session_anchor_utc!r}")
    return (int(hh) * 60 + int(mm)) * 60_000_000


def value_area(volume: npt.ArrayLike, value_area_pct: float = VALUE_AREA_PCT,
               value_area_step: int = VALUE_AREA_STEP) -> tuple[int, int, int]:
    """``(poc, low, high)``: indices into ``volume`` (volume per bin, consecutive bins, >= 0) of the POC bin and
    of the value area's lowest and highest bins, by the rules of the module docstring. ``(-1, -1, -1)`` when
    the volume is all zero (or there are no bins)."""
    _check_value_area(value_area_pct, value_area_step)
    v = np.asarray(volume, dtype=np.float64)
    n = len(v)
    total = float(v.sum()) if n else 0.0
    if not total > 0:
        return -1, -1, -1
    top = v.max()
    ties = np.flatnonzero(v == top)
    # nearest the middle of the range; argmin takes the first (lower) of two equally near
    poc = int(ties[np.argmin(np.abs(2 * ties - (n - 1)))])
    vols: list[float] = v.tolist()
    target = value_area_pct / 100 * total - _TARGET_TOLERANCE * total
    lo = hi = poc
    inside = vols[poc]
    step = value_area_step
    while inside < target and (lo > 0 or hi < n - 1):
        up_end = min(hi + step, n - 1)
        down_end = max(lo - step, 0)
        up = sum(vols[hi + 1:up_end + 1]) if hi < n - 1 else -1.0
        down = sum(vols[down_end:lo]) if lo > 0 else -1.0
        if up >= down:
            hi = up_end
            inside += up
        if down >= up:
            lo = down_end
            inside += down
    return poc, lo, hi


@dataclass(frozen=True, slots=True)
class VolumeProfile:
    """Volume per price bin over consecutive bins ``first_bin .. first_bin + len(volume) - 1`` (empty bins 0),
    with the POC and value area. Prices in quote units, volumes in base units."""

    bin_size: float
    #: Bin index of ``volume[0]`` (bin k is centred on ``k * bin_size``).
    first_bin: int
    #: Traded volume per bin; ``buy_volume``/``sell_volume`` the taker buys/sells in it (None when the
    #: trades' sides were not given).
    volume: npt.NDArray[np.float64]
    buy_volume: npt.NDArray[np.float64] | None
    sell_volume: npt.NDArray[np.float64] | None
    total_volume: float
    #: Centre price of the POC bin; NaN without volume.
    poc: float
    #: Upper edge of the value area's highest bin and lower edge of its lowest; NaN without volume.
    vah: float
    val: float
    #: Volume in the value area's bins (>= value_area_pct % of total_volume).
    value_area_volume: float
    trades: int

    @property
    def prices(self) -> npt.NDArray[np.float64]:
        """Centre price of each bin of ``volume``."""
        return ((self.first_bin + np.arange(len(self.volume))) * self.bin_size).astype(np.float64)


def _profile(bin_size: float, first_bin: int, volume: npt.NDArray[np.float64],
             buy: npt.NDArray[np.float64] | None, sell: npt.NDArray[np.float64] | None, trades: int,
             value_area_pct: float, value_area_step: int) -> VolumeProfile:
    poc, lo, hi = value_area(volume, value_area_pct, value_area_step)
    total = float(volume.sum())
    if poc < 0:
        return VolumeProfile(bin_size, first_bin, volume, buy, sell, total, math.nan, math.nan, math.nan, 0.0,
                             trades)
    return VolumeProfile(
        bin_size, first_bin, volume, buy, sell, total,
        (first_bin + poc) * bin_size, (first_bin + hi + 0.5) * bin_size, (first_bin + lo - 0.5) * bin_size,
        float(volume[lo:hi + 1].sum()), trades,
    )


def volume_profile(price: npt.ArrayLike, amount: npt.ArrayLike, bin_size: float, *,
                   is_buy: npt.ArrayLike | None = None, value_area_pct: float = VALUE_AREA_PCT,
                   value_area_step: int = VALUE_AREA_STEP) -> VolumeProfile:
    """The profile of all the given trades (``price`` quote units, ``amount`` base units, ``is_buy`` the
    taker's side, optional). Bin sums add the trades in the order given."""
    _check_bin_size(bin_size)
    _check_value_area(value_area_pct, value_area_step)
    p = np.asarray(price, dtype=np.float64)
    q = np.asarray(amount, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"price and amount must be 1-d arrays of one length, got {p.shape} and {q.shape}")
    if len(p) == 0:
        empty = np.zeros(0)
        sides = None if is_buy is None else empty
        return _profile(bin_size, 0, empty, sides, sides, 0, value_area_pct, value_area_step)
    bins = price_bins(p, bin_size)
    first = int(bins.min())
    idx = bins - first
    n = int(idx.max()) + 1
    volume = np.bincount(idx, weights=q, minlength=n).astype(np.float64)
    buy = sell = None
    if is_buy is not None:
        b = np.asarray(is_buy, dtype=bool)
        if b.shape != p.shape:
            raise ValueError(f"is_buy must have one entry per trade ({p.shape}), got {b.shape}")
        buy = np.bincount(idx, weights=np.where(b, q, 0.0), minlength=n).astype(np.float64)
        sell = np.bincount(idx, weights=np.where(b, 0.0, q), minlength=n).astype(np.float64)
    return _profile(bin_size, first, volume, buy, sell, len(p), value_area_pct, value_area_step)


def window_profile(ts_us: npt.ArrayLike, price: npt.ArrayLike, amount: npt.ArrayLike, bin_size: float,
                   start_us: int, end_us: int, *, is_buy: npt.ArrayLike | None = None,
                   value_area_pct: float = VALUE_AREA_PCT, value_area_step: int = VALUE_AREA_STEP) -> VolumeProfile:
    """The profile of the trades with ``start_us <= ts_us < end_us`` (e.g. a chart's visible range)."""
    ts = np.asarray(ts_us, dtype=np.int64)
    keep = (ts >= start_us) & (ts < end_us)
    return volume_profile(
        np.asarray(price, dtype=np.float64)[keep], np.asarray(amount, dtype=np.float64)[keep], bin_size,
        is_buy=None if is_buy is None else np.asarray(is_buy, dtype=bool)[keep],
        value_area_pct=value_area_pct, value_area_step=value_area_step,
    )


def session_profiles(ts_us: npt.ArrayLike, price: npt.ArrayLike, amount: npt.ArrayLike, bin_size: float, *,
                     is_buy: npt.ArrayLike | None = None, session_anchor_utc: str = "00:00",
                     value_area_pct: float = VALUE_AREA_PCT,
                     value_area_step: int = VALUE_AREA_STEP) -> dict[int, VolumeProfile]:
    """One profile per session that has trades, keyed by the session's start (epoch microseconds), in time
    order. A session holds the trades with ``start <= ts_us < start + 1 day``, by their own time stamps."""
    ts = np.asarray(ts_us, dtype=np.int64)
    p = np.asarray(price, dtype=np.float64)
    q = np.asarray(amount, dtype=np.float64)
    b = None if is_buy is None else np.asarray(is_buy, dtype=bool)
    starts = session_start_us(ts, session_anchor_utc)
    out: dict[int, VolumeProfile] = {}
    for start in np.unique(starts).tolist():
        keep = starts == start
        out[int(start)] = volume_profile(p[keep], q[keep], bin_size, is_buy=None if b is None else b[keep],
                                         value_area_pct=value_area_pct, value_area_step=value_area_step)
    return out


class RunningProfile:
    """A volume profile that grows trade by trade: ``add`` (or ``add_many``) trades, ask ``profile()`` (or
    ``levels()``) at any time for the trades added so far; ``reset`` at a session's start. Memory is one float per
    bin of the traded range (x3 with sides), grown by doubling."""

    __slots__ = ("bin_size", "value_area_pct", "value_area_step", "_first", "_vol", "_buy", "_sell", "_lo",
                 "_hi", "_trades")

    def __init__(self, bin_size: float, value_area_pct: float = VALUE_AREA_PCT,
                 value_area_step: int = VALUE_AREA_STEP) -> None:
        _check_bin_size(bin_size)
        _check_value_area(value_area_pct, value_area_step)
        self.bin_size = float(bin_size)
        self.value_area_pct = value_area_pct
        self.value_area_step = value_area_step
        self.reset()

    def reset(self) -> None:
        """Forget every trade (a new session)."""
        self._first = 0  # bin index of _vol[0]
        self._vol = np.zeros(0)
        self._buy = np.zeros(0)
        self._sell = np.zeros(0)
        self._lo = self._hi = 0  # traded bins: _first + _lo .. _first + _hi - 1
        self._trades = 0

    @property
    def trades(self) -> int:
        return self._trades

    def _make_room(self, low: int, high: int) -> None:
        """Make bins ``low .. high`` (absolute indices) addressable."""
        if self._trades == 0:
            size = max(64, 2 * (high - low + 1))
            self._first = low - (size - (high - low + 1)) // 2
            self._vol, self._buy, self._sell = np.zeros(size), np.zeros(size), np.zeros(size)
            self._lo = self._hi = low - self._first
            return
        size = len(self._vol)
        if low >= self._first and high < self._first + size:
            return
        new_low = min(low, self._first + self._lo)
        new_high = max(high, self._first + self._hi - 1)
        need = new_high - new_low + 1
        new_size = max(2 * size, 2 * need)
        new_first = new_low - (new_size - need) // 2
        shift = self._first - new_first
        for name in ("_vol", "_buy", "_sell"):
            old = getattr(self, name)
            grown = np.zeros(new_size)
            grown[self._lo + shift:self._hi + shift] = old[self._lo:self._hi]
            setattr(self, name, grown)
        self._lo += shift
        self._hi += shift
        self._first = new_first

    def add(self, price: float, amount: float, is_buy: bool | None = None) -> None:
        """One trade (``is_buy`` None: side unknown, counted in the volume only)."""
        k = round(price / self.bin_size)  # half to even, as np.round in price_bins
        self._make_room(k, k)
        i = k - self._first
        self._vol[i] += amount
        if is_buy is True:
            self._buy[i] += amount
        elif is_buy is False:
            self._sell[i] += amount
        self._lo = min(self._lo, i) if self._trades else i
        self._hi = max(self._hi, i + 1) if self._trades else i + 1
        self._trades += 1

    def add_many(self, price: npt.ArrayLike, amount: npt.ArrayLike, is_buy: npt.ArrayLike | None = None) -> None:
        """Many trades at once, summed in the order given (the same sums as ``add`` one by one)."""
        p = np.asarray(price, dtype=np.float64)
        q = np.asarray(amount, dtype=np.float64)
        if len(p) == 0:
            return
        bins = price_bins(p, self.bin_size)
        lo, hi = int(bins.min()), int(bins.max())
        self._make_room(lo, hi)
        idx = bins - self._first
        np.add.at(self._vol, idx, q)
        if is_buy is not None:
            b = np.asarray(is_buy, dtype=bool)
            np.add.at(self._buy, idx[b], q[b])
            np.add.at(self._sell, idx[~b], q[~b])
        self._lo = min(self._lo, lo - self._first) if self._trades else lo - self._first
        self._hi = max(self._hi, hi - self._first + 1) if self._trades else hi - self._first + 1
        self._trades += len(p)

    def profile(self) -> VolumeProfile:
        """The profile of the trades added so far (arrays copied); the sides are those of trades added with
        one (zeros where none was given)."""
        s = slice(self._lo, self._hi)
        return _profile(self.bin_size, self._first + self._lo, self._vol[s].copy(), self._buy[s].copy(),
                        self._sell[s].copy(), self._trades, self.value_area_pct, self.value_area_step)

    def levels(self) -> tuple[float, float, float]:
        """``(poc, vah, val)`` of the trades added so far (prices; NaN before any volume)."""
        poc, lo, hi = value_area(self._vol[self._lo:self._hi], self.value_area_pct, self.value_area_step)
        if poc < 0:
            return math.nan, math.nan, math.nan
        first = self._first + self._lo
        s = self.bin_size
        return (first + poc) * s, (first + hi + 0.5) * s, (first + lo - 0.5) * s


def auto_profile_bin(price: float) -> float:
    """The session profile's "auto" bin (``helios.volume_profile.bin_size``): the {1, 2, 5} x 10^k nearest, in
    ratio, to 1 basis point of ``price`` (61700 -> 5.0, 0.5 -> 0.00005); the lower one on an exact tie. Needs
    no tick, so trades alone (no book) fix it."""
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"price must be > 0 to size a profile bin, got {price!r}")
    target = price * 1e-4
    k = math.floor(math.log10(target))
    candidates = [float(Decimal(m) * Decimal(10) ** e) for e in (k - 1, k, k + 1) for m in (1, 2, 5)]
    return min(candidates, key=lambda c: (abs(math.log(c / target)), c))


#: Columns of ``session_levels``.
SESSION_LEVEL_COLUMNS = ("session_poc", "session_vah", "session_val",
                         "prev_session_poc", "prev_session_vah", "prev_session_val")


def session_levels(ts_us: npt.ArrayLike, price: npt.ArrayLike, amount: npt.ArrayLike, bin_size: float,
                   at_us: npt.ArrayLike, *, session_anchor_utc: str = "00:00", value_area_pct: float = VALUE_AREA_PCT,
                   value_area_step: int = VALUE_AREA_STEP) -> pd.DataFrame:
    """POC, VAH and VAL of the session so far and of the previous session, as of each time in ``at_us``
    (ascending epoch microseconds, e.g. candle close times = open + timeframe), with no look-ahead.

    Row ``i`` (columns ``SESSION_LEVEL_COLUMNS``) describes the session holding the instant just before
    ``at_us[i]`` (so a candle closing at the session anchor still belongs to the session it ends):
    ``session_*`` from that session's trades with ``ts_us < at_us[i]``, ``prev_session_*`` from every trade of
    the session before it (the data's, when the data start inside it). NaN where those trades hold no volume.
    Trades may come in any order (they are sorted by ``ts_us``, stably).
    """
    ts = np.asarray(ts_us, dtype=np.int64)
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    p = np.asarray(price, dtype=np.float64)[order]
    q = np.asarray(amount, dtype=np.float64)[order]
    at = np.asarray(at_us, dtype=np.int64)
    if len(at) > 1 and bool(np.any(np.diff(at) < 0)):
        raise ValueError("at_us must be ascending (e.g. candle close times in order)")
    sessions = session_start_us(at - 1, session_anchor_utc)
    out = np.full((len(at), len(SESSION_LEVEL_COLUMNS)), np.nan)
    running = RunningProfile(bin_size, value_area_pct, value_area_step)
    current = None
    previous = (math.nan, math.nan, math.nan)
    added = 0  # trades [..added) of the current session are in ``running``
    for i, (until, session) in enumerate(zip(at.tolist(), sessions.tolist(), strict=True)):
        if session != current:
            current = session
            running.reset()
            added = int(np.searchsorted(ts, session, "left"))
            start_prev = int(np.searchsorted(ts, session - DAY_US, "left"))
            prev = volume_profile(p[start_prev:added], q[start_prev:added], bin_size,
                                  value_area_pct=value_area_pct, value_area_step=value_area_step)
            previous = (prev.poc, prev.vah, prev.val)
        end = int(np.searchsorted(ts, until, "left"))
        if end > added:
            running.add_many(p[added:end], q[added:end])
            added = end
        out[i, :3] = running.levels()
        out[i, 3:] = previous
    return pd.DataFrame(out, columns=list(SESSION_LEVEL_COLUMNS))
