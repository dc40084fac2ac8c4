"""Tables and figures of jobs/cali3f_compare.py: accuracy, fairness (std of per-client NDCG@10,
Cali3F Definition 1) and convergence (rounds and simulated time to come within 5 % of a run's
best NDCG@10), beside the Cali3F paper's figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cluster.fairness.stats import ci95_half_width
from cluster.storage import Storage
from jobs.lib.job_page import strategy_name
from jobs.lib.plotting import pyplot, save_figure

# Zhu et al. 2022: Table II (ML-100K, HR@10 / NDCG@10) and Table III (ML-1M, std of NDCG@10).
PAPER_ML100K = {("neumf", "cali3f"): (0.71, 0.40), ("neumf", "fedavg"): (0.70, 0.36)}
PAPER_FAIRNESS_ML1M = {"fedavg": 0.38, "ditto": 0.33, "cali3f": 0.33}
PAPER_TIME_RATIO = 0.32  # Cali3F's time to within 5 % of its best, over FedAvg's
TOLERANCE = 0.05


def time_to_within(rounds: pd.DataFrame, metric: str = "ndcg10", tolerance: float = TOLERANCE) -> pd.Series:
    """For one run's evaluated rounds (round, sim_time_s, metric): the best value, and the first
    round and simulated time at which the metric reached (1 − tolerance) × that best."""
    evaluated = rounds.dropna(subset=[metric]).sort_values("round")
    if evaluated.empty:
        return pd.Series({"best": np.nan, "rounds_to_5pct": np.nan, "sim_s_to_5pct": np.nan})
    best = float(evaluated[metric].max())
    first = evaluated[evaluated[metric] >= (1.0 - tolerance) * best].iloc[0]
    return pd.Series({"best": best, "rounds_to_5pct": int(first["round"]), "sim_s_to_5pct": float(first["sim_time_s"])})


def comparison_table(results: pd.DataFrame, rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per model × strategy (mean over seeds): final HR/NDCG, fairness std, best NDCG,
    rounds and simulated time to within 5 % of it, that time over FedAvg's (same model)."""
    keys = ["model", "strategy", "seed"]
    speed = rounds.groupby(keys).apply(time_to_within, include_groups=False).reset_index()
    per_seed = results.merge(speed, on=keys).groupby(["model", "strategy"], sort=False)
    table = per_seed.mean(numeric_only=True).reset_index()
    for column in ("hr10", "ndcg10", "ndcg10_std"):
        table[f"{column}_ci95"] = per_seed[column].agg(ci95_half_width).to_numpy()
    table["seeds"] = per_seed.size().to_numpy()
    order = {name: i for i, name in enumerate(("gmf", "mlp", "neumf", "fedavg", "ditto", "cali3f"))}
    table = table.sort_values(["model", "strategy"], key=lambda column: column.map(order), kind="stable")
    fedavg_time = table[table["strategy"] == "fedavg"].set_index("model")["sim_s_to_5pct"]
    table["time_vs_fedavg"] = table["sim_s_to_5pct"] / table["model"].map(fedavg_time)
    return table.drop(columns=["seed"])


def _pm(mean: float, half: float) -> str:
    """``mean ± 95 % half-width`` over seeds; the mean alone for one seed."""
    return f"{mean:.4f} ± {half:.4f}" if half == half else f"{mean:.4f}"


