"""The RF² matrix as a Markdown report and two figures: MDAC per configuration per mapping
(RF² Fig. 6) and each tier's relative change of the model's measure (AUC for click models, HR@10
for NCF) per configuration under one mapping (Fig. 8)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cluster.fairness.stats import intervals_disjoint
from cluster.storage import Storage
from configs.schema import FLConfig
from jobs.lib.job_page import strategy_name
from jobs.lib.plotting import pyplot, save_figure

# The strategy a title leaves unnamed: the one a config without fl.strategy runs.
DEFAULT_STRATEGY = FLConfig().strategy.kind
_MAPPING_ORDER = ("random", "hetero-vlow", "hetero-low", "hetero-mid", "hetero-high", "hetero-vhigh")
_TITLES = {"auc": "AUC", "hr10": "HR@10"}
_MODELS = {"gmf": "GMF", "mlp": "MLP", "neumf": "NeuMF", "dlrm": "DLRM", "din": "DIN"}


def model_title(measures: pd.DataFrame) -> str:
    kind = str(measures["model"].iloc[0])
    return _MODELS.get(kind, kind.upper())


def _metric(measures: pd.DataFrame) -> tuple[str, str]:
    """The measure the matrix compares cells by, and its title: AUC for click models, HR@10 for NCF."""
    column = "auc" if "auc" in measures.columns else "hr10"
    return column, _TITLES[column]


@dataclass(frozen=True)
class RunDescription:
    """What a grid's results page says about the run: the command that reruns it, its seeds, the
    data set's title and ``setting``, one sentence on what every cell ran (rounds, clients,
    uploads). The CEAG comparison, a grid of the same cells, describes its run the same way."""

    command: str
    seeds: Sequence[int]
    dataset: str
    setting: str


def _mappings(measures: pd.DataFrame) -> list[str]:
    present = set(measures["mapping"])
    return [m for m in _MAPPING_ORDER if m in present] + sorted(present - set(_MAPPING_ORDER))


def _configurations(measures: pd.DataFrame) -> list[str]:
    return [c for c in dict.fromkeys(measures["configuration"]) if c != "none"]


def _pct(value: float) -> str:
    return "–" if value is None or np.isnan(value) else f"{100 * value:+.2f}%"


def _pm(row: pd.Series, column: str) -> str:
    """``mean ± 95 % half-width`` in percent; the mean alone for one seed."""
    half = row.get(f"{column}_ci95", float("nan"))
    text = f"{100 * row[column]:.2f}"
    return (f"{text} ± {100 * half:.2f}%" if half == half else f"{text}%")


def _gap(row: pd.Series) -> str:
    """The paired gap between the cell's extreme tiers, and whether it exceeds the seeds' noise."""
    if "gap" not in row or row["gap_ci95"] != row["gap_ci95"]:
        return "–"
    mark = "beyond noise" if row["beyond_noise"] else "within noise"
    return f"{row['gap_high']}−{row['gap_low']} {100 * row['gap']:+.2f} ± {100 * row['gap_ci95']:.2f}% ({mark})"


def _seeds(measures: pd.DataFrame) -> int:
    return int(measures["seeds"].min()) if len(measures) else 0


def _spread(measures: pd.DataFrame) -> str:
    seeds = _seeds(measures)
    return f"mean ± 95 % CI over {seeds} seeds" if seeds > 1 else "one seed"


def _mdac_table(measures: pd.DataFrame) -> list[str]:
    mappings, configs = _mappings(measures), _configurations(measures)
    table = measures.set_index(["mapping", "configuration"])
    lines = [f"MDAC (held-out {_metric(measures)[1]}, {_spread(measures)}); rows: configuration, columns: tier mapping",
             "",
             "| configuration | " + " | ".join(mappings) + " |", "|---|" + "---|" * len(mappings)]
    for config in configs:
        cells = [_pm(table.loc[(m, config)], "mdac") if (m, config) in table.index else "–" for m in mappings]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    return lines


def matrix_markdown(measures: pd.DataFrame, tiers: tuple[str, ...], focus_mapping: str) -> str:
    mappings, configs = _mappings(measures), _configurations(measures)
    lines = _mdac_table(measures)
    if focus_mapping in mappings:
        table = measures.set_index(["mapping", "configuration"])
        lines += ["", *_focus_table(table, tiers, focus_mapping, configs)]
    lines += ["", *findings(measures, focus_mapping)]
    return "\n".join(lines) + "\n"


def _focus_table(table: pd.DataFrame, tiers: tuple[str, ...], mapping: str, configs: list[str]) -> list[str]:
    column, title = _metric(table)
    train = "mdac_train" in table.columns  # click models also measure MDAC on their train data
    lines = [f"Under {mapping}: {title}, relative {title} change per tier and overall, MDAC on held-out"
             f"{' and train' if train else ''} data, simulated speed-up against no optimization, and the paired gap "
             "between the two extreme tiers (per seed, 95 % CI; beyond noise when the interval excludes 0)", "",
             f"| configuration | {title} | " + " | ".join(f"Δ {t}" for t in tiers)
             + f" | Δ all | MDAC |{' MDAC train |' if train else ''} speed-up | tier gap |",
             "|---|" + "---|" * (len(tiers) + 5 + int(train))]
    for config in ["none", *configs]:
        if (mapping, config) not in table.index:
            continue
        r = table.loc[(mapping, config)]
        lines.append(f"| {config} | {r[column]:.4f} | " + " | ".join(_pct(r[f'change_{t}']) for t in tiers)
                     + f" | {_pct(r['change_all'])} | {_pm(r, 'mdac')} |"
                     + (f" {_pm(r, 'mdac_train')} |" if train else "")
                     + f" {r['speedup']:.2f}x | {_gap(r) if config != 'none' else '–'} |")
    return lines


def findings(measures: pd.DataFrame, focus_mapping: str) -> list[str]:
    """RF²'s three questions, answered from the numbers (whichever way they fall), each saying
    how many seeds it rests on and, with several, whether the intervals separate the cells."""
    cells = measures.set_index(["mapping", "configuration"])
    table = cells["mdac"]
    seeds = _seeds(measures)
    several = seeds > 1
    basis = f"{seeds} seeds, 95 % CI" if several else "one seed"
    out = []
    if ("random", "exclude-lo") in table.index and ("hetero-vhigh", "exclude-lo") in table.index:
        vhigh, rand = cells.loc[("hetero-vhigh", "exclude-lo")], cells.loc[("random", "exclude-lo")]
        ratio = vhigh["mdac"] / max(rand["mdac"], 1e-12)
        detail = "one seed"
        if several:
            detail = (f"{seeds} seeds, 95 % CI ± {100 * vhigh['mdac_ci95']:.2f} and ± {100 * rand['mdac_ci95']:.2f} "
                      f"points, intervals {'disjoint' if intervals_disjoint(vhigh, rand, 'mdac') else 'overlapping'}")
        out.append(f"- Exclude Lo: MDAC {100 * vhigh['mdac']:.2f}% under hetero-vhigh against {100 * rand['mdac']:.2f}% "
                   f"under random ({ratio:.1f}x; RF² saw 15.8x and 41x on Taobao); {detail}.")
    pairs = [(q, q.replace("quant-", "quants-")) for q in _configurations(measures) if q.startswith("quant-")]
    for quant, quants in pairs:
        both = [m for m in _mappings(measures) if (m, quant) in table.index and (m, quants) in table.index]
        if both:
            wins = sum(table[(m, quants)] < table[(m, quant)] for m in both)
            apart = ""
            if several:
                separated = sum(intervals_disjoint(cells.loc[(m, quants)], cells.loc[(m, quant)], "mdac") for m in both)
                apart = f"; the two intervals are disjoint under {separated} of them"
            out.append(f"- {quants} vs {quant}: lower mean MDAC under {wins} of {len(both)} mappings "
                       f"(mean {100 * np.mean([table[(m, quants)] for m in both]):.2f}% vs "
                       f"{100 * np.mean([table[(m, quant)] for m in both]):.2f}%; {basis}{apart}).")
    focus = measures[(measures["mapping"] == focus_mapping) & (measures["configuration"] != "none")]
    if len(focus):
        column, title = _metric(measures)
        best = focus.loc[focus[column].idxmax()]
        fairest = focus.loc[focus["mdac"].idxmin()]
        same = "the same one" if best["configuration"] == fairest["configuration"] else "not the same one"
        out.append(f"- Under {focus_mapping} the most accurate optimization is {best['configuration']} "
                   f"({title} {best[column]:.4f}, MDAC {_pm(best, 'mdac')}) and the fairest is "
                   f"{fairest['configuration']} (MDAC {_pm(fairest, 'mdac')}, {title} {fairest[column]:.4f}): "
                   f"{same} ({basis}).")
        if several and "beyond_noise" in focus:
            beyond = focus[focus["beyond_noise"].astype(bool)]["configuration"].tolist()
            within = focus[~focus["beyond_noise"].astype(bool)]["configuration"].tolist()
            out.append(f"- Under {focus_mapping}, the gap between the extreme tiers exceeds the seeds' noise (paired "
                       f"95 % CI excludes 0) for {len(beyond)} of {len(focus)} optimizations"
                       + (f": {', '.join(beyond)}" if beyond else "")
                       + (f"; within noise: {', '.join(within)}" if within else "") + ".")
        speedups = ", ".join(f"{r['configuration']} {r['speedup']:.2f}x"
                             for _, r in focus.sort_values("speedup", ascending=False).iterrows())
        out.append(f"- Simulated speed-ups under {focus_mapping}, against no optimization: {speedups}.")
    return out




def matrix_page(measures: pd.DataFrame, tiers: tuple[str, ...], focus_mapping: str, *, run: RunDescription,
                strategy: str = "fedavg") -> "ResultsPage":
    """The matrix's results page: the MDAC table, the focus mapping's per-tier changes, MDAC and
    speed-up, the findings, and both figures. The title names the model, a strategy other than
    FedAvg and a lone mapping, so pages of the same job with other settings are told apart."""
    from jobs.lib.job_page import plural, spread_note
    from jobs.lib.results_page import ResultsPage

    model = model_title(measures)
    mappings, configs = _mappings(measures), _configurations(measures)
    served = f" with {strategy_name(strategy)}" if strategy != DEFAULT_STRATEGY else ""
    only = f", {mappings[0]}" if len(mappings) == 1 else ""
    page = ResultsPage(
        title=f"RF²'s matrix: {model}{served} on {run.dataset}{only}", command=run.command, seeds=list(run.seeds),
        intro=(f"{plural(len(configs), 'tier-aware optimization')} under {plural(len(mappings), 'tier mapping')}, "
               f"each cell against the same mapping and seed without optimization. {run.setting} "
               f"{spread_note(list(run.seeds))}"))
    page.add("MDAC per configuration and tier mapping", "\n".join(_mdac_table(measures)))
    if focus_mapping in mappings:
        table = measures.set_index(["mapping", "configuration"])
        page.add(f"Per tier under {focus_mapping}", "\n".join(_focus_table(table, tiers, focus_mapping, configs)))
    page.add("Findings", "\n".join(findings(measures, focus_mapping)) or "No cell to compare.")
    page.add_plot("mdac.png", f"{model}: MDAC per configuration, a bar per tier mapping (RF² Fig. 6)",
                  lambda target: plot_mdac(measures, target))
    if focus_mapping in mappings:
        page.add_plot(f"tier_change_{focus_mapping}.png",
                      f"{model} under {focus_mapping}: relative {_metric(measures)[1]} change per tier and "
                      "configuration (RF² Fig. 8)",
                      lambda target: plot_tier_change(measures, tiers, focus_mapping, target))
    return page


def plot_mdac(measures: pd.DataFrame, path: Storage) -> None:
    """Grouped bars: one group per configuration, one bar per mapping (RF² Fig. 6)."""
    plt = pyplot()
    mappings, configs = _mappings(measures), _configurations(measures)
    table = measures.set_index(["mapping", "configuration"])["mdac"]
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * len(configs) + 2), 4))
    width = 0.8 / max(len(mappings), 1)
    x = np.arange(len(configs))
    colors = plt.cm.viridis(np.linspace(0.1, 0.9, len(mappings)))
    for k, mapping in enumerate(mappings):
        values = [100 * table.get((mapping, c), np.nan) for c in configs]
        ax.bar(x + (k - (len(mappings) - 1) / 2) * width, values, width, label=mapping, color=colors[k])
    ax.set_xticks(x, configs, rotation=45, ha="right")
    ax.set_ylabel("MDAC (%)")
    ax.set_title(f"{model_title(measures)}: max difference of per-tier {_metric(measures)[1]} change")
    ax.legend(fontsize=8, ncol=2)
    save_figure(fig, path)


def plot_tier_change(measures: pd.DataFrame, tiers: tuple[str, ...], mapping: str, path: Storage) -> None:
    """Grouped bars: one group per configuration, one bar per tier (RF² Fig. 8)."""
    plt = pyplot()
    configs = _configurations(measures)
    table = measures[measures["mapping"] == mapping].set_index("configuration")
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * len(configs) + 2), 4))
    width = 0.8 / len(tiers)
    x = np.arange(len(configs))
    for k, tier in enumerate(tiers):
        values = [100 * table.loc[c, f"change_{tier}"] if c in table.index else np.nan for c in configs]
        ax.bar(x + (k - (len(tiers) - 1) / 2) * width, values, width, label=tier)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, configs, rotation=45, ha="right")
    title = _metric(measures)[1]
    ax.set_ylabel(f"relative {title} change (%)")
    ax.set_title(f"{model_title(measures)} under {mapping}: {title} change per tier")
    ax.legend()
    save_figure(fig, path)
