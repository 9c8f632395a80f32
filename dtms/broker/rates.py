"""MetaTrader's bar array layout: the numpy dtype `copy_rates_*` returns (spec/mt5.md §4.9)."""

from __future__ import annotations

from typing import Final

import numpy as np

RATES_DTYPE: Final = np.dtype(
    [
        ("time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_volume", "<u8"),
        ("spread", "<i4"),
        ("real_volume", "<u8"),
    ]
)

__all__ = ["RATES_DTYPE"]
