"""The synthetic market against the real Binance BTCUSDT capture: the figures ``devtools/market_figures.py``
measures on both (depth profile, bin and trade-size quantiles, trade rate, wall lifetimes; default settings),
``market.real.*`` and ``market.synthetic.*`` lines, and how many of the ``TOLERANCES`` hold. Seed 1, 30 minutes
(``--quick``: 10)."""

from __future__ import annotations

from helios_orderflow.devtools.market_figures import compare, real_btcusdt_figures, synthetic_figures


def run(quick: bool = False) -> dict[str, float | int | str]:
    real = real_btcusdt_figures()
    synthetic = synthetic_figures(seed=1, minutes=10.0 if quick else 30.0)
    out: dict[str, float | int | str] = {}
    out.update(real.lines("market.real"))
    out.update(synthetic.lines("market.synthetic"))
    rows = compare(synthetic, real)
    for name, _s, _r, _text, ok in rows:
        out[f"market.within.{name}"] = int(ok)
    out["market.within_tolerance"] = f"{sum(r[4] for r in rows)}/{len(rows)}"
    return out
