"""How sure a comparison over seeds is: the mean with a 95 % Student-t confidence interval, and
whether a cell's gap between its two extreme tiers is larger than the seed-to-seed noise.

Seeds are the independent replicates here (a seed draws the tier mapping, the selection, the
negatives and the latencies), so the interval is over seeds, with n − 1 degrees of freedom."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


def ci95_half_width(values) -> float:
    """Half the width of the 95 % t-interval of the mean of ``values``; NaN with fewer than two."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan")
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def tier_gap(changes: pd.DataFrame, tiers: tuple[str, ...]) -> dict:
    """For one cell's per-seed rows (``change_<tier>`` columns): the tiers whose mean change is
    highest and lowest, the per-seed difference between them (paired: the same seed's run),
    its mean and 95 % half-width, and whether the interval excludes zero — the tier gap then
    exceeds what the seeds' noise alone gives. The pair is picked from the same means it is
    tested on, which favours a gap; the note is in docs/concepts/fairness-measures.md."""
    means = {t: float(changes[f"change_{t}"].mean()) for t in tiers}
    high, low = max(means, key=means.__getitem__), min(means, key=means.__getitem__)
    per_seed = (changes[f"change_{high}"] - changes[f"change_{low}"]).to_numpy(np.float64)
    half = ci95_half_width(per_seed)
    gap = float(per_seed.mean()) if len(per_seed) else float("nan")
    return {
        "gap_high": high,
        "gap_low": low,
        "gap": gap,
        "gap_ci95": half,
        "beyond_noise": bool(np.isfinite(half) and gap - half > 0),
    }


def intervals_disjoint(a: pd.Series, b: pd.Series, column: str) -> bool:
    """Whether two cells' 95 % intervals of ``column`` (``<column>_ci95`` half-widths) do not
    overlap; False when either has none (one seed)."""
    ha, hb = a.get(f"{column}_ci95", np.nan), b.get(f"{column}_ci95", np.nan)
    if not (ha == ha and hb == hb):
        return False
    return a[column] + ha < b[column] - hb or b[column] + hb < a[column] - ha
