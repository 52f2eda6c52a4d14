"""The ccxt edge: every ccxt internal Helios touches, and the turn from ccxt's objects into Helios events.

Nothing else in Helios reaches into ccxt's clients. Here:

- ``exchange_class``: the ccxt.pro client class of an exchange id, with a clear error for an unknown one;
- ``error_kind``/``unsupported``: ccxt's exception classes sorted into what the feed does about them;
- ``amount_scale``: ccxt's amount unit in base currency (contracts on OKX swaps);
- ``watch_cancelled``: a watch call ccxt ended by cancelling its future (a connection it closed), told from
  the feed's own cancellation;
- ``guard_frames``: wraps every websocket client the exchange makes (frame handler, ``resolve``,
  ``on_error``/``on_close``) so that a frame ccxt cannot handle drops the connection, losses are counted per
  URL, a stray second connection is closed and each resolved update reaches the feed inside ccxt's handling;
- ``own_callbacks_only``: the fix for ccxt's double close report (docs/reliability.md, known problem 7);
- ``url_of``: the URL of the connection carrying a subscription;
- ``trade_event``/``bbo_event``: ccxt's unified trade and bid/ask dicts as Helios events.

Tested against the real ccxt.pro clients and the local exchange (tests/test_feed_live.py,
tests/test_feed_faults.py): a ccxt upgrade that changes these internals fails there first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from helios_orderflow.book.diff import base_amount
from helios_orderflow.core.errors import ConfigError, describe
from helios_orderflow.core.events import NO_ID, BestBidOffer, Trade

log = logging.getLogger(__name__)


def error_kind(exc: BaseException) -> str:
    """``"gap"`` for a broken venue sequence, ``"reconnect"`` for transient trouble (network, REST 429/5xx),
    else ``"error"``."""
    import ccxt

    if isinstance(exc, ccxt.InvalidNonce):  # ChecksumError too: ccxt's Binance gap
        return "gap"
    # OperationFailed is ccxt's "transient, retrying may work": network errors, REST 429 and 5xx answers.
    if isinstance(exc, (ccxt.OperationFailed, ConnectionError, TimeoutError, OSError)):
        return "reconnect"
    return "error"


def watch_cancelled(stopping: bool) -> BaseException | None:
    """Called where a ccxt watch call raised ``CancelledError``: the error to handle as a lost connection when
    ccxt cancelled the call's future itself, None when the feed's own task is being cancelled (``stopping``,
    or ``Task.cancel``), which must propagate.

    ccxt closes a websocket connection with ``Client.close()``, which *cancels* every future still pending
    on it instead of rejecting it; an ``await`` on one then raises ``CancelledError`` in the caller, as if
    the caller had been cancelled. ``Exchange.load_order_book`` does so when a book's snapshot sync fails
    (the REST snapshot refused three times, e.g. KuCoin answering 429 or 5xx, or stale three times): the
    failing symbol's watcher is rejected with the error, every other watcher of the connection (the other
    pairs' books, the trades, the quotes) is cancelled. Taken for the feed's own cancellation, it would end
    the watch loops and with them the feed thread, silently (docs/venues.md, KuCoin)."""
    import asyncio

    import ccxt

    task = asyncio.current_task()
    if stopping or task is None or task.cancelling():
        return None
    return ccxt.NetworkError("the connection was closed by ccxt, which cancelled the pending watch")


def unsupported(exc: BaseException) -> bool:
    import ccxt

    return isinstance(exc, (ccxt.NotSupported, ccxt.BadRequest, ccxt.BadSymbol))


def exchange_class(exchange_id: str) -> Any:
    import ccxt.pro

    cls = getattr(ccxt.pro, exchange_id, None)
    if cls is None or not isinstance(cls, type):
        raise ConfigError(
            f"exchange {exchange_id!r} has no ccxt.pro websocket client; use a ccxt id such as "
            "binance, binanceusdm, kraken, okx (see ccxt.pro.exchanges)"
        )
    return cls


def url_of(ex: Any, message_hash: str) -> str | None:
    """The websocket URL of the connection that carries ``message_hash`` (stable across reconnects)."""
    for c in list((ex.clients or {}).values()):
        if message_hash in getattr(c, "subscriptions", {}):
            return str(c.url)
    return None


def guard_frames(ex: Any, losses: dict[str, int], on_resolve: Callable[[Any], None] | None = None,
                 check: Callable[[Any], str | None] | None = None,
                 precheck: Callable[[Any], str | None] | None = None) -> None:
    """Make a frame ccxt cannot handle drop the connection instead of silently stalling it.

    ccxt handles each websocket frame in a callback that also schedules the next read; when handling
    raises (a truncated JSON frame, an unexpected payload), the read loop ends while the socket stays open:
    no future resolves again until the keepalive gives up. Every client the exchange creates gets its
    frame handler wrapped: an exception becomes a ``NetworkError`` on that connection, which rejects its
    watchers; the feed's loops then reconnect and resync at once. Its ``on_error``/``on_close`` also count
    connection losses per URL in ``losses``, so a loop can tell that its connection died while it was not
    awaiting (ccxt then reconnects on the next call without raising); frames a lost connection still
    delivers afterwards are dropped, since the gap declared for the loss covers them. ``on_resolve`` is
    called with every result ccxt resolves a watcher with, right there in the frame's handling (it must
    not raise). ``precheck`` and ``check`` (``venue_checks``) are called with each frame before and after ccxt
    handles it; a problem either reports fails the connection with ``ChecksumError`` (a declared gap and a
    fresh snapshot), and a frame failed before is not handled.
    """
    import ccxt

    make_client = ex.client
    own_callbacks_only(ex)

    def client(url: str) -> Any:
        c: Any = make_client(url)
        if not getattr(c, "_helios_guarded", False):
            handle = c.handle_text_or_binary_message

            def guarded(data: Any, _handle: Any = handle, _c: Any = c) -> None:
                if getattr(_c, "_helios_lost", None) == ("lost", _c.connectionEstablished):
                    # A frame read before the loss but handled after it (ccxt closes the socket later,
                    # and the feed may have declared the gap meanwhile): it lies inside the gap. Handled,
                    # it would land after the gap marker and make the hole behind it look covered.
                    return
                registered = (ex.clients or {}).get(_c.url) is _c
                if not registered:
                    # Only the client registered for its URL may deliver: another one is a connection ccxt
                    # forgot (its watchers were re-dialled on a new one), and both would hand over every
                    # trade. Drop the frame and close the stray connection; its pending watchers are rejected,
                    # so a loop awaiting one declares the gap and dials again.
                    _c.on_error(ccxt.NetworkError(f"a second connection to {_c.url} was closed"))
                    return
                if precheck is not None and _failed_check(_c, precheck, data):
                    return
                try:
                    _handle(data)
                except Exception as exc:
                    _c.on_error(ccxt.NetworkError(f"a frame from {_c.url} could not be handled ({describe(exc)})"))
                    return
                if check is not None:
                    _failed_check(_c, check, data)

            c.handle_text_or_binary_message = guarded
            on_error, on_close = c.on_error, c.on_close

            def lost(conn: Any) -> None:
                # One loss per connection however often it is reported (on_error, then on_close); a client
                # that dials again gets a new connectionEstablished time.
                mark = ("lost", conn.connectionEstablished)
                if getattr(conn, "_helios_lost", None) != mark:
                    conn._helios_lost = mark
                    losses[conn.url] = losses.get(conn.url, 0) + 1

            def lost_on_error(error: Any, _on_error: Any = on_error, _c: Any = c) -> Any:
                lost(_c)
                return _on_error(error)

            def lost_on_close(code: Any, _on_close: Any = on_close, _c: Any = c) -> Any:
                lost(_c)
                return _on_close(code)

            c.on_error, c.on_close = lost_on_error, lost_on_close
            if on_resolve is not None:
                resolve = c.resolve

                def resolved(result: Any, message_hash: Any, _resolve: Any = resolve) -> Any:
                    on_resolve(result)
                    return _resolve(result, message_hash)

                c.resolve = resolved
            c._helios_guarded = True
        return c

    ex.client = client


def _failed_check(client: Any, check: Callable[[Any], str | None], frame: Any) -> bool:
    """Run a venue check on ``frame``; on a problem fail ``client``'s connection with ccxt's ``ChecksumError``
    and return True."""
    import ccxt

    try:
        problem = check(frame)
    except Exception as exc:  # a check that cannot read a frame must not pass it silently
        problem = f"checking a frame failed ({describe(exc)})"
    if problem is None:
        return False
    client.on_error(ccxt.ChecksumError(problem))
    return True


def own_callbacks_only(ex: Any) -> None:
    """Let a ccxt client's close and error callbacks unregister that client only, never its successor.

    ccxt reports a server's close twice: ``on_close(1001)`` when the close frame is read, which removes the
    client from ``exchange.clients``, and ``on_close(1006)`` a few callbacks later, when its receive loop
    finds the socket closed. ``Exchange.on_close`` then removes whatever client holds the URL by then. A
    watch loop that called ccxt again in between (the trades loop does at once when it finds the loss
    between two reads, which is how a busy feed finds it) has dialled a new client: the late callback
    unregisters that live client, the next call dials a third, and from then on two connections deliver
    every trade of the URL. This is the duplicated-trades defect seen under load (docs/reliability.md).
    The callbacks are read by ``exchange.client()`` when a client is made, so they are replaced here
    before the first one is.
    """

    def if_registered(callback: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def call(client: Any, error: Any) -> Any:
            return callback(client, error) if (ex.clients or {}).get(client.url) is client else None

        return call

    ex.on_close, ex.on_error = if_registered(ex.on_close), if_registered(ex.on_error)


def amount_scale(market: Mapping[str, Any]) -> float:
    """What one unit of ccxt's amounts is in the base currency for ``market`` (a ccxt market): the contract size
    on a linear contract counted in contracts (OKX swaps: ``ctVal``, e.g. 0.01 BTC), else 1. Inverse contracts
    (sized in quote currency) keep their contracts: their base amount depends on the price."""
    size = market.get("contractSize")
    if market.get("contract") and market.get("linear") and size not in (None, 1, 1.0):
        return float(size)
    return 1.0


def trade_event(exchange: str, symbol: str, t: Mapping[str, Any], local: int, scale: float = 1.0) -> Trade | None:
    side = t.get("side")
    price = t.get("price")
    amount = t.get("amount")
    if side not in ("buy", "sell") or price is None or amount is None:
        return None  # a venue that does not say the taker's side gives no order-flow trade
    ts = t.get("timestamp")
    return Trade(
        exchange=exchange,
        symbol=symbol,
        ts_us=int(ts) * 1000 if ts is not None else local,
        local_ts_us=local,
        price=float(price),
        amount=base_amount(float(amount), scale),
        side=side,
        trade_id=str(t.get("id") if t.get("id") is not None else ""),
    )


def bbo_event(exchange: str, symbol: str, q: Mapping[str, Any], local: int, scale: float = 1.0) -> BestBidOffer | None:
    bid, ask = q.get("bid"), q.get("ask")
    if bid is None or ask is None:
        return None
    info = q.get("info")
    uid = info.get("u") if isinstance(info, Mapping) else None
    ts = q.get("timestamp")
    return BestBidOffer(
        exchange=exchange,
        symbol=symbol,
        ts_us=int(ts) * 1000 if ts is not None else local,
        local_ts_us=local,
        update_id=int(uid) if isinstance(uid, (int, str)) and str(uid).isdigit() else NO_ID,
        bid_price=float(bid),
        bid_amount=base_amount(float(q.get("bidVolume") or 0.0), scale),
        ask_price=float(ask),
        ask_amount=base_amount(float(q.get("askVolume") or 0.0), scale),
    )


#: How long ending one subscription may take before it is given up (the pair is dropped either way).
UNWATCH_TIMEOUT_S = 5.0


async def unwatch(ex: Any, symbol: str, *, trades: bool) -> list[str]:
    """End ``symbol``'s book subscription, and its trades subscription when it is the pair's own (``trades``),
    where the venue's ccxt client can (``unWatchOrderBook``, ``unWatchTrades`` in ``ex.has``), then drop ccxt's
    caches of it. Best effort and never raises: a pair that left the feed is ignored whatever arrives for it;
    ending the subscriptions only saves the venue's bandwidth and ccxt's memory. Returns what was ended.

    Multi-symbol subscriptions are not ended: ccxt sends an unsubscription for a subset of symbols on the
    connection of a new subscription hash (Binance: another stream), where the venue ignores it, and ending the
    whole subscription would stop the trades of the pairs that stay."""
    done = []
    calls = [("unWatchOrderBook", "un_watch_order_book")] + ([("unWatchTrades", "un_watch_trades")] if trades else [])
    for cap, call in calls:
        if not ex.has.get(cap):
            continue
        try:
            await asyncio.wait_for(getattr(ex, call)(symbol), UNWATCH_TIMEOUT_S)
            done.append(cap)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an unsubscription the venue refuses or never answers: the pair is gone anyway
            log.info("%s: ending the %s subscription failed (%s); its updates are ignored", symbol, cap, describe(exc))
    # ccxt's handlers look the symbol up in these caches: only what is no longer subscribed may go
    for cap, name in (("unWatchOrderBook", "orderbooks"), ("unWatchTrades", "trades")):
        cache = getattr(ex, name, None)
        if cap in done and isinstance(cache, dict):
            cache.pop(symbol, None)
    return done
