"""Fault injection for the local exchange: ``--faults SPEC``, seeded and deterministic.

SPEC is a comma-separated list of ``KIND=RATE`` items (no spaces)::

    drop=1/50,dup=0.01,disconnect=30,rest429=1/20,seed=7,after=5

RATE is either a probability per opportunity (``0.02``) drawn from a seeded generator, or ``1/N``: exactly
every N-th opportunity (deterministic by count). Opportunities are counted per symbol for diff faults and
per endpoint for REST faults, in the order the server produces them.

=================  ===================================================================================
KIND               effect (opportunity)
=================  ===================================================================================
``drop``           a depth diff is not sent; the server's book still changed (per diff)
``dup``            a depth diff is sent twice (per diff)
``reorder``        a depth diff is held back and sent after the next one (per diff)
``gap``            update ids jump by 1..5 before a diff: ``U > previous u + 1`` (``pu`` too on
                   futures) with no level lost (per diff)
``crossed``        a bid is placed one tick above the best ask and removed 1 s later: the
                   server's own book (and every client's) is crossed for 1 s (per diff)
``malformed``      a truncated JSON text frame is sent on the stream before a diff (per diff)
``checksum``       a book update is sent with a wrong checksum, its levels right (per diff; venues
                   that send a checksum: OKX)
``stale``          ``/depth`` answers with a snapshot taken >= 2 s earlier, whose ``lastUpdateId``
                   is older than the diffs a client has buffered (per depth request)
``rest429``        a REST request is answered ``429`` with Binance's ``-1003`` body and
                   ``Retry-After: 1`` (per request)
``rest5xx``        a REST request is answered ``503`` with Binance's ``-1001`` body (per request)
``disconnect``     RATE is seconds: every websocket connection is closed (code 1001) every RATE s
``noping``         RATE is seconds: a connection older than RATE s gets no more pongs and no pings
``seed``           integer seed of the fault generators (default 0)
``after``          seconds after start before any fault fires (default 0), so clients can sync first
=================  ===================================================================================

Example: ``helios exchange --synthetic --faults drop=1/100,rest5xx=0.05,after=10``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from helios_orderflow.core.errors import HeliosError

PER_DIFF = ("drop", "dup", "reorder", "gap", "crossed", "malformed", "checksum")
PER_REST = ("stale", "rest429", "rest5xx")
SECONDS = ("disconnect", "noping")
KINDS = (*PER_DIFF, *PER_REST, *SECONDS, "seed", "after")


@dataclass(frozen=True, slots=True)
class Rate:
    """``probability`` per opportunity, or exactly every ``every``-th one (``every`` > 0)."""

    probability: float = 0.0
    every: int = 0


@dataclass
class FaultPlan:
    """A parsed SPEC plus the seeded state that decides, opportunity by opportunity, what fires."""

    rates: dict[str, Rate] = field(default_factory=dict)
    disconnect_s: float = 0.0
    noping_s: float = 0.0
    seed: int = 0
    after_s: float = 0.0
    spec: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # faults fired, by kind
    _seen: dict[tuple[str, str], int] = field(default_factory=dict)
    _rngs: dict[tuple[str, str], random.Random] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.rates or self.disconnect_s or self.noping_s)

    def fires(self, kind: str, key: str, elapsed_s: float) -> bool:
        """Whether fault ``kind`` fires at this opportunity of stream ``key`` (a symbol or endpoint)."""
        rate = self.rates.get(kind)
        if rate is None or elapsed_s < self.after_s:
            return False
        k = (kind, key)
        n = self._seen.get(k, 0) + 1
        self._seen[k] = n
        if rate.every:
            hit = n % rate.every == 0
        else:
            rng = self._rngs.get(k)
            if rng is None:
                rng = self._rngs[k] = random.Random(f"{self.seed}:{kind}:{key}")
            hit = rng.random() < rate.probability
        if hit:
            self.counts[kind] = self.counts.get(kind, 0) + 1
        return hit

    def rng(self, kind: str, key: str) -> random.Random:
        """The seeded generator for a fault's own choices (e.g. the size of a gap)."""
        k = (f"{kind}#", key)
        if k not in self._rngs:
            self._rngs[k] = random.Random(f"{self.seed}:{kind}#:{key}")
        return self._rngs[k]


def parse_faults(spec: str | None) -> FaultPlan:
    """Parse ``--faults SPEC`` (see the module docstring); raises HeliosError naming the bad item."""
    plan = FaultPlan(spec=spec or "")
    if not spec:
        return plan
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        kind, sep, value = item.partition("=")
        kind = kind.strip().lower()
        if kind not in KINDS or not sep:
            raise HeliosError(
                f"--faults item {item!r}: expected KIND=RATE with KIND one of {', '.join(KINDS)} "
                "(e.g. drop=1/50,rest5xx=0.05,disconnect=30)"
            )
        try:
            if kind == "seed":
                plan.seed = int(value)
            elif kind in ("after", *SECONDS):
                seconds = float(value)
                if seconds <= 0 and kind != "after":
                    raise ValueError
                if kind == "after":
                    plan.after_s = seconds
                elif kind == "disconnect":
                    plan.disconnect_s = seconds
                else:
                    plan.noping_s = seconds
            elif value.startswith("1/"):
                every = int(value[2:])
                if every < 1:
                    raise ValueError
                plan.rates[kind] = Rate(every=every)
            else:
                p = float(value)
                if not 0.0 <= p <= 1.0:
                    raise ValueError
                plan.rates[kind] = Rate(probability=p)
        except ValueError:
            what = "seconds > 0" if kind in SECONDS else "an integer" if kind == "seed" else "a probability 0..1 or 1/N"
            raise HeliosError(f"--faults item {item!r}: value must be {what}") from None
    return plan
