"""CEAG comparison as a Markdown table and the multiplier trajectories as a figure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cluster.fairness.stats import ci95_half_width
from cluster.storage import Storage
from jobs.lib.plotting import pyplot, save_figure
from jobs.lib.rf2_report import RunDescription


def _pct(value: float) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:+.2f}%"


def _pm(mean: float, half: float) -> str:
    return f"{100 * mean:.2f} ± {100 * half:.2f}%" if half == half else f"{100 * mean:.2f}%"


def _signed_pm(mean: float, half: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{100 * mean:+.2f} ± {100 * half:.2f}%" if half == half else _pct(mean)


def _psi(mean: float, half: float, unchanged: bool) -> str:
    """Max ψ in percent. Exactly zero when the constrained measure did not move in any tier (marked
    †, explained under the table); a value too small for two decimals keeps two significant digits
    instead of reading as +0.00 %."""
    if not np.isfinite(mean):
        return "–"
    if unchanged:
        return "0 †"
    shown = f"{100 * mean:+.2f}" if mean == 0 or abs(100 * mean) >= 0.005 else f"{100 * mean:+.2g}"
    if half == half:
        # a spread within float rounding of zero (every seed alike) reads as 0, not as 1e-17
        spread = f"{100 * half:.2f}" if abs(100 * half) < 1e-9 or abs(100 * half) >= 0.005 else f"{100 * half:.2g}"
        return f"{shown} ± {spread}%"
    return f"{shown}%"


PSI_NAMES = {"accuracy": "excess accuracy gap", "pairwise": "excess pairwise-ranking gap (train only)"}
_MEASURE_NAMES = {"accuracy": "accuracy", "pairwise": "within-client pair rate"}
def measure_titles(table: pd.DataFrame) -> tuple[str, str]:
    """(held-out, train) titles of what MDAC is on: AUC and AUC for a click model, HR@10 and the
    pair rate for NCF (``ceag_compare.mdac_measures``)."""
    return ("AUC", "AUC") if "auc" in table.columns else ("HR@10", "pair rate")


NUMERIC = ["mdac", "mdac_train", "max_psi_test", "max_psi_train", "change_all", "change_all_train", "sim_time_s",
           "speedup"]


def _grouped(table: pd.DataFrame):
    grouped = table.groupby(["mapping", "configuration"], sort=False)
    flags = [c for c in ("psi_train_unchanged", "psi_test_unchanged") if c in table]
    unchanged = grouped[flags].all() if flags else None
    return grouped[NUMERIC].mean(), grouped[NUMERIC].agg(ci95_half_width), unchanged, grouped.size()


def _rows(mapping: str, optimizations, epsilons, index) -> list[tuple[str, str, str]]:
    """(optimization, label, ε shown) of a mapping's block, in table order, those measured only."""
    out = []
    for optimization in optimizations:
        for label, eps in [(optimization, "–"), *[(f"{optimization}+ceag{e:g}", f"{e:g}") for e in epsilons]]:
            if (mapping, label) in index:
                out.append((optimization, label, eps))
    return out


def ceag_markdown(table: pd.DataFrame, optimizations, epsilons, constrained: str = "accuracy") -> str:
    """One block per mapping: each optimization without CEAG, then with each ε. MDAC on AUC,
    max ψ on the ``constrained`` measure (what CEAG bounds), on train and held-out data; every
    column a mean ± 95 % CI when there are several seeds."""
    lines = []
    mean, half, unchanged, sizes = _grouped(table)
    seeds = int(sizes.min()) if len(table) else 0
    spread = f"mean ± 95 % CI over {seeds} seeds" if seeds > 1 else "one seed"
    held, train = measure_titles(table)
    mdac_on = f"on {held}" if held == train else f"on {held} held out, on the {train} on train"
    for mapping in dict.fromkeys(table["mapping"]):
        lines += [f"**{mapping}** ({spread}); ψ: {PSI_NAMES[constrained]}, MDAC: {mdac_on}", "",
                  f"| configuration | ε | MDAC train | MDAC held-out | max ψ train | max ψ held-out | Δ{train} train "
                  f"| Δ{held} held-out | sim time (s) |", "|---|---|---|---|---|---|---|---|---|"]
        marked = False
        for optimization, label, eps in _rows(mapping, optimizations, epsilons, mean.index):
            r, h = mean.loc[(mapping, label)], half.loc[(mapping, label)]
            flat = unchanged.loc[(mapping, label)] if unchanged is not None else {}
            flat_train, flat_test = bool(flat.get("psi_train_unchanged", False)), bool(flat.get("psi_test_unchanged", False))
            marked |= flat_train or flat_test
            lines.append(f"| {optimization}{' + CEAG' if eps != '–' else ''} | {eps} "
                         f"| {_pm(r['mdac_train'], h['mdac_train'])} | {_pm(r['mdac'], h['mdac'])} "
                         f"| {_psi(r['max_psi_train'], h['max_psi_train'], flat_train)} "
                         f"| {_psi(r['max_psi_test'], h['max_psi_test'], flat_test)} "
                         f"| {_signed_pm(r['change_all_train'], h['change_all_train'])} "
                         f"| {_signed_pm(r['change_all'], h['change_all'])} | {r['sim_time_s']:.0f} |")
        if marked:
            every = ", in every seed," if seeds > 1 else ""
            lines += ["", f"† ψ is exactly 0: every tier's {_MEASURE_NAMES[constrained]} equals the run without "
                          f"optimization's{every} so the thresholded predictions did not change (as when a young "
                          f"model predicts no click anywhere). ψ measures nothing in that cell; MDAC on {held} still "
                          "does."]
        lines.append("")
    return "\n".join(lines)