def comparison_markdown(table: pd.DataFrame) -> str:
    seeds = int(table["seeds"].min()) if len(table) else 0
    lines = [
        f"HR@10, NDCG@10 and its std: mean ± 95 % CI over {seeds} seeds" if seeds > 1 else "One seed.", "",
        "| model | strategy | HR@10 | NDCG@10 | std NDCG@10 (fairness) | best NDCG@10 | rounds to 5 % | sim s to 5 % "
        "| time vs FedAvg | paper HR / NDCG (ML-100K) | paper std (ML-1M) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        paper = PAPER_ML100K.get((row.model, row.strategy))
        paper_acc = f"{paper[0]:.2f} / {paper[1]:.2f}" if paper else "–"
        paper_std = f"{PAPER_FAIRNESS_ML1M[row.strategy]:.2f}" if row.model == "neumf" else "–"
        lines.append(
            f"| {row.model} | {row.strategy} | {_pm(row.hr10, row.hr10_ci95)} | {_pm(row.ndcg10, row.ndcg10_ci95)} "
            f"| {_pm(row.ndcg10_std, row.ndcg10_std_ci95)} | {row.best:.4f} "
            f"| {row.rounds_to_5pct:.0f} | {row.sim_s_to_5pct:.0f} | {row.time_vs_fedavg:.2f} | {paper_acc} | {paper_std} |")
    lines.append(f"\nPaper: Cali3F reaches within 5 % of its best in {PAPER_TIME_RATIO}× FedAvg's time.")
    return "\n".join(lines) + "\n"


def paired_differences(results: pd.DataFrame, columns=("hr10", "ndcg10_std")) -> pd.DataFrame:
    """Each strategy minus FedAvg on the same model and seed (paired: the same clients are
    sampled every round), per column: mean, 95 % half-width, and whether it excludes 0."""
    keys = ["model", "seed"]
    base = results[results["strategy"] == "fedavg"].set_index(keys)[list(columns)]
    rows = []
    for (model, strategy), part in results[results["strategy"] != "fedavg"].groupby(["model", "strategy"], sort=False):
        diff = part.set_index(keys)[list(columns)] - base.loc[part.set_index(keys).index]
        row = {"model": model, "strategy": strategy, "seeds": len(diff)}
        for column in columns:
            mean, half = float(diff[column].mean()), ci95_half_width(diff[column])
            row.update({column: mean, f"{column}_ci95": half, f"{column}_beyond_noise": bool(abs(mean) > half)})
        rows.append(row)
    return pd.DataFrame(rows)


def paired_markdown(diffs: pd.DataFrame) -> str:
    """The paired table; empty with one seed (no interval to read)."""
    if diffs.empty or (diffs["seeds"] < 2).any():
        return ""
    mark = lambda beyond: "beyond noise" if beyond else "within noise"  # noqa: E731
    lines = ["", "Against FedAvg, paired by seed (mean ± 95 % CI of the per-seed difference):", "",
             "| model | strategy | Δ HR@10 | Δ std NDCG@10 |", "|---|---|---|---|"]
    for row in diffs.itertuples():
        lines.append(f"| {row.model} | {row.strategy} | {row.hr10:+.4f} ± {row.hr10_ci95:.4f} "
                     f"({mark(row.hr10_beyond_noise)}) | {row.ndcg10_std:+.4f} ± {row.ndcg10_std_ci95:.4f} "
                     f"({mark(row.ndcg10_std_beyond_noise)}) |")
    return "\n".join(lines) + "\n"


MODEL_NAMES = {"gmf": "GMF", "mlp": "MLP", "neumf": "NeuMF"}
# The paper's order of methods: the baseline, then the personalised ones.
STRATEGY_NAMES = {kind: strategy_name(kind) for kind in ("fedavg", "ditto", "cali3f")}


def _names(values, names: dict[str, str]) -> list[str]:
    """The distinct values present, in ``names``' order, as printed."""
    present = list(dict.fromkeys(values))
    ordered = [k for k in names if k in present] + [v for v in present if v not in names]
    return [names.get(v, v) for v in ordered]


def convergence_title(rounds: pd.DataFrame, dataset: str | None = None) -> str:
    """The figure's title: the strategies that were run, not the three the job can run."""
    where = f" on {dataset}" if dataset else ""
    return f"Convergence{where}: {', '.join(_names(rounds['strategy'], STRATEGY_NAMES))}"


def plot_convergence(rounds: pd.DataFrame, path: Storage, dataset: str | None = None) -> None:
    """NDCG@10 per round (top) and per simulated hour (bottom), one column per model."""
    plt = pyplot()
    models = list(dict.fromkeys(rounds["model"]))
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 6.4), squeeze=False, sharey=True)
    evaluated = rounds.dropna(subset=["ndcg10"])
    for col, model in enumerate(models):
        for strategy, part in evaluated[evaluated["model"] == model].groupby("strategy", sort=False):
            mean = part.groupby("round")[["ndcg10", "sim_time_s"]].mean().reset_index()
            axes[0, col].plot(mean["round"], mean["ndcg10"], label=strategy)
            axes[1, col].plot(mean["sim_time_s"] / 3600, mean["ndcg10"], label=strategy)
        axes[0, col].set_title(model)
        axes[0, col].set_xlabel("round")
        axes[1, col].set_xlabel("simulated hours")
    axes[0, 0].set_ylabel("NDCG@10")
    axes[1, 0].set_ylabel("NDCG@10")
    axes[0, 0].legend()
    fig.suptitle(convergence_title(rounds, dataset))
    save_figure(fig, path)


