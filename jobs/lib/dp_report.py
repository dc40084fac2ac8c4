"""Tables, figures and the results page of jobs/dp_tiers.py: each tier's quality under every
configuration and privacy level, each configuration's per-tier change and MDAC against no
optimization at the same privacy, DP's own per-tier cost, and whether each mitigation's MDAC stays
below its counterpart's under DP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cluster.fairness.stats import intervals_disjoint
from cluster.storage import Storage
from jobs.lib.plotting import pyplot, save_figure
from jobs.lib.rf2_report import RunDescription

if TYPE_CHECKING:
    from jobs.lib.results_page import ResultsPage

# Each mitigation and the optimization it is meant to make fairer: rescaling keeps pruned updates
# unbiased; channel-lo keeps the low tier, narrowed, in the rounds Exclude Lo drops it from.
MITIGATIONS: dict[str, str] = {"prune-1:4:16-rescaled": "prune-1:4:16", "channel-lo-1:16": "exclude-lo"}
METRIC_TITLES = {"auc": "AUC", "hr10": "HR@10", "ndcg10": "NDCG@10"}
NO_PRIVACY = "none"


@dataclass(frozen=True)
class DPTable:
    """What the job measured: ``measures`` (per privacy level and configuration, against ``none``
    at the same privacy), ``cost`` (per configuration and ε, against no DP), the refused cells,
    the tiers, the headline metric's column name and the configurations in the order asked for."""

    measures: pd.DataFrame
    cost: pd.DataFrame
    refused: pd.DataFrame
    tiers: tuple[str, ...]
    metric: str
    configurations: Sequence[str] = ()

    @property
    def metric_title(self) -> str:
        return METRIC_TITLES.get(self.metric, self.metric)

    def privacies(self) -> list[tuple[str, float]]:
        """Every privacy level measured or refused, no DP first, then by ascending ε."""
        found = {}
        for frame in (self.measures, self.refused):
            if len(frame):
                found.update(zip(frame["privacy"], frame["target_epsilon"]))
        return sorted(found.items(), key=lambda item: -1.0 if item[1] != item[1] else item[1])

    def ordered_configurations(self) -> list[str]:
        """The configurations asked for, then any other one present, ``none`` first."""
        present = [*self.configurations]
        for frame in (self.measures, self.refused):
            if len(frame):
                present += list(frame["configuration"])
        present = list(dict.fromkeys(present))
        return ([NO_PRIVACY] if NO_PRIVACY in present else []) + [c for c in present if c != NO_PRIVACY]

    def row(self, privacy: str, configuration: str) -> "pd.Series | None":
        if self.measures.empty:
            return None
        hit = self.measures[(self.measures["privacy"] == privacy) & (self.measures["configuration"] == configuration)]
        return hit.iloc[0] if len(hit) else None

    def refusal(self, privacy: str, configuration: str) -> "str | None":
        if self.refused.empty:
            return None
        hit = self.refused[(self.refused["privacy"] == privacy) & (self.refused["configuration"] == configuration)]
        return str(hit["reason"].iloc[0]) if len(hit) else None


def privacy_title(privacy: str, target: float) -> str:
    return "no DP" if privacy == NO_PRIVACY else f"ε = {target:g}"


def _pm(row: pd.Series, column: str, scale: float = 100.0, spec: str = ".2f", unit: str = "%") -> str:
    """``mean ± 95 % half-width`` (the mean alone for one seed); – where absent."""
    value = row.get(column, np.nan)
    if value is None or value != value:
        return "–"
    half = row.get(f"{column}_ci95", np.nan)
    text = format(scale * value, spec)
    return f"{text} ± {format(scale * half, spec.lstrip('+'))}{unit}" if half == half else f"{text}{unit}"


def _seeds(table: DPTable) -> int:
    return int(table.measures["seeds"].min()) if len(table.measures) else 0


def _spread(table: DPTable) -> str:
    seeds = _seeds(table)
    return f"mean ± 95 % CI over {seeds} seeds" if seeds > 1 else "one seed, no interval"