def ceag_against_alone(table: pd.DataFrame, optimizations, epsilons) -> pd.DataFrame:
    """Each CEAG cell minus the same optimization alone, paired by mapping and seed: mean and
    95 % half-width of the per-seed difference in held-out and train MDAC and the overall change
    of the held-out measure."""
    keys = ["mapping", "seed"]
    columns = ["mdac", "mdac_train", "change_all"]
    out = []
    for optimization in optimizations:
        alone = table[table["configuration"] == optimization].set_index(keys)[columns]
        for epsilon in epsilons:
            label = f"{optimization}+ceag{epsilon:g}"
            for mapping, part in table[table["configuration"] == label].groupby("mapping", sort=False):
                part = part.set_index(keys)[columns]
                diff = part - alone.reindex(part.index)
                row = {"mapping": mapping, "optimization": optimization, "epsilon": epsilon, "seeds": len(diff)}
                for column in columns:
                    row[column] = float(diff[column].mean())
                    row[f"{column}_ci95"] = ci95_half_width(diff[column])
                out.append(row)
    return pd.DataFrame(out)


def ceag_against_alone_markdown(diffs: pd.DataFrame, held: str = "AUC") -> str:
    if diffs.empty:
        return "No CEAG cell to compare.\n"
    from jobs.lib.job_page import verdict

    def cell(row, column):
        mean, half = row[column], row[f"{column}_ci95"]
        return f"{_signed_pm(mean, half)} ({verdict(mean, half)})" if half == half else _signed_pm(mean, half)

    lines = [f"| mapping | optimization | ε | Δ MDAC held-out | Δ MDAC train | Δ overall {held} change, held-out |",
             "|---|---|---|---|---|---|"]
    for _, row in diffs.iterrows():
        lines.append(f"| {row['mapping']} | {row['optimization']} | {row['epsilon']:g} | {cell(row, 'mdac')} "
                     f"| {cell(row, 'mdac_train')} | {cell(row, 'change_all')} |")
    lowered = diffs[(diffs["mdac"] + diffs["mdac_ci95"] < 0)]
    raised = diffs[(diffs["mdac"] - diffs["mdac_ci95"] > 0)]
    several = bool((diffs["seeds"] > 1).all())
    if several:
        lines += ["", f"CEAG lowers held-out MDAC beyond the seeds' noise in {len(lowered)} of {len(diffs)} cells and "
                      f"raises it beyond noise in {len(raised)}."]
    else:
        lines += ["", "One seed: the differences have no interval, so none of them is shown to exceed noise."]
    lines += ["", "Each Δ is CEAG's cell minus the optimization alone, in percentage points, per seed then averaged."]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CEAGGrid:
    """What the comparison ran: each of ``optimizations`` alone and with CEAG at each of
    ``epsilons``, CEAG bounding the ``constrained`` measure (accuracy or pairwise) through
    ``proxy``, with dual step ``dual_lr`` and a replay buffer of ``buffer_size`` per tier."""

    optimizations: Sequence[str]
    epsilons: Sequence[float]
    constrained: str
    proxy: str
    dual_lr: float
    buffer_size: int


