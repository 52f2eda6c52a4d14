"""The feed benchmark's RSS growth figure: robust to one transient spike, not blind to a lasting step."""

from __future__ import annotations

import math

from helios_orderflow.devtools.benchmarks.feed import peak_growth_pct


def _sawtooth(minutes: int, base: float = 400.0, tooth: float = 7.0) -> list[tuple[float, float]]:
    """One sample a second: RSS climbs by ``tooth`` MB over each 60 s recorder segment, then drops."""
    return [(float(t), base + tooth * (t % 60) / 59) for t in range(minutes * 60 + 1)]


def test_a_flat_sawtooth_shows_no_growth():
    assert peak_growth_pct(_sawtooth(10)) == 0.0


def test_one_transient_spike_in_the_last_minutes_does_not_move_the_figure():
    samples = _sawtooth(10)
    samples[500] = (samples[500][0], 411.0)  # +4 MB above the peak for one second, in minute 8
    peaks_growth = (max(v for t, v in samples if t >= 480) / max(v for t, v in samples if t <= 120) - 1) * 100
    assert 0.95 < peaks_growth < 1.0  # comparing peaks counts the spike (411 / 407 MB)
    assert peak_growth_pct(samples) == 0.0


def test_a_lasting_step_is_counted_in_full():
    samples = [(t, v + (8.14 if t >= 300 else 0.0)) for t, v in _sawtooth(10)]  # +2 % from minute 5 on
    assert math.isclose(peak_growth_pct(samples), 2.0, abs_tol=1e-9)


def test_only_whole_minutes_count_and_a_short_series_has_no_figure():
    samples = [*_sawtooth(4), (241.0, 500.0)]  # a partial fifth minute with a high sample is left out
    assert peak_growth_pct(samples) == 0.0
    assert math.isnan(peak_growth_pct(_sawtooth(1)))
