"""Numbers that cross a boundary into Voxwatch (an OTLP attribute, a store cell on its way to JSON):
one rule for what counts as a value, so ingest and the API agree on it."""

from __future__ import annotations

import math
from typing import Any


def finite_float(v: Any) -> float | None:
    """`v` as a finite float, or None: NaN, infinities, None, booleans (a flag is not a measurement)
    and anything that does not convert are not values."""
    if type(v) is float:  # the common case, first: a double attribute
        return v if v - v == 0.0 else None  # inf - inf and nan - nan are nan
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