def quality_table(table: DPTable) -> list[str]:
    """Each tier's metric per privacy level and configuration, with the ε reached, the share of
    clipped clients and the simulated time."""
    tiers, title = table.tiers, table.metric_title
    head = ["privacy", "configuration", *[f"{title} {t}" for t in tiers], f"{title} all", "ε reached", "clipped",
            "sim time (s)"]
    lines = [f"{title} on held-out data per tier ({_spread(table)}); ε reached is the accountant's after the last "
             "round, clipped the mean share of a round's clients whose update was clipped", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for privacy, target in table.privacies():
        for configuration in table.ordered_configurations():
            row, why = table.row(privacy, configuration), table.refusal(privacy, configuration)
            label = f"| {privacy_title(privacy, target)} | {configuration} | "
            if row is None:
                if why:
                    lines.append(label + "refused (reason below) |" + " – |" * (len(head) - 3))
                continue
            values = [_pm(row, f"{table.metric}_{t}", 1.0, ".4f", "") for t in tiers]
            values.append(_pm(row, table.metric, 1.0, ".4f", ""))
            # ε reached is the same for every seed up to rounding: its interval would only show float noise.
            epsilon = row.get("dp_epsilon", np.nan)
            values += [format(epsilon, ".3g") if epsilon == epsilon else "–", _pm(row, "dp_clipped", 100.0, ".0f", "%"),
                       _pm(row, "sim_time_s", 1.0, ".0f", "")]
            lines.append(label + " | ".join(values) + " |")
    return lines


def change_table(table: DPTable) -> list[str]:
    """Per privacy level: each configuration's relative change per tier and overall against
    ``none`` at the same privacy, MDAC and the simulated speed-up."""
    tiers, title = table.tiers, table.metric_title
    head = ["privacy", "configuration", *[f"Δ {t}" for t in tiers], "Δ all", "MDAC", "speed-up"]
    lines = [f"Relative {title} change against no optimization under the same privacy ({_spread(table)})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for privacy, target in table.privacies():
        for configuration in table.ordered_configurations():
            if configuration == NO_PRIVACY:
                continue
            row, why = table.row(privacy, configuration), table.refusal(privacy, configuration)
            label = f"| {privacy_title(privacy, target)} | {configuration} | "
            if row is None:
                if why:
                    lines.append(label + "refused (reason below) |" + " – |" * (len(head) - 3))
                elif table.refusal(privacy, NO_PRIVACY):
                    lines.append(label + "no reference: `none` refused |" + " – |" * (len(head) - 3))
                continue
            values = [_pm(row, f"change_{t}", spec="+.2f") for t in (*tiers, "all")]
            values += [_pm(row, "mdac"), f"{row['speedup']:.2f}x"]
            lines.append(label + " | ".join(values) + " |")
    if len(lines) == 4:
        lines.append("| – | no configuration besides `none` |" + " – |" * (len(head) - 2))
    return lines


def cost_table(table: DPTable, configuration: str = NO_PRIVACY) -> list[str]:
    """DP's own cost: each tier's relative change of (``configuration``, ε) against
    (``configuration``, no DP), and the MDAC of those changes."""
    tiers, title = table.tiers, table.metric_title
    cost = table.cost[table.cost["configuration"] == configuration] if len(table.cost) else table.cost
    head = ["privacy", *[f"Δ {t}" for t in tiers], "Δ all", "MDAC", "slow-down"]
    lines = [f"DP's own cost with optimization `{configuration}`: relative {title} change against the same "
             f"configuration without DP ({_spread(table)}); slow-down is the simulated time over no DP's", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in cost.iterrows():
        values = [_pm(row, f"change_{t}", spec="+.2f") for t in (*tiers, "all")]
        values += [_pm(row, "mdac"), f"{1.0 / row['speedup']:.2f}x"]
        lines.append(f"| {privacy_title(row['privacy'], row['target_epsilon'])} | " + " | ".join(values) + " |")
    if cost.empty:
        lines.append("| – |" + " – |" * (len(head) - 1))
    return lines


def mitigation_verdicts(table: DPTable) -> list[dict]:
    """For every mitigation whose counterpart was asked for too, under every privacy level: both
    MDACs and whether the mitigation's is below — 'below' or 'above' only where the two 95 %
    intervals are disjoint, 'not distinguishable' where they overlap, 'one seed' without them —
    or why it cannot be compared."""
    asked = set(table.ordered_configurations())
    out = []
    for mitigation, counterpart in MITIGATIONS.items():
        if mitigation not in asked or counterpart not in asked:
            continue
        for privacy, target in table.privacies():
            entry = {"mitigation": mitigation, "counterpart": counterpart, "privacy": privacy,
                     "target_epsilon": target}
            mine, theirs = table.row(privacy, mitigation), table.row(privacy, counterpart)
            if mine is None or theirs is None:
                missing = [c for c, r in ((mitigation, mine), (counterpart, theirs)) if r is None]
                reasons = [f"{c} refused (see Refused cells)" if table.refusal(privacy, c)
                           else f"{c} not measured" for c in missing]
                out.append({**entry, "verdict": "cannot compare: " + "; ".join(reasons)})
                continue
            if not (mine["mdac_ci95"] == mine["mdac_ci95"] and theirs["mdac_ci95"] == theirs["mdac_ci95"]):
                verdict = f"{'lower' if mine['mdac'] < theirs['mdac'] else 'not lower'} mean (one seed: no interval)"
            elif intervals_disjoint(mine, theirs, "mdac"):
                verdict = f"{'below' if mine['mdac'] < theirs['mdac'] else 'above'} (intervals disjoint)"
            else:
                verdict = "not distinguishable (intervals overlap)"
            out.append({**entry, "mdac": _pm(mine, "mdac"), "counterpart_mdac": _pm(theirs, "mdac"),
                        "verdict": verdict})
    return out


def findings(table: DPTable) -> list[str]:
    """Whether each mitigation still cuts MDAC under each privacy level, from the numbers."""
    lines = []
    verdicts = mitigation_verdicts(table)
    for v in verdicts:
        where = privacy_title(v["privacy"], v["target_epsilon"])
        if "mdac" in v:
            lines.append(f"- Under {where}: {v['mitigation']} MDAC {v['mdac']} against {v['counterpart']} "
                         f"{v['counterpart_mdac']}: {v['verdict']}.")
        else:
            lines.append(f"- Under {where}: {v['mitigation']} against {v['counterpart']}: {v['verdict']}.")
    for mitigation in dict.fromkeys(v["mitigation"] for v in verdicts):
        private = [v for v in verdicts if v["mitigation"] == mitigation and v["privacy"] != NO_PRIVACY
                   and "mdac" in v]
        below = [privacy_title(v["privacy"], v["target_epsilon"]) for v in private if v["verdict"].startswith("below")]
        counterpart = MITIGATIONS[mitigation]
        if private:
            lines.append(f"- In sum, {mitigation} cuts MDAC below {counterpart}'s, intervals disjoint, under "
                         f"{len(below)} of the {len(private)} DP levels where both ran"
                         + (f" ({', '.join(below)})" if below else "") + ".")
        else:
            lines.append(f"- In sum, {mitigation} and {counterpart} did not both run under any DP level.")
    if not verdicts:
        lines.append("- No mitigation was measured beside its counterpart "
                     f"({', '.join(f'{m} against {c}' for m, c in MITIGATIONS.items())}).")
    return lines


def refused_lines(table: DPTable) -> list[str]:
    if table.refused.empty:
        return []
    unique = table.refused.drop_duplicates(["configuration", "privacy"])
    return [f"- {r['configuration']} under {privacy_title(r['privacy'], r['target_epsilon'])}: {r['reason']}"
            for _, r in unique.iterrows()]


def dp_markdown(table: DPTable) -> str:
    lines = [*quality_table(table), "", *change_table(table), "", *cost_table(table), "", "Mitigations under DP:",
             "", *findings(table)]
    refused = refused_lines(table)
    if refused:
        lines += ["", "Refused cells (not run):", "", *refused]
    return "\n".join(lines) + "\n"


def dp_page(table: DPTable, *, run: RunDescription, mapping: str) -> "ResultsPage":
    """The results page: quality per tier, change against no optimization, DP's own cost, the
    mitigations' verdicts, the refused cells and both figures."""
    from jobs.lib.job_page import plural, spread_note
    from jobs.lib.results_page import ResultsPage

    model = _model(table)
    epsilons = [privacy_title(p, t) for p, t in table.privacies() if p != NO_PRIVACY]
    configs = [c for c in table.ordered_configurations() if c != NO_PRIVACY]
    page = ResultsPage(
        title=f"What differential privacy costs each tier: {model} on {run.dataset}, {mapping}",
        command=run.command, seeds=list(run.seeds),
        intro=(f"{plural(len(configs), 'tier-aware optimization')} and no optimization, without DP and under "
               f"user-level central DP at {', '.join(epsilons) or 'no ε'}; each configuration against no "
               f"optimization at the same privacy, and each privacy level against no DP. {run.setting} "
               f"{spread_note(list(run.seeds))}"))
    page.add(f"{table.metric_title} per tier", "\n".join(quality_table(table)))
    page.add("Change against no optimization, per privacy level", "\n".join(change_table(table)))
    page.add("DP's own cost per tier", "\n".join(cost_table(table)))
    page.add("Do the mitigations still cut MDAC under DP?", "\n".join(findings(table)))
    refused = refused_lines(table)
    if refused:
        page.add("Refused cells", "Cells whose config the schema refuses are not run:\n\n" + "\n".join(refused))
    page.add_plot("mdac.png", f"{model}: MDAC per configuration, a bar per privacy level (95 % CI)",
                  lambda target: plot_mdac(table, target))
    page.add_plot("dp_cost.png", f"{model}: DP's own cost, relative {table.metric_title} change per tier against no DP",
                  lambda target: plot_dp_cost(table, target))
    return page


def _model(table: DPTable) -> str:
    frame = table.measures if len(table.measures) else table.refused
    return str(frame["model"].iloc[0]).upper() if len(frame) else "?"


def _error(row: "pd.Series | None", column: str) -> float:
    if row is None:
        return np.nan
    half = row.get(f"{column}_ci95", np.nan)
    return 100 * half if half == half else 0.0


def plot_mdac(table: DPTable, path: Storage) -> None:
    """Grouped bars: one group per configuration, one bar per privacy level, 95 % CI whiskers; a
    refused cell has no bar."""
    plt = pyplot()
    configs = [c for c in table.ordered_configurations() if c != NO_PRIVACY]
    privacies = table.privacies()
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(configs) + 2), 4))
    width = 0.8 / max(len(privacies), 1)
    x = np.arange(len(configs))
    colors = plt.cm.viridis(np.linspace(0.1, 0.9, max(len(privacies), 1)))
    for k, (privacy, target) in enumerate(privacies):
        rows = [table.row(privacy, c) for c in configs]
        values = [100 * r["mdac"] if r is not None else np.nan for r in rows]
        errors = [_error(r, "mdac") for r in rows]
        ax.bar(x + (k - (len(privacies) - 1) / 2) * width, values, width, yerr=errors, capsize=2,
               label=privacy_title(privacy, target), color=colors[k])
    for i, config in enumerate(configs):
        if all(table.row(p, config) is None for p, _ in privacies):
            ax.annotate("refused", (x[i], 0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(x, configs, rotation=30, ha="right")
    ax.set_ylabel(f"MDAC of {table.metric_title} (%)")
    ax.set_title(f"{_model(table)}: MDAC against no optimization, per privacy level")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_dp_cost(table: DPTable, path: Storage, configuration: str = NO_PRIVACY) -> None:
    """Grouped bars: one group per ε, one bar per tier: the relative change against no DP of
    ``configuration``, 95 % CI whiskers."""
    plt = pyplot()
    cost = table.cost[table.cost["configuration"] == configuration] if len(table.cost) else table.cost
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(cost) + 2), 4))
    x = np.arange(len(cost))
    width = min(0.8 / max(len(table.tiers), 1), 0.2)
    for k, tier in enumerate(table.tiers):
        values = [100 * r[f"change_{tier}"] for _, r in cost.iterrows()]
        errors = [_error(r, f"change_{tier}") for _, r in cost.iterrows()]
        ax.bar(x + (k - (len(table.tiers) - 1) / 2) * width, values, width, yerr=errors, capsize=2, label=tier)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [privacy_title(r["privacy"], r["target_epsilon"]) for _, r in cost.iterrows()])
    ax.set_ylabel(f"relative {table.metric_title} change (%)")
    ax.set_title(f"{_model(table)}: DP's cost per tier (optimization '{configuration}')")
    ax.legend()
    save_figure(fig, path)
