"""A seeded stochastic limit-order-book market, one per symbol, for the local exchange and ``helios synth``.

Model (after Cont, Stoikov & Talreja 2010, "A stochastic model for order book dynamics"): limit orders,
cancellations and market orders arrive as independent Poisson processes. A limit order arrives at distance
``i`` grid steps from the opposite best price with rate ``k_L / i**0.7`` (so it may improve the best inside
the spread); cancellations at distance ``j`` from the own best arrive with rate ``k_C / (j+1)**0.9`` and take
a share of the resting size (cancellation proportional to the queue); market orders eat the book from the
best. On top of the CST core, to make order-flow signals appear within minutes:

- **trends and reversals**: a latent fair price follows regimes (up, down, range) with exponential
  durations; the distance between fair price and mid skews which side market orders and cancellations
  come from, so the mid follows the fair price through order flow, not by decree;
- **exhaustion**: market-order intensity within a trend rises then decays (``0.6 + 2.4·4x(1-x)`` of its base
  rate, ``x`` the elapsed fraction of the regime); a trend ends in thin aggressive volume and often reverses;
- **walls**: large resting orders (25-60 mean orders) appear 4-25 steps from the best, are pulled when
  their lifetime ends untouched, or are hit by the trend: then they are absorbed (eaten) or defended
  (each hit that leaves most of the wall flips the regime with probability 0.3: a reversal at the wall).

Determinism: every random draw comes from one ``random.Random`` seeded with ``"{seed}:{symbol}"``, and event
times are offsets from ``origin_us``; so the stream (prices, sizes, ids, offsets) is a pure function of
(seed, symbol, elapsed simulated time), and ``origin_us`` only shifts the timestamps. How ``advance`` is
called (in 100 ms steps by the server, in big steps by ``helios synth``) does not change the events; diffs
are closed on the 100 ms grid counted from ``origin_us`` by the caller.

Units: the model works in grid steps (``Instrument.grid_ticks`` ticks) and lots (``step`` units); it writes
absolute level sizes and trades into a ``MarketState`` in the instrument's integer units.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import time

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.market import MarketState

K_LEVELS = 80  # limit orders land at most this many grid steps from the opposite best
TRIM_LEVELS = 300  # levels farther than this from the best are cancelled (keeps books < 1000 levels)
LIMIT_RATE = 30.0  # limit orders per second per side
CANCEL_RATE = 26.0  # cancellation events per second per side
MARKET_RATE = 2.5  # market orders per second (base, before the regime's intensity)
WALL_RATE = 1 / 40  # walls per second
ORDER_NOTIONAL = 1500.0  # mean limit order size in quote currency


def _cumulative(weights: list[float]) -> tuple[list[float], float]:
    acc = list(itertools.accumulate(weights))
    return acc, acc[-1]


_LIMIT_CUM, _LIMIT_TOTAL = _cumulative([1 / i**0.7 for i in range(1, K_LEVELS + 1)])
_CANCEL_CUM, _CANCEL_TOTAL = _cumulative([1 / (j + 1) ** 0.9 for j in range(K_LEVELS)])


class SyntheticModel:
    """The order-book model of one symbol, writing into ``state``."""

    def __init__(self, inst: Instrument, seed: int, state: MarketState, origin_us: int) -> None:
        self.inst = inst
        self.state = state
        self.rng = random.Random(f"{seed}:{inst.symbol}")
        self.origin_us = origin_us
        self.grid = inst.tick_units * inst.grid_ticks  # price_units per grid step
        self.lot = inst.step_units  # qty_units per lot
        lots = ORDER_NOTIONAL / inst.start_price / inst.qty(inst.step_units)
        self.mean_lots = max(2.0, lots)
        self.bids: dict[int, int] = {}  # grid index -> lots
        self.asks: dict[int, int] = {}
        # (is_bid, idx) -> [wall lots left, expiry_us, fate ("yield": gets absorbed, "hold": stops the trend,
        # "held": did), lots placed]
        self.walls: dict[tuple[bool, int], list] = {}
        self._absorbing_until_us = 0
        self._absorbing_buy = True
        mid = round(inst.start_price * 10**inst.price_decimals / self.grid)
        self.best_bid = mid - 1
        self.best_ask = mid
        self.fair = float(mid)
        self.drift = 0.0  # grid steps per second
        self.regime = "range"
        self.regime_start_us = origin_us
        self.regime_end_us = origin_us
        self.t_us = origin_us
        self.next_trim_us = origin_us + 1_000_000
        self.stats = {"limit": 0, "cancel": 0, "market": 0, "walls": 0, "walls_pulled": 0, "walls_absorbed": 0,
                      "wall_hits": 0, "reversals": 0}
        self._seed_book()
        self._new_regime()
        self.next_event_us = self.t_us + self._draw_dt()

    @property
    def minute_qty_units(self) -> int:
        """Typical traded quantity per minute (for back-filled candles), in qty_units."""
        return int(MARKET_RATE * 60 * self.mean_lots * 1.8 * self.lot)

    # ---- book primitives -----------------------------------------------------------------------
    def _set(self, is_bid: bool, idx: int, lots: int) -> None:
        book = self.bids if is_bid else self.asks
        if lots > 0:
            book[idx] = lots
        else:
            book.pop(idx, None)
        self.state.set_level(is_bid, idx * self.grid, lots * self.lot)

    def _size(self) -> int:
        return max(1, int(self.mean_lots * math.exp(self.rng.gauss(-0.32, 0.8))))

    def _seed_book(self) -> None:
        rng = self.rng
        for j in range(150):
            for is_bid in (True, False):
                if j > 2 and rng.random() < 0.15:
                    continue
                lots = max(1, int(self.mean_lots * (1.0 + j**0.3) * math.exp(rng.gauss(-0.3, 0.7))))
                self._set(is_bid, self.best_bid - j if is_bid else self.best_ask + j, lots)

    def _fix_best(self, is_bid: bool) -> None:
        if is_bid:
            if not self.bids:
                self._set(True, self.best_ask - 1, self._size())
            b = self.best_bid
            while b not in self.bids:
                b -= 1
                if b < self.best_ask - 10 * TRIM_LEVELS:
                    b = max(self.bids)
                    break
            self.best_bid = b
        else:
            if not self.asks:
                self._set(False, self.best_bid + 1, self._size())
            a = self.best_ask
            while a not in self.asks:
                a += 1
                if a > self.best_bid + 10 * TRIM_LEVELS:
                    a = min(self.asks)
                    break
            self.best_ask = a

    # ---- regimes -------------------------------------------------------------------------------
    def _new_regime(self, reverse_of: str | None = None) -> None:
        rng = self.rng
        if reverse_of in ("up", "down"):
            regime = "down" if reverse_of == "up" else "up"
            self.stats["reversals"] += 1
        elif self.regime in ("up", "down"):
            regime = rng.choice(("range", "down" if self.regime == "up" else "up"))
            if regime != "range":
                self.stats["reversals"] += 1
        else:
            regime = rng.choice(("up", "down", "range"))
        self.regime = regime
        self.regime_start_us = self.t_us
        self.regime_end_us = self.t_us + int((20 + rng.expovariate(1 / 50)) * 1e6)
        if regime == "range":
            self.drift = 0.0
        else:
            speed = rng.uniform(1.5, 5.0)
            self.drift = speed if regime == "up" else -speed

    def _intensity(self) -> float:
        if self.regime == "range":
            return 1.0
        x = (self.t_us - self.regime_start_us) / max(1, self.regime_end_us - self.regime_start_us)
        return 0.6 + 2.4 * 4 * x * (1 - x)

    # ---- the event loop ------------------------------------------------------------------------
    def _total_rate(self) -> float:
        self._mkt_rate = MARKET_RATE * self._intensity() * (2.5 if self.t_us < self._absorbing_until_us else 1.0)
        return 2 * LIMIT_RATE + 2 * CANCEL_RATE + self._mkt_rate + WALL_RATE

    def _draw_dt(self) -> int:
        return max(1, int(self.rng.expovariate(self._total_rate()) * 1e6))

    def advance(self, until_us: int) -> None:
        """Generate every event with time < ``until_us`` into the state (not flushed)."""
        rng = self.rng
        while self.next_event_us < until_us:
            t = self.next_event_us
            dt_s = (t - self.t_us) / 1e6
            self.t_us = t
            self.fair += self.drift * dt_s + 1.5 * math.sqrt(dt_s) * rng.gauss(0.0, 1.0)
            mid = (self.best_bid + self.best_ask) / 2
            self.fair += (mid - self.fair) * min(1.0, 0.01 * dt_s)  # the fair price cannot run away
            if t >= self.regime_end_us:
                self._new_regime()
            if t >= self.next_trim_us:
                self._trim()
                self.next_trim_us += 1_000_000
            skew = math.tanh((self.fair - mid) / 4.0)  # > 0: price should rise
            if t < self._absorbing_until_us:
                skew = 0.9 if self._absorbing_buy else -0.9
            u = rng.random() * (2 * LIMIT_RATE + 2 * CANCEL_RATE + self._mkt_rate + WALL_RATE)
            if u < 2 * LIMIT_RATE:
                is_bid = rng.random() < 0.5 + 0.25 * skew
                # liquidity against the trend backs away: it is placed further from the touch
                self._limit(is_bid, int(6 * max(0.0, -skew if is_bid else skew)))
            elif u < 2 * LIMIT_RATE + 2 * CANCEL_RATE:
                self._cancel(rng.random() < 0.5 - 0.4 * skew)
            elif u < 2 * LIMIT_RATE + 2 * CANCEL_RATE + self._mkt_rate:
                self._market(rng.random() < 0.5 + 0.45 * skew)
            else:
                self._wall()
            if self.walls:
                self._expire_walls()
            self.next_event_us = t + self._draw_dt()

    def _limit(self, is_bid: bool, back_off: int) -> None:
        self.stats["limit"] += 1
        i = bisect.bisect_left(_LIMIT_CUM, self.rng.random() * _LIMIT_TOTAL) + 1 + back_off
        if is_bid:
            idx = self.best_ask - i
            self._set(True, idx, self.bids.get(idx, 0) + self._size())
            if idx > self.best_bid:
                self.best_bid = idx
        else:
            idx = self.best_bid + i
            self._set(False, idx, self.asks.get(idx, 0) + self._size())
            if idx < self.best_ask:
                self.best_ask = idx

    def _cancel(self, is_bid: bool) -> None:
        j = bisect.bisect_left(_CANCEL_CUM, self.rng.random() * _CANCEL_TOTAL)
        idx = self.best_bid - j if is_bid else self.best_ask + j
        book = self.bids if is_bid else self.asks
        lots = book.get(idx, 0)
        if not lots:
            return
        wall = self.walls.get((is_bid, idx))
        free = lots - (wall[0] if wall else 0)  # walls are pulled whole, never nibbled
        if free <= 0:
            return
        self.stats["cancel"] += 1
        take = max(1, min(free, int(free * self.rng.random() * 0.5 + 0.5)))
        self._set(is_bid, idx, lots - take)
        if lots - take == 0 and idx == (self.best_bid if is_bid else self.best_ask):
            self._fix_best(is_bid)

    def _market(self, buy: bool) -> None:
        self.stats["market"] += 1
        rng = self.rng
        want = max(1, int(self.mean_lots * 1.8 * math.exp(rng.gauss(-0.3, 0.9))))
        book = self.asks if buy else self.bids
        ts_ms = self.t_us // 1000
        new_agg = True
        levels = 0
        while want > 0 and book and levels < 6:
            idx = self.best_ask if buy else self.best_bid
            lots = book[idx]
            key = (not buy, idx)
            wall = self.walls.get(key)
            fill = min(want, lots)
            # several makers at one price: one trade per maker fill, one aggregate trade per level
            parts = [fill] if fill < 3 else self._split(fill)
            for part in parts:
                self.state.add_trade(ts_ms, idx * self.grid, part * self.lot, buy, new_agg)
                new_agg = False
            new_agg = True
            want -= fill
            left = lots - fill
            if wall is not None:
                eaten = max(0, fill - (lots - wall[0]))  # the wall is behind the queue
                wall[0] -= eaten
                if wall[0] <= 0 or left == 0:
                    del self.walls[key]
                    self.stats["walls_absorbed"] += 1
                    self._absorbing_until_us = 0
                elif eaten:
                    self.stats["wall_hits"] += 1
                    if wall[2] == "hold" and wall[0] < wall[3] * 0.7 and self.regime in ("up", "down") and (
                            (self.regime == "up") == buy):
                        # the wall held 30% of its size: the trend gives up at it (a reversal)
                        wall[2] = "held"
                        self._new_regime(reverse_of=self.regime)
                        self.fair = (self.best_bid + self.best_ask) / 2
                    elif wall[2] == "yield":
                        # aggressors keep coming until the wall is eaten (absorption)
                        self._absorbing_until_us = self.t_us + 3_000_000
                        self._absorbing_buy = buy
            self._set(not buy, idx, left)
            levels += 1
            if left == 0:
                self._fix_best(not buy)
            else:
                break

    def _split(self, fill: int) -> list[int]:
        n = min(fill, 1 + int(self.rng.expovariate(0.7)))
        if n <= 1:
            return [fill]
        cuts = sorted(self.rng.sample(range(1, fill), n - 1))
        return [b - a for a, b in zip([0, *cuts], [*cuts, fill], strict=True)]

    def _wall(self) -> None:
        rng = self.rng
        # walls go mostly where the trend is heading (to be absorbed or to stop it)
        if self.regime == "up":
            is_bid = rng.random() < 0.3
        elif self.regime == "down":
            is_bid = rng.random() < 0.7
        else:
            is_bid = rng.random() < 0.5
        d = rng.randint(3, 15)
        idx = self.best_bid - d if is_bid else self.best_ask + d
        if (is_bid, idx) in self.walls:
            return
        lots = int(self.mean_lots * rng.uniform(25, 60))
        book = self.bids if is_bid else self.asks
        self._set(is_bid, idx, book.get(idx, 0) + lots)
        fate = "yield" if rng.random() < 0.5 else "hold"
        self.walls[(is_bid, idx)] = [lots, self.t_us + int((20 + rng.expovariate(1 / 60)) * 1e6), fate, lots]
        self.stats["walls"] += 1

    def _expire_walls(self) -> None:
        t = self.t_us
        for key in [k for k, w in self.walls.items() if w[1] <= t]:
            is_bid, idx = key
            wall_lots = self.walls.pop(key)[0]
            book = self.bids if is_bid else self.asks
            lots = book.get(idx, 0)
            self.stats["walls_pulled"] += 1
            self._set(is_bid, idx, max(0, lots - wall_lots))
            if lots - wall_lots <= 0 and idx == (self.best_bid if is_bid else self.best_ask):
                self._fix_best(is_bid)

    def _trim(self) -> None:
        lo = self.best_bid - TRIM_LEVELS
        for idx in [i for i in self.bids if i < lo]:
            self.walls.pop((True, idx), None)
            self._set(True, idx, 0)
        hi = self.best_ask + TRIM_LEVELS
        for idx in [i for i in self.asks if i > hi]:
            self.walls.pop((False, idx), None)
            self._set(False, idx, 0)


class SyntheticSource:
    """The synthetic market of several symbols, as a server market source.

    ``origin_us`` (when serving starts) defaults to now (whole seconds); each symbol gets
    ``history_minutes`` of back-filled 1m candles so indicators are warm at start.

    ``warm_up_s``: run the model that many simulated seconds before ``origin_us`` (the models start at
    ``origin_us - warm_up_s``, the back-filled candles end there, and the warm-up's own trades make the
    candles after). A freshly seeded book holds ~150 levels a side and fills up to its equilibrium
    (~190 a side, levels within ``TRIM_LEVELS`` grid steps of the best) over about 10 simulated minutes;
    with a warm-up of that length the market is served as a lived-in one, like a real venue's (the feed
    benchmark measures memory on it). Costs ~0.025 s of CPU per symbol and simulated minute.
    """

    def __init__(self, symbols: list[str], seed: int = 0, origin_us: int | None = None,
                 history_minutes: int = 3000, warm_up_s: float = 0.0) -> None:
        from helios_orderflow.emulator.instruments import instrument

        if not symbols:
            raise HeliosError("the synthetic market needs at least one symbol, e.g. --symbols BTC/USDT ETH/USDT")
        if warm_up_s < 0:
            raise HeliosError(f"the synthetic market's warm-up must be >= 0 seconds, got {warm_up_s}")
        if origin_us is None:
            origin_us = int(time.time()) * 1_000_000
        self.origin_us = origin_us
        self.seed = seed
        self.states: list[MarketState] = []
        self.models: list[SyntheticModel] = []
        start_us = origin_us - round(warm_up_s * 1_000_000)
        for symbol in symbols:
            inst = instrument(symbol)
            state = MarketState(inst)
            model = SyntheticModel(inst, seed, state, start_us)
            state.candles.backfill(start_us // 1000, history_minutes, f"{seed}:{symbol}", model.minute_qty_units,
                                   model.best_ask * model.grid)
            self.states.append(state)
            self.models.append(model)
        if start_us < origin_us:
            # The warm-up's level changes are history: closed into one diff nobody is sent (update ids
            # move on, as on a venue that ran before the client came).
            self.advance(origin_us)
            for state in self.states:
                state.flush(origin_us // 1000)

    def advance(self, until_us: int) -> None:
        for model in self.models:
            model.advance(until_us)
