"""The strategy's entries and exits, for markers on the candles when the page runs beside the bot.

Freqtrade keeps its trades in its own database (``freqtrade.persistence.Trade``); the page runs in the bot's
process, so it reads them there. Nothing here imports Freqtrade at module import time: standalone
(``helios dashboard --recording``) there is no bot and ``freqtrade_trades`` returns nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BotTrade:
    """One fill of the bot: ``kind`` "entry" or "exit", at ``ts_us`` (epoch µs, UTC) and ``price`` (quote
    units); ``is_buy``: the order bought (a long's entry, a short's exit); ``label`` the marker's text."""

    ts_us: int
    kind: str
    is_buy: bool
    price: float
    label: str


def freqtrade_trades(symbol: str) -> list[BotTrade]:
    """Entries and exits of Freqtrade's trades in ``symbol`` (open and closed), oldest first; empty when no
    Freqtrade database is open in this process (standalone page, tests) or it cannot be read."""
    try:
        from freqtrade.persistence import Trade

        if getattr(Trade, "session", None) is None:
            return []
        trades = Trade.get_trades_proxy(pair=symbol)
    except Exception as exc:  # not beside a bot, or its database is busy: draw no markers rather than fail
        log.debug("no bot trades for %s: %s", symbol, exc)
        return []
    out: list[BotTrade] = []
    for t in trades:
        short = bool(getattr(t, "is_short", False))
        side = "short" if short else "long"
        if t.open_date is not None:
            out.append(BotTrade(int(t.open_date_utc.timestamp() * 1e6), "entry", not short, float(t.open_rate),
                                f"{side} entry {t.enter_tag or ''}".strip()))
        if not t.is_open and t.close_date is not None and t.close_rate is not None:
            out.append(BotTrade(int(t.close_date_utc.timestamp() * 1e6), "exit", short, float(t.close_rate),
                                f"exit {t.exit_reason or ''} {100 * (t.close_profit or 0):+.2f}%".strip()))
    out.sort(key=lambda b: b.ts_us)
    return out