def ceag_page(table: pd.DataFrame, rounds: pd.DataFrame, tiers: tuple[str, ...], *, grid: CEAGGrid,
              run: RunDescription) -> "ResultsPage":
    """The comparison's results page: the reference runs, the per-mapping tables, each CEAG cell
    against the same optimization alone (paired by seed), and the multipliers' trajectories."""
    from jobs.lib.job_page import spread_note
    from jobs.lib.results_page import ResultsPage

    from jobs.lib.rf2_report import model_title

    model = model_title(table)
    held, train = measure_titles(table)
    mdac_on = f"on {held}, RF²'s measure" if held == "AUC" else f"on held-out {held} and the train {train}"
    bound = {"accuracy": "on accuracy", "pairwise": "on pairwise ranking"}[grid.constrained]
    proxied = ", pairwise logistic proxy" if grid.proxy == "pairwise_logistic" else ""
    page = ResultsPage(
        title=f"CEAG {bound}{proxied} against the tier-aware optimizations: {model} on {run.dataset}",
        command=run.command, seeds=list(run.seeds),
        intro=(f"Each optimization without and with CEAG's constraints (ψ_t ≤ ε per tier, ε ∈ "
               f"{{{', '.join(f'{e:g}' for e in grid.epsilons)}}}, η_λ {grid.dual_lr:g}, replay buffer "
               f"{grid.buffer_size:,} per tier), against the unoptimized run of the same mapping and seed. ψ is the "
               f"{PSI_NAMES[grid.constrained]}; MDAC is {mdac_on}. {run.setting} "
               f"{spread_note(list(run.seeds))}"))
    reference = table[table["configuration"] == "none"].groupby("mapping", sort=False)
    lines = []
    column = "auc" if "auc" in table.columns else "hr10"
    for mapping, part in reference:
        value, value_half = part[column].mean(), ci95_half_width(part[column])
        text = f"{value:.4f} ± {value_half:.4f}" if value_half == value_half else f"{value:.4f}"
        lines.append(f"- {mapping}: held-out {held} {text}, {part['sim_time_s'].mean():,.0f} simulated s.")
    page.add("Without an optimization", "\n".join(lines) or "No reference cell.")
    page.add("Each optimization without and with CEAG",
             ceag_markdown(table, grid.optimizations, grid.epsilons, grid.constrained))
    page.add("CEAG against the same optimization alone, paired by seed",
             ceag_against_alone_markdown(ceag_against_alone(table, grid.optimizations, grid.epsilons), held))
    first = int(rounds["seed"].min()) if len(rounds) else 0
    page.add_plot("multipliers.png", f"λ_t per round of every CEAG cell (seed {first}): a colour per tier, a line "
                                     "style per ε", lambda target: plot_multipliers(rounds, tiers, target))
    return page


def plot_multipliers(rounds: pd.DataFrame, tiers: tuple[str, ...], path: Storage) -> None:
    """λ_t per round for every CEAG cell: one panel per (mapping, optimization), a colour per
    tier, a line style per ε."""
    plt = pyplot()
    ceag = rounds[rounds["configuration"].str.contains(r"\+ceag", regex=True)]
    if ceag.empty:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no CEAG cells", ha="center")
        save_figure(fig, path)
        return
    parts = ceag["configuration"].str.partition("+ceag")
    ceag = ceag.assign(optimization=parts[0], epsilon=parts[2])
    panels = list(dict.fromkeys(zip(ceag["mapping"], ceag["optimization"])))
    cols = min(4, len(panels))
    rows_n = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3 * rows_n), squeeze=False, sharey=True)
    styles = ["-", "--", ":", "-."]
    for ax, (mapping, optimization) in zip(axes.ravel(), panels):
        panel = ceag[(ceag["mapping"] == mapping) & (ceag["optimization"] == optimization) & (ceag["seed"] == ceag["seed"].min())]
        for k, epsilon in enumerate(dict.fromkeys(panel["epsilon"])):
            run = panel[panel["epsilon"] == epsilon].sort_values("round")
            for j, tier in enumerate(tiers):
                ax.plot(run["round"], run[f"lambda_{tier}"], styles[k % len(styles)], color=f"C{j}",
                        label=f"{tier}, ε={epsilon}")
        ax.set_title(f"{optimization} / {mapping}", fontsize=9)
        ax.set_xlabel("round")
    axes[0, 0].set_ylabel("λ (multiplier)")
    axes[0, 0].legend(fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    save_figure(fig, path)
