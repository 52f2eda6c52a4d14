"""Backoff: exponential delays with jitter, capped, reset by a success."""

from __future__ import annotations

import random

import pytest

from helios_orderflow.live.backoff import Backoff


def test_delays_double_up_to_the_cap_and_stay_within_the_jitter_band():
    b = Backoff(initial_s=0.5, max_s=8.0, factor=2.0, jitter=0.5, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    nominal = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    for d, n in zip(delays, nominal, strict=True):
        assert n * 0.5 <= d <= n
    assert b.failures == 8


def test_reset_starts_again_from_the_initial_delay():
    b = Backoff(initial_s=1.0, max_s=60.0, jitter=0.0)
    assert [b.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    b.reset()
    assert b.next_delay() == 1.0


def test_jitter_spreads_many_clients_dropped_together():
    delays = [Backoff(initial_s=2.0, jitter=0.5, rng=random.Random(seed)).next_delay() for seed in range(200)]
    assert min(delays) >= 1.0 and max(delays) <= 2.0
    assert max(delays) - min(delays) > 0.8  # not all in the same instant
    assert len({round(d, 6) for d in delays}) == 200


def test_a_long_outage_does_not_overflow():
    b = Backoff(initial_s=0.25, max_s=30.0, jitter=0.0)
    for _ in range(5000):
        d = b.next_delay()
    assert d == 30.0


@pytest.mark.parametrize("kwargs", [{"initial_s": 0}, {"initial_s": 2, "max_s": 1}, {"jitter": 1.5}, {"factor": 0.5}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
