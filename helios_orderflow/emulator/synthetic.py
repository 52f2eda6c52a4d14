"""A seeded stochastic limit-order-book market, one per symbol, for the local exchange and ``helios synth``.

Model (after Cont, Stoikov & Talreja 2010, "A stochastic model for order book dynamics"): limit orders,
cancellations and market orders arrive as independent Poisson processes. A limit order arrives at distance
``i`` grid steps from the opposite best price with rate ``k_L / i**0.7`` (so it may improve the best inside
the spread); cancellations at distance ``j`` from the own best arrive with rate ``k_C / (j+1)**0.9`` and take
a share of the resting size (cancellation proportional to the queue); market orders eat the book from the
best. Beyond the CST core near the touch, a **deep book** reaches ``DEEP_BP`` basis points from the best (the
heatmap's default +/- 0.5 %): orders arrive at each grid step at a rate proportional to the resting size wanted
there and each deep level is cancelled whole at a fixed rate, so the depth profile is the one measured on the
real Binance BTCUSDT capture (``devtools/market_figures.py``; the calibration constants below name the figure
each one matches). Market orders are mostly small one-print orders, some blocks filled by several makers, so
trade sizes and the trade rate are BTCUSDT's too. On top, to make order-flow signals appear within minutes:

- **trends and reversals**: a latent fair price follows regimes (up, down, range) with exponential
  durations; the distance between fair price and mid skews which side market orders and cancellations
  come from, so the mid follows the fair price through order flow, not by decree;
- **exhaustion**: market-order intensity within a trend rises then decays (``0.6 + 2.4·4x(1-x)`` of its base
  rate, ``x`` the elapsed fraction of the regime); a trend ends in thin aggressive volume and often reverses;
- **walls**: large resting orders (a few times the resting size of one basis point, so that the engine's
  wall rule, 3 x the median bin, sees them at default settings) appear in a trend's way or further out, are
  pulled when their lifetime ends untouched, or are hit by the trend: then they are absorbed (eaten, with
  market orders coming ``ABSORB_RATE_X`` times as often meanwhile) or defended (the trend reverses at a wall
  that held 30 % of its size).

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

# ---- calibration ------------------------------------------------------------------------------------------
# Every figure below is matched to the real Binance spot BTCUSDT capture bundled in devtools/data/samples
# (2024-08-08/09, 11 minutes, mid ~61,700), as ``devtools/market_figures.py`` measures both markets
# (``make bench`` lines ``market.real.*`` / ``market.synthetic.*``; ``tests/test_demo_market.py`` holds the
# tolerances). Sizes are quote notional (converted to lots at the instrument's start price), distances basis
# points (bp) of the start price, so every symbol gets a book shaped like BTCUSDT's at its own price.

#: The CST core near the touch: limit orders land at most this many grid steps from the opposite best.
K_LEVELS = 80
LIMIT_RATE = 30.0  # near-touch limit orders per second per side
CANCEL_RATE = 26.0  # near-touch cancellation events per second per side
#: Mean near-touch limit order (quote). With the deep book below: depth 0-0.1 % from mid ~90 BTC (both sides).
ORDER_NOTIONAL = 3500.0
#: The deep book: levels out to this many bp from the own best (the heatmap's default +/- 50 bp, plus room for
#: the price to move), resting size per bp per side ``DEEP_NOTIONAL_PER_BP`` x ``_deep_profile(bp)``.
#: Real: 90 / 85 BTC in 0-0.1 / 0.1-0.2 % (both sides), ~64 in 0.2-0.3 % (the REST snapshot; its 1000
#: levels reach 0.33 %, so the capture's book beyond is incomplete and its figures there are a lower bound).
DEEP_BP = 56.0
TRIM_BP = 62.0  # levels farther than this from the best are cancelled (books stay < 1000 levels a side) ...
TRIM_MIN_STEPS = 300  # ... but never nearer than this many grid steps (coarse-tick symbols: SOL, XRP, DOGE)
DEEP_NOTIONAL_PER_BP = 235_000.0
#: A deep level is cancelled whole at this rate (per second, each level): levels live about a minute.
DEEP_CANCEL_PER_LEVEL = 1 / 60
#: Mean deep order (quote), lognormal with this sigma: few large orders per 5 USD bin give the real spread of
#: bin sizes (p10 / p50 / p90 of 0.33 / 2.6 / 5.6 BTC within +/- 0.3 %).
DEEP_ORDER_NOTIONAL = 20_000.0
DEEP_ORDER_SIGMA = 0.8
#: The seeded deep book holds this share of its equilibrium levels (it reaches equilibrium in ~3 minutes).
SEED_FILL = 0.5
#: Market orders per second (base, before the regime's intensity); with the sizes below: ~30 trades/s and
#: ~40 BTC/min of taker volume (real: 30.6 trades/s, 40.4 BTC/min).
MARKET_RATE = 11.5
#: Market orders are small (retail, one print) with this probability, else blocks split over many makers.
#: Real trade prints p10 / p50 / p90 / p99: 0.00009 / 0.00067 / 0.058 / 0.32 BTC.
SMALL_SHARE = 0.9
SMALL_NOTIONAL = 20.0  # median, lognormal sigma SMALL_SIGMA
SMALL_SIGMA = 1.3
BLOCK_NOTIONAL = 15000.0  # median, lognormal sigma BLOCK_SIGMA
BLOCK_SIGMA = 1.2
BLOCK_PARTS = 1.0  # a block's fill at one level prints 1 + int(Exp(mean BLOCK_PARTS)) maker fills
#: A trend's latent fair price moves this many bp per second (real: median move of the mid from one minute to
#: the next 6.8 bp).
TREND_BP_S = (0.1, 0.3)
#: While a wall is being absorbed, market orders come this many times as often (it takes 10-30 s).
ABSORB_RATE_X = 4.0
#: Walls per second (real: 1.75 confirmed walls a minute, a wall at 82 % of candle closes).
WALL_RATE = 1 / 30
#: Wall size: this many times the expected resting size of one bp at its distance (real: peak / median bin
#: p10 / p50 / p90 of 3.7 / 4.4 / 6.1).
WALL_SIZE_BP = (2.2, 3.6)
#: In a trend, this share of walls is placed in its way (WALL_NEAR_BP ahead of the best: absorbed, or stopping
#: the trend); the others, and all walls in a range, stand further out on either side (WALL_FAR_BP) and are
#: mostly pulled (real distances p10 / p50 / p90: 3 / 18 / 28 bp).
WALL_NEAR_SHARE = 0.6
WALL_NEAR_BP = (2.0, 5.0)
WALL_FAR_BP = (6.0, 28.0)
#: Untouched walls are pulled after WALL_MIN_S + lognormal(median WALL_MEDIAN_S, sigma WALL_SIGMA) seconds
#: (real lifetimes as the engine sees them, p10 / p50 / p90: 18 / 38 / 129 s).
WALL_MIN_S = 8.0
WALL_MEDIAN_S = 18.0
WALL_SIGMA = 1.0


def _deep_profile(bp: float) -> float:
    """Relative resting size per bp at ``bp`` from the best: flat to 15 bp, then thinning to ~0.5 at 50 bp."""
    return 1.0 if bp <= 15.0 else max(0.3, 1.0 - 0.55 * (bp - 15.0) / 35.0)


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
        lot_notional = inst.start_price * inst.qty(inst.step_units)
        self.lot_notional = lot_notional
        self.mean_lots = max(2.0, ORDER_NOTIONAL / lot_notional)
        grid_price = inst.price(self.grid)
        self.steps_per_bp = max(1e-9, inst.start_price * 1e-4 / grid_price)  # grid steps per basis point
        self.trim = max(TRIM_MIN_STEPS, round(TRIM_BP * self.steps_per_bp))
        # The deep book: steps 1..deep from the own best; arrival weight per step ~ the resting size wanted there
        # (a level cancelled whole at rate c holds arrivals x mean size / c on average).
        self.deep = max(K_LEVELS + 1, round(DEEP_BP * self.steps_per_bp))
        self.deep_lots = max(1.0, DEEP_ORDER_NOTIONAL / lot_notional)
        lots_per_step = [DEEP_NOTIONAL_PER_BP / lot_notional / self.steps_per_bp * _deep_profile(d / self.steps_per_bp)
                         for d in range(1, self.deep + 1)]
        self._deep_arrival = [x * DEEP_CANCEL_PER_LEVEL / self.deep_lots for x in lots_per_step]  # per step, /s
        self._deep_cum, self._deep_total = _cumulative(self._deep_arrival)
        self.deep_limit_rate = self._deep_total  # per side
        self.deep_cancel_rate = DEEP_CANCEL_PER_LEVEL * self.deep  # per side: a random step, its level goes
        self.bp_lots = DEEP_NOTIONAL_PER_BP / lot_notional  # resting size of one bp near the touch, lots
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
                      "wall_hits": 0, "reversals": 0, "deep_limit": 0, "deep_cancel": 0}
        self._seed_book()
        self._new_regime()
        self.next_event_us = self.t_us + self._draw_dt()

    @property
    def minute_qty_units(self) -> int:
        """Typical traded quantity per minute (for back-filled candles), in qty_units."""
        mean_order = (SMALL_SHARE * SMALL_NOTIONAL * math.exp(SMALL_SIGMA**2 / 2)
                      + (1 - SMALL_SHARE) * BLOCK_NOTIONAL * math.exp(BLOCK_SIGMA**2 / 2))
        # the regimes' mean intensity is about 1 (calibrated: BTC/USDT trades ~40 BTC a minute)
        return int(MARKET_RATE * 60 * mean_order / self.lot_notional * self.lot)

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

    def _deep_size(self) -> int:
        return max(1, int(self.deep_lots * math.exp(self.rng.gauss(-DEEP_ORDER_SIGMA**2 / 2, DEEP_ORDER_SIGMA))))

    def _seed_book(self) -> None:
        """The near-touch queues, and the deep book level by level at ``SEED_FILL`` of its equilibrium (there a
        level is occupied with probability a / (a + c) and holds 1 + geometric(a / c) orders, for arrivals a and
        cancellation c): it fills up over the first minutes (a level lives ~1 / c), so a warmed-up market
        serves a fuller, lived-in book than a fresh one."""
        rng = self.rng
        c = DEEP_CANCEL_PER_LEVEL
        for j in range(self.deep):
            a = self._deep_arrival[j]
            p = a / (a + c)
            p_seed = SEED_FILL * p
            for is_bid in (True, False):
                lots = 0
                if j < K_LEVELS // 2 and (j <= 2 or rng.random() >= 0.15):
                    lots = max(1, int(self.mean_lots * (1.0 + j**0.3) * math.exp(rng.gauss(-0.3, 0.7))))
                if j >= 2 and rng.random() < p_seed:
                    lots += self._deep_size()
                    while rng.random() < p:
                        lots += self._deep_size()
                if lots:
                    self._set(is_bid, self.best_bid - j if is_bid else self.best_ask + j, lots)

    def _fix_best(self, is_bid: bool) -> None:
        if is_bid:
            if not self.bids:
                self._set(True, self.best_ask - 1, self._size())
            b = self.best_bid
            while b not in self.bids:
                b -= 1
                if b < self.best_ask - 10 * self.trim:
                    b = max(self.bids)
                    break
            self.best_bid = b
        else:
            if not self.asks:
                self._set(False, self.best_bid + 1, self._size())
            a = self.best_ask
            while a not in self.asks:
                a += 1
                if a > self.best_bid + 10 * self.trim:
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
            speed = rng.uniform(*TREND_BP_S) * self.steps_per_bp
            self.drift = speed if regime == "up" else -speed

    def _intensity(self) -> float:
        if self.regime == "range":
            return 1.0
        x = (self.t_us - self.regime_start_us) / max(1, self.regime_end_us - self.regime_start_us)
        return 0.6 + 2.4 * 4 * x * (1 - x)

    # ---- the event loop ------------------------------------------------------------------------
    def _total_rate(self) -> float:
        absorbing = self.t_us < self._absorbing_until_us
        self._mkt_rate = MARKET_RATE * self._intensity() * (ABSORB_RATE_X if absorbing else 1.0)
        return (2 * LIMIT_RATE + 2 * CANCEL_RATE + self._mkt_rate + WALL_RATE
                + 2 * self.deep_limit_rate + 2 * self.deep_cancel_rate)

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
            near = 2 * LIMIT_RATE + 2 * CANCEL_RATE + self._mkt_rate + WALL_RATE
            u = rng.random() * (near + 2 * self.deep_limit_rate + 2 * self.deep_cancel_rate)
            if u >= near:
                u -= near
                if u < 2 * self.deep_limit_rate:
                    self._deep_limit(u < self.deep_limit_rate)
                else:
                    self._deep_cancel(u < 2 * self.deep_limit_rate + self.deep_cancel_rate)
            elif u < 2 * LIMIT_RATE:
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

    def _deep_limit(self, is_bid: bool) -> None:
        self.stats["deep_limit"] += 1
        j = bisect.bisect_left(self._deep_cum, self.rng.random() * self._deep_total) + 1
        if is_bid:
            idx = self.best_bid - j
            self._set(True, idx, self.bids.get(idx, 0) + self._deep_size())
        else:
            idx = self.best_ask + j
            self._set(False, idx, self.asks.get(idx, 0) + self._deep_size())

    def _deep_cancel(self, is_bid: bool) -> None:
        """A random step of the deep book loses its level (a wall there stays: walls are pulled whole)."""
        j = self.rng.randint(1, self.deep)
        idx = self.best_bid - j if is_bid else self.best_ask + j
        lots = (self.bids if is_bid else self.asks).get(idx, 0)
        if not lots:
            return
        wall = self.walls.get((is_bid, idx))
        keep = wall[0] if wall else 0
        if lots > keep:
            self.stats["deep_cancel"] += 1
            self._set(is_bid, idx, keep)

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
        if rng.random() < SMALL_SHARE:
            notional = SMALL_NOTIONAL * math.exp(rng.gauss(0.0, SMALL_SIGMA))
            block = False
        else:
            notional = BLOCK_NOTIONAL * math.exp(rng.gauss(0.0, BLOCK_SIGMA))
            block = True
        want = max(1, int(notional / self.lot_notional))
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
            parts = self._split(fill) if block and fill >= 3 else [fill]
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
                        # aggressors keep coming until the wall is eaten (absorption); a wall being eaten
                        # is not pulled meanwhile
                        self._absorbing_until_us = self.t_us + 3_000_000
                        self._absorbing_buy = buy
                        wall[1] = max(wall[1], self.t_us + 10_000_000)
            self._set(not buy, idx, left)
            levels += 1
            if left == 0:
                self._fix_best(not buy)
            else:
                break

    def _split(self, fill: int) -> list[int]:
        n = min(fill, 1 + int(self.rng.expovariate(1 / BLOCK_PARTS)))
        if n <= 1:
            return [fill]
        cuts = sorted(self.rng.sample(range(1, fill), n - 1))
        return [b - a for a, b in zip([0, *cuts], [*cuts, fill], strict=True)]

    def _wall(self) -> None:
        rng = self.rng
        # in a trend, most walls go where it is heading (to be absorbed or to stop it)
        if self.regime != "range" and rng.random() < WALL_NEAR_SHARE:
            is_bid = self.regime == "down"
            bp = rng.uniform(*WALL_NEAR_BP)
        else:
            is_bid = rng.random() < 0.5
            bp = rng.uniform(*WALL_FAR_BP)
        d = max(1, round(bp * self.steps_per_bp))
        idx = self.best_bid - d if is_bid else self.best_ask + d
        if (is_bid, idx) in self.walls:
            return
        lots = int(self.bp_lots * _deep_profile(bp) * rng.uniform(*WALL_SIZE_BP))
        book = self.bids if is_bid else self.asks
        self._set(is_bid, idx, book.get(idx, 0) + lots)
        fate = "yield" if rng.random() < 0.5 else "hold"
        life_s = WALL_MIN_S + WALL_MEDIAN_S * math.exp(rng.gauss(0.0, WALL_SIGMA))
        self.walls[(is_bid, idx)] = [lots, self.t_us + int(life_s * 1e6), fate, lots]
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
        lo = self.best_bid - self.trim
        for idx in [i for i in self.bids if i < lo]:
            self.walls.pop((True, idx), None)
            self._set(True, idx, 0)
        hi = self.best_ask + self.trim
        for idx in [i for i in self.asks if i > hi]:
            self.walls.pop((False, idx), None)
            self._set(False, idx, 0)


class SyntheticSource:
    """The synthetic market of several symbols, as a server market source.

    ``origin_us`` (when serving starts) defaults to now (whole seconds); each symbol gets
    ``history_minutes`` of back-filled 1m candles so indicators are warm at start.

    ``warm_up_s``: run the model that many simulated seconds before ``origin_us`` (the models start at
    ``origin_us - warm_up_s``, the back-filled candles end there, and the warm-up's own trades make the
    candles after). A freshly seeded book holds half of its deep book (BTC/USDT: ~190 levels a side) and fills
    up to its equilibrium (~420 a side, out to ``TRIM_BP`` basis points of the best) over about 3 simulated
    minutes; with a warm-up the market is served as a lived-in one, like a real venue's (the feed benchmark
    measures memory on it). Costs ~0.07 s of CPU per symbol and simulated minute (BTC/USDT).
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
