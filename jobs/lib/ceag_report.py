"""CEAG comparison as a Markdown table and the multiplier trajectories as a figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cluster.fairness.stats import ci95_half_width
from cluster.storage import Storage
from jobs.lib.plotting import pyplot, save_figure


def _pct(value: float) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:+.2f}%"


def _pm(mean: float, half: float) -> str:
    return f"{100 * mean:.2f} ± {100 * half:.2f}%" if half == half else f"{100 * mean:.2f}%"


PSI_NAMES = {"accuracy": "excess accuracy gap", "pairwise": "excess pairwise-ranking gap (train only)"}


def ceag_markdown(table: pd.DataFrame, optimizations, epsilons, constrained: str = "accuracy") -> str:
    """One block per mapping: each optimization without CEAG, then with each ε. MDAC on AUC,
    max ψ on the ``constrained`` measure (what CEAG bounds), on train and held-out data."""
    lines = []
    seeds = table.groupby(["mapping", "configuration"]).size().min() if len(table) else 0
    numeric = ["mdac", "mdac_train", "max_psi_test", "max_psi_train", "change_all", "change_all_train", "sim_time_s",
               "speedup"]
    grouped = table.groupby(["mapping", "configuration"], sort=False)
    mean = grouped[numeric].mean()
    half = grouped[["mdac", "mdac_train"]].agg(ci95_half_width)
    spread = f"mean ± 95 % CI over {seeds} seeds" if seeds > 1 else "one seed"
    for mapping in dict.fromkeys(table["mapping"]):
        lines += [f"**{mapping}** ({spread}); ψ: {PSI_NAMES[constrained]}, MDAC: on AUC", "",
                  "| configuration | ε | MDAC train | MDAC held-out | max ψ train | max ψ held-out | ΔAUC train "
                  "| ΔAUC held-out | sim time (s) |", "|---|---|---|---|---|---|---|---|---|"]
        for optimization in optimizations:
            for label, eps in [(optimization, "–"), *[(f"{optimization}+ceag{e:g}", f"{e:g}") for e in epsilons]]:
                if (mapping, label) not in mean.index:
                    continue
                r, h = mean.loc[(mapping, label)], half.loc[(mapping, label)]
                lines.append(f"| {optimization}{' + CEAG' if eps != '–' else ''} | {eps} "
                             f"| {_pm(r['mdac_train'], h['mdac_train'])} | {_pm(r['mdac'], h['mdac'])} "
                             f"| {_pct(r['max_psi_train'])} | {_pct(r['max_psi_test'])} "
                             f"| {_pct(r['change_all_train'])} | {_pct(r['change_all'])} | {r['sim_time_s']:.0f} |")
        lines.append("")
    return "\n".join(lines)


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
