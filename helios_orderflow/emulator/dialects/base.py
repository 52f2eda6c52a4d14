"""What a venue dialect of the local exchange is: a translator from the one market model (``MarketState``
and the ``Batch`` each 100 ms step closes) to one venue's public REST and websocket protocol.

A dialect never changes the market: the server steps the market, applies the faults that change it
(``gap``, ``crossed``) and hands each step's batch to ``Dialect.publish``. The dialect renders it in the
venue's shapes and sends it through ``send_diff`` (which applies the faults that change what is sent:
``malformed``, ``drop``, ``reorder``, ``dup``) and the hub.

Update ids: the market's ``last_update_id`` (one id per level change) is the venue's own book sequence
where the venue has one per change or per message (Binance ``u``, Gate ``u``, OKX ``seqId``, KuCoin
``sequence``); a dialect whose venue numbers messages differently (Bybit's ``u``) keeps its own counter.
``/helios/state`` and ``ServerHandle.book_at`` use ``Dialect.update_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from aiohttp import web

from helios_orderflow.emulator.app import MarketApp
from helios_orderflow.emulator.hub import Hub
from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.market import Batch, MarketState

Middleware = Callable[..., Any]


class Dialect:
    """One venue's protocol over the shared market. Subclasses set the class attributes and implement
    ``wire``, ``ccxt_urls``, ``routes`` and ``publish``."""

    #: the venue's name on ``helios exchange --venue`` and the ccxt id of its spot client
    name: ClassVar[str]
    #: the market types this dialect lists: "spot" and, where the venue has them here, "linear" perpetuals
    markets: ClassVar[tuple[str, ...]] = ("spot",)
    #: fault kinds this dialect cannot show (said at start-up), e.g. ``stale`` where snapshots come by websocket
    unsupported_faults: ClassVar[tuple[str, ...]] = ()

    def __init__(self, app: MarketApp, hub: Hub) -> None:
        self.app = app
        self.hub = hub
        self._held: dict[str, tuple[str, str, str]] = {}  # reorder fault: symbol -> (market, topic, payload)

    # ---- naming and client configuration (no server needed) -----------------------------------------
    @staticmethod
    def wire(inst: Instrument) -> str:
        """The venue's name of an instrument (``BTCUSDT``, ``BTC-USDT``, ``BTC_USDT``, ...)."""
        raise NotImplementedError

    @classmethod
    def ccxt_id(cls, market: str) -> str:
        """The ccxt exchange id a client of ``market`` uses (also Freqtrade's ``exchange.name``)."""
        return cls.name

    @classmethod
    def ccxt_urls(cls, base: str) -> dict[str, Any]:
        """ccxt's ``urls`` override pointing every public endpoint of the venue at ``base``."""
        raise NotImplementedError

    @classmethod
    def ccxt_options(cls, market: str) -> dict[str, Any]:
        """ccxt ``options`` so a client loads only what the local exchange lists."""
        return {}

    @classmethod
    def ccxt_config(cls, base: str, market: str = "spot") -> dict[str, Any]:
        """A ccxt constructor config (also Freqtrade's ``exchange.ccxt_config``) for the local exchange."""
        return {"urls": cls.ccxt_urls(base), "options": cls.ccxt_options(market)}

    @classmethod
    def endpoints(cls, base: str) -> str:
        """Where it listens, for the start-up line."""
        return f"REST and websockets under {base}"

    # ---- serving ----------------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def middlewares(self) -> list[Middleware]:
        return []

    def update_id(self, st: MarketState) -> int:
        """The venue's own id of ``st``'s current book (``lastUpdateId`` in ``/helios/state``)."""
        return st.last_update_id

    def publish(self, st: MarketState, batch: Batch, ts_ms: int, elapsed: float) -> None:
        raise NotImplementedError

    # ---- helpers for dialects ---------------------------------------------------------------------------
    def send_diff(self, st: MarketState, topic: str, payload: str, elapsed: float) -> None:
        """Send one book update on ``topic``, applying the faults that change what is sent: ``malformed`` (a
        truncated frame first), ``drop``, ``reorder`` (held back until after the next one), ``dup``."""
        hub, faults, market, sym = self.hub, self.app.faults, st.inst.market, st.inst.symbol
        if not faults:
            hub.publish(market, topic, payload)
            return
        if faults.fires("malformed", sym, elapsed):
            hub.publish_raw(market, topic, payload[: len(payload) // 2])
        held = self._held.pop(sym, None)
        if faults.fires("drop", sym, elapsed):
            pass
        elif held is None and faults.fires("reorder", sym, elapsed):
            self._held[sym] = (market, topic, payload)
        else:
            hub.publish(market, topic, payload)
            if faults.fires("dup", sym, elapsed):
                hub.publish(market, topic, payload)
        if held is not None:
            hub.publish(*held)

    def rest_fault(self, request: web.Request) -> str | None:
        """Count a REST request and say which REST fault fires for it: ``"rest429"``, ``"rest5xx"`` or None."""
        app = self.app
        app.log.rest_requests += 1
        app.log.rest_by_path[request.path] = app.log.rest_by_path.get(request.path, 0) + 1
        elapsed = app.elapsed_s()
        for kind in ("rest429", "rest5xx"):
            if app.faults.fires(kind, request.path, elapsed):
                return kind
        return None


#: The dialect serving a request: ``request.app[DIALECT_KEY]``.
DIALECT_KEY: web.AppKey[Dialect] = web.AppKey("helios_exchange_dialect", Dialect)
