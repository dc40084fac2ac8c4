"""RF²'s measures over an experiment grid: for every (model, mapping, seed, configuration) cell,
each tier's relative AUC change against the unoptimized cell of the same model, mapping and
seed, MDAC across tiers, the overall change and the simulated speed-up; then the mean over seeds.

Input rows (one per cell and tier, tier 'all' for the whole population) carry ``auc`` (held-out),
``auc_train`` and ``sim_time_s``; see ``jobs/rf2_matrix.py``.
"""

from __future__ import annotations

import pandas as pd

from cluster.fairness.measures import mdac, relative_change
from cluster.fairness.stats import ci95_half_width, tier_gap

CELL_KEYS = ["model", "mapping", "seed"]
REFERENCE = "none"


def cell_measures(rows: pd.DataFrame, tiers: tuple[str, ...], metric: str = "auc") -> pd.DataFrame:
    """One row per cell: ``{metric}`` overall, ``change_<tier>`` / ``change_all`` (relative to the
    reference cell), ``mdac``, ``sim_time_s`` and ``speedup`` (reference time / this time).
    Cells without a reference are left out (they cannot be measured)."""
    out = []
    for key, group in rows.groupby(CELL_KEYS, sort=True):
        by_config = {config: part.set_index("tier") for config, part in group.groupby("configuration")}
        if REFERENCE not in by_config:
            continue
        reference = by_config[REFERENCE]
        base = {tier: float(reference.loc[tier, metric]) for tier in (*tiers, "all")}
        for config, part in by_config.items():
            values = {tier: float(part.loc[tier, metric]) for tier in (*tiers, "all")}
            change = relative_change(values, base)
            per_tier = {t: change[t] for t in tiers}
            out.append(
                {
                    **dict(zip(CELL_KEYS, key)),
                    "configuration": config,
                    metric: values["all"],
                    **{f"change_{t}": change[t] for t in (*tiers, "all")},
                    "mdac": mdac(per_tier),
                    "sim_time_s": float(part.loc["all", "sim_time_s"]),
                    "speedup": float(reference.loc["all", "sim_time_s"]) / float(part.loc["all", "sim_time_s"]),
                }
            )
    return pd.DataFrame(out)


def mean_over_seeds(measures: pd.DataFrame, tiers: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean of every measure over seeds, its 95 % half-width (``<measure>_ci95``, NaN for one
    seed) and the seed count. MDAC is averaged per seed first: a max over tiers of noisy
    changes is biased upward, and averaging after keeps that visible. With ``tiers``, also the
    paired gap between each cell's extreme tiers and whether it exceeds the noise
    (``stats.tier_gap``)."""
    keys = ["model", "mapping", "configuration"]
    numeric = [c for c in measures.columns if c not in (*keys, "seed")]
    grouped = measures.groupby(keys, sort=False)
    mean = grouped[numeric].mean().reset_index()
    half = grouped[numeric].agg(ci95_half_width).reset_index(drop=True).add_suffix("_ci95")
    mean = pd.concat([mean, half], axis=1)
    mean["seeds"] = grouped.size().to_numpy()
    if tiers:
        gaps = pd.DataFrame([tier_gap(part, tiers) for _, part in grouped])
        mean = pd.concat([mean, gaps], axis=1)
    return mean


def excess_gaps(rows: pd.DataFrame, tiers: tuple[str, ...], metric: str = "acc") -> pd.DataFrame:
    """CEAG's ψ_t = [A_t(β_0) − A_t(β_p)] − [A(β_0) − A(β_p)] of every cell against the reference
    cell of its model, mapping and seed (β_0), with A the accuracy over all samples (tier
    'all'): one row per cell with ``psi_<tier>`` and ``max_psi``."""
    out = []
    for key, group in rows.groupby(CELL_KEYS, sort=True):
        by_config = {config: part.set_index("tier")[metric] for config, part in group.groupby("configuration")}
        if REFERENCE not in by_config:
            continue
        ref = by_config[REFERENCE]
        for config, acc in by_config.items():
            overall = ref["all"] - acc["all"]
            psi = {t: float((ref[t] - acc[t]) - overall) for t in tiers}
            out.append(
                {
                    **dict(zip(CELL_KEYS, key)),
                    "configuration": config,
                    **{f"psi_{t}": v for t, v in psi.items()},
                    "max_psi": float("nan") if any(v != v for v in psi.values()) else max(psi.values()),
                }
            )
    return pd.DataFrame(out)
