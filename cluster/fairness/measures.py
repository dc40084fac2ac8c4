"""RF²'s per-tier fairness measures: relative accuracy change against the unoptimized run and
the maximum difference of those changes across tiers (MDAC)."""

from __future__ import annotations

import itertools


def relative_change(optimized: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """(β_p − β_0) / β_0 per key (tier, or 'all'), β_0 from the run without the optimization
    (same seed and tier mapping)."""
    missing = sorted(set(reference) - set(optimized))
    if missing:
        raise KeyError(f"optimized run lacks {missing}")
    out = {}
    for key, base in reference.items():
        if base == 0:
            raise ZeroDivisionError(f"reference accuracy of {key!r} is 0: relative change undefined")
        out[key] = (optimized[key] - base) / base
    return out


def mdac(changes: dict[str, float]) -> float:
    """Maximum pairwise difference of the tiers' relative accuracy changes."""
    values = list(changes.values())
    if any(v != v for v in values):  # a tier without a measurement: MDAC is unknown, not smaller
        return float("nan")
    if len(values) < 2:
        return 0.0
    return float(max(abs(a - b) for a, b in itertools.combinations(values, 2)))
