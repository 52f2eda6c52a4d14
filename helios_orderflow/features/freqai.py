"""The per-candle order-flow columns as numeric FreqAI features (``%-of_...``).

FreqAI treats every column whose name starts with ``%`` as a feature, normalizes each one and drops from
training every row holding a NaN (and refuses to predict on one). ``freqai_features(dataframe)`` turns the
``of_*`` columns of a dataframe (``HeliosBase.add_orderflow``: live from the feed, in backtests from recordings)
into such features, so no row is lost and no feature depends on the price level:

- ``%-of_<col>`` for flows, counts, flags, imbalances and the signals' measurements (absorbed fraction,
  exhaustion volume ratio, wall size over the median and age), as they are (``RAW_FEATURES``);
- ``%-of_<col>_dist`` for price columns, as their distance from the candle's close, a fraction
  (``<col> / close - 1``; ``PRICE_FEATURES``): a model trained at 40,000 applies at 60,000;
- ``%-of_delta_ratio`` (delta / volume), ``%-of_spread_bps`` (spread over mid, basis points),
  ``%-of_has_bid_wall`` and ``%-of_has_ask_wall`` (1 when a wall was active at the close).

Every NaN becomes 0 (no book, no wall, no trade yet in the session); the flags ``%-of_book_ok``,
``%-of_had_book`` and ``%-of_has_*_wall`` say where a 0 means "not available". A trades-only source
(Freqtrade's downloaded trades) gives 0 for every book feature and ``%-of_had_book`` = 0.

No look-ahead: each feature of the row with ``date = t`` is a function of that row alone (its ``of_*`` values,
from events before ``t + timeframe``, and its own close), with no window over later rows; live and in backtests
the ``of_*`` values are the same engine's (docs/signals.md), so the features are too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: ``of_*`` columns given to FreqAI as they are (base units, counts, 0/1 flags, imbalances in [-1, 1]).
RAW_FEATURES: tuple[str, ...] = (
    "volume", "trades", "buy_volume", "sell_volume", "delta", "cvd", "ofi", "ofi_multi", "depth_imbalance",
    "queue_imbalance", "bid_wall_size", "ask_wall_size", "absorption_bull", "absorption_bear", "exhaustion_up",
    "exhaustion_down", "book_ok", "had_book",
    # the signals' measurements (0 where there is none: the flags above and has_*_wall tell)
    "absorption_bull_frac", "absorption_bear_frac", "exhaustion_up_volume_ratio", "exhaustion_down_volume_ratio",
    "bid_wall_size_k", "ask_wall_size_k", "bid_wall_age_s", "ask_wall_age_s",
)
#: ``of_*`` price columns given as their distance from the close (``x / close - 1``).
PRICE_FEATURES: tuple[str, ...] = (
    "vwap", "vwap_upper_1", "vwap_lower_1", "vwap_upper_2", "vwap_lower_2", "weighted_mid", "bid_wall_price",
    "ask_wall_price", "session_poc", "session_vah", "session_val", "prev_session_poc", "prev_session_vah",
    "prev_session_val",
)
PREFIX = "%-of_"
#: Every feature column ``freqai_features`` adds, in order.
FREQAI_COLUMNS: tuple[str, ...] = (
    *(PREFIX + c for c in RAW_FEATURES),
    *(PREFIX + c + "_dist" for c in PRICE_FEATURES),
    PREFIX + "delta_ratio", PREFIX + "spread_bps", PREFIX + "has_bid_wall", PREFIX + "has_ask_wall",
)


def freqai_features(dataframe: pd.DataFrame, *, keep_orderflow: bool = False) -> pd.DataFrame:
    """``dataframe`` (with ``close`` and the ``of_*`` columns) with the ``FREQAI_COLUMNS`` features added;
    the ``of_*`` columns are dropped unless ``keep_orderflow``. See the module docstring."""
    missing = [f"of_{c}" for c in (*RAW_FEATURES, *PRICE_FEATURES, "spread", "mid") if f"of_{c}" not in dataframe]
    if missing or "close" not in dataframe:
        raise KeyError(f"freqai_features needs 'close' and the order-flow columns (missing: "
                       f"{', '.join(missing or ['close'])}); call HeliosBase.add_orderflow(dataframe, pair) first")
    close = dataframe["close"].to_numpy(dtype=np.float64)
    features: dict[str, np.ndarray] = {}
    for c in RAW_FEATURES:
        features[PREFIX + c] = dataframe[f"of_{c}"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for c in PRICE_FEATURES:
            features[PREFIX + c + "_dist"] = dataframe[f"of_{c}"].to_numpy(dtype=np.float64) / close - 1.0
        volume = dataframe["of_volume"].to_numpy(dtype=np.float64)
        features[PREFIX + "delta_ratio"] = np.where(volume > 0, dataframe["of_delta"].to_numpy(np.float64) / volume,
                                                    0.0)
        features[PREFIX + "spread_bps"] = (dataframe["of_spread"].to_numpy(np.float64)
                                           / dataframe["of_mid"].to_numpy(np.float64) * 1e4)
    features[PREFIX + "has_bid_wall"] = np.isfinite(dataframe["of_bid_wall_price"].to_numpy(np.float64)) * 1.0
    features[PREFIX + "has_ask_wall"] = np.isfinite(dataframe["of_ask_wall_price"].to_numpy(np.float64)) * 1.0
    block = pd.DataFrame({k: np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0) for k, v in features.items()},
                         index=dataframe.index)
    base = dataframe if keep_orderflow else dataframe.drop(columns=[c for c in dataframe if str(c).startswith("of_")])
    base = base.drop(columns=[c for c in FREQAI_COLUMNS if c in base])
    return pd.concat([base, block], axis=1)
