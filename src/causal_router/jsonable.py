"""Plain-JSON views of report and record objects (numpy, pandas and non-finite values included)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def plain_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (pd.Timestamp, pd.Timedelta)):
        return str(v)
    return v


def jsonable(obj: Any) -> Any:
    """``obj`` with NaN as None, infinities and unknown objects as strings, numpy as Python."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset, np.ndarray)):
        return [jsonable(v) for v in obj]
    v = plain_value(obj)
    if isinstance(v, float) and math.isinf(v):
        return str(v)  # JSON has no infinity
    if v is not None and not isinstance(v, (str, int, float, bool)):
        return str(v)
    return v