def tier_markdown(results: pd.DataFrame, tiers: tuple[str, ...]) -> str:
    """Final NDCG@10 per tier, per model and strategy (mean ± 95 % CI over seeds)."""
    from jobs.lib.job_page import mean_ci, pm

    head = "| model | strategy | " + " | ".join(f"NDCG@10 {t}" for t in tiers) + " |"
    lines = [head, "|---|---|" + "---|" * len(tiers)]
    for (model, strategy), part in results.groupby(["model", "strategy"], sort=False):
        cells = [pm(*mean_ci(part[f"ndcg10_{t}"])) if f"ndcg10_{t}" in part else "–" for t in tiers]
        lines.append(f"| {model} | {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_findings(table: pd.DataFrame, diffs: pd.DataFrame) -> list[str]:
    """Sentences from the numbers: each method's HR@10 and fairness against FedAvg (paired by seed
    when there are several), and its time to within 5 % of its best against FedAvg's."""
    from jobs.lib.job_page import verdict

    out = []
    indexed = table.set_index(["model", "strategy"])
    for row in diffs.itertuples() if not diffs.empty else []:
        name, model = STRATEGY_NAMES.get(row.strategy, row.strategy), MODEL_NAMES.get(row.model, row.model)
        if row.seeds > 1:
            out.append(f"- {model}, {name} − FedAvg, paired over {row.seeds} seeds: HR@10 {row.hr10:+.4f} ± "
                       f"{row.hr10_ci95:.4f} ({verdict(row.hr10, row.hr10_ci95)}), std of NDCG@10 "
                       f"{row.ndcg10_std:+.4f} ± {row.ndcg10_std_ci95:.4f} ({verdict(row.ndcg10_std, row.ndcg10_std_ci95)}).")
        else:
            out.append(f"- {model}, {name} − FedAvg: HR@10 {row.hr10:+.4f}, std of NDCG@10 {row.ndcg10_std:+.4f} "
                       "(one seed: no interval, so not shown to exceed noise).")
    for (model, strategy), row in indexed.iterrows():
        if strategy == "fedavg" or not np.isfinite(row["time_vs_fedavg"]):
            continue
        out.append(f"- {MODEL_NAMES.get(model, model)}, {STRATEGY_NAMES.get(strategy, strategy)}: within 5 % of its best "
                   f"NDCG@10 after {row['time_vs_fedavg']:.2f}x FedAvg's simulated time"
                   + (f" (the paper: {PAPER_TIME_RATIO}x)." if strategy == "cali3f" else "."))
    return out


def comparison_page(results: pd.DataFrame, rounds: pd.DataFrame, tiers: tuple[str, ...], *, command: str, seeds,
                    dataset: str, setting: str) -> "ResultsPage":
    """The comparison's results page: the table beside the paper's figures, the paired
    differences against FedAvg, per-tier NDCG@10, findings and the convergence figure."""
    from jobs.lib.job_page import spread_note
    from jobs.lib.results_page import ResultsPage

    others = [n for n in _names(results["strategy"], STRATEGY_NAMES) if n != "FedAvg"]
    models = ", ".join(_names(results["model"], MODEL_NAMES))
    title = f"{' and '.join(others)} against FedAvg" if others else "FedAvg"
    table = comparison_table(results, rounds)
    diffs = paired_differences(results)
    page = ResultsPage(
        title=f"{title}: {models} on {dataset}", command=command, seeds=list(seeds),
        intro=(f"The same sampled clients every round for every method. Fairness is the std of per-client NDCG@10 "
               f"(Cali3F Definition 1; lower is fairer); \"time vs FedAvg\" divides the simulated time to come within "
               f"5 % of a run's own best NDCG@10 by FedAvg's on the same model. {setting} "
               f"{spread_note(list(seeds))}"))
    page.add("Accuracy, fairness and convergence", comparison_markdown(table))
    paired = paired_markdown(diffs).strip()
    page.add("Each method against FedAvg",
             paired if paired else "One seed: no paired interval; the findings below give the raw differences.")
    page.add("NDCG@10 per tier", tier_markdown(results, tiers))
    page.add("Findings", "\n".join(comparison_findings(table, diffs)) or "Only FedAvg was run: nothing to compare.")
    page.add_plot("convergence.png", f"{convergence_title(rounds, dataset)}: NDCG@10 per round (top) and per "
                                     "simulated hour (bottom), mean over seeds",
                  lambda target: plot_convergence(rounds, target, dataset))
    return page
