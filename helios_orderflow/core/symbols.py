"""Venue symbols to ccxt's unified symbols, and symbols to path-safe names.

Binance's wire symbols (``BTCUSDT``, ``BTCUSD_PERP``, ``BTCUSD_211231``) do not say where the base ends;
with exchange metadata (``exchangeInfo``) we use ``baseAsset``/``quoteAsset``, without it we split on the
longest known quote asset. A user can always name the symbol explicitly (``--symbol``).
"""

from __future__ import annotations

import functools
import re

from helios_orderflow.core.errors import HeliosError

# Longest first, so that "BTCUSDT" splits as BTC/USDT, not BTCUSD/T.
KNOWN_QUOTES = sorted(
    [
        "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "USD", "EUR", "GBP", "TRY", "BRL",
        "AUD", "JPY", "RUB", "UAH", "ZAR", "IDRT", "BIDR", "NGN", "PLN", "RON", "ARS", "MXN",
        "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE", "DOT", "SOL",
    ],
    key=len,
    reverse=True,
)

BINANCE_SPOT = {"binance", "binanceus"}
BINANCE_LINEAR = {"binanceusdm"}
BINANCE_INVERSE = {"binancecoinm"}


def split_pair(raw: str, quotes: list[str] | None = None) -> tuple[str, str]:
    """``'BTCUSDT' -> ('BTC', 'USDT')`` by the longest known quote suffix."""
    raw = raw.upper()
    for q in quotes or KNOWN_QUOTES:
        if raw.endswith(q) and len(raw) > len(q):
            return raw[: -len(q)], q
    raise HeliosError(
        f"cannot tell base from quote in symbol {raw!r}; name the symbol explicitly, e.g. --symbol BTC/USDT"
    )


def binance_unified(raw: str, exchange: str, base_quote: tuple[str, str] | None = None) -> str:
    """A Binance wire symbol as ccxt's unified symbol for ccxt exchange id ``exchange``.

    ``binance``/``binanceus``: ``BTCUSDT -> BTC/USDT``; ``binanceusdm``: ``BTCUSDT -> BTC/USDT:USDT``;
    ``binancecoinm``: ``BTCUSD_PERP -> BTC/USD:BTC``, ``BTCUSD_211231 -> BTC/USD:BTC-211231``.
    """
    raw = raw.upper()
    if exchange in BINANCE_INVERSE:
        pair, _, suffix = raw.partition("_")
        base, quote = base_quote or split_pair(pair)
        if suffix in ("", "PERP"):
            return f"{base}/{quote}:{base}"
        return f"{base}/{quote}:{base}-{suffix}"
    base, quote = base_quote or split_pair(raw)
    if exchange in BINANCE_LINEAR:
        pair, _, suffix = raw.partition("_")
        if suffix:
            return f"{base}/{quote}:{quote}-{suffix}"
        return f"{base}/{quote}:{quote}"
    return f"{base}/{quote}"


def binance_wire(symbol: str) -> str:
    """ccxt unified symbol to Binance's wire symbol: ``BTC/USDT:USDT -> BTCUSDT``,
    ``BTC/USD:BTC -> BTCUSD_PERP``, ``BTC/USD:BTC-211231 -> BTCUSD_211231``."""
    base, _, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    settle_ccy, _, expiry = settle.partition("-")
    if settle and settle_ccy == base:  # inverse
        return f"{base}{quote}_{expiry or 'PERP'}"
    if expiry:
        return f"{base}{quote}_{expiry}"
    return f"{base}{quote}"


_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def symbol_to_path(symbol: str) -> str:
    """Path-safe form, as Freqtrade names files: ``BTC/USDT -> BTC_USDT``,
    ``BTC/USDT:USDT -> BTC_USDT_USDT``, ``BTC/USD:BTC-211231 -> BTC_USD_BTC-211231``."""
    out = symbol.replace("/", "_").replace(":", "_")
    if not _SAFE.match(out) or out.count("_") > 2:
        raise HeliosError(f"symbol {symbol!r} cannot be stored: expected ccxt's form like BTC/USDT or BTC/USDT:USDT")
    return out


def symbol_from_path(name: str) -> str:
    """Inverse of ``symbol_to_path``."""
    parts = name.split("_")
    if len(parts) == 2:
        return f"{parts[0]}/{parts[1]}"
    if len(parts) == 3:
        return f"{parts[0]}/{parts[1]}:{parts[2]}"
    raise HeliosError(f"partition symbol={name!r} is not a Helios symbol name like BTC_USDT or BTC_USDT_USDT")


@functools.cache
def ccxt_currency_codes(exchange: str) -> dict[str, str]:
    """ccxt's renames of ``exchange``'s currency codes (its ``commonCurrencies``: ``BCHSV -> BSV`` on most
    venues, ``GTC -> GAMECOM`` on Gate), read from the installed ccxt so that an imported symbol is the one the
    live ccxt feed and Freqtrade use for the same market. ``{}`` for an id ccxt does not know."""
    import ccxt  # heavy to import; only the importers that name ccxt venues need it

    cls = getattr(ccxt, exchange, None)
    if not isinstance(cls, type):
        return {}
    return dict(cls().commonCurrencies or {})
