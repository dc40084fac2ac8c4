"""The figures a researcher opens first in an FL run folder: held-out quality per tier and the
gap between tiers, over rounds and over simulated time, and the clients each tier lost per round
(dropped as stragglers, failed with their worker).

Pure: the input is the run's history (the aggregator's round records, as ``rounds.parquet`` and
``tiers.parquet`` hold them); the PNGs go through :class:`cluster.storage.Storage`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from cluster.storage import Storage, as_storage
from jobs.lib.fl_results import METRIC_LABELS, TIER_KEYS
from jobs.lib.plotting import pyplot, save_figure

# Each plot's file, relative to the run folder (summary.json lists the ones written).
PLOT_FILES = {
    "quality_by_round": "plots/quality_by_round.png",
    "clients_lost_by_round": "plots/clients_lost_by_round.png",
    "quality_by_sim_time": "plots/quality_by_sim_time.png",
}
# The headline metric of each model family, in the order a run's history is searched for one.
HEADLINE_METRICS = ("hr10", "auc", "ndcg10")
_OVERALL_COLOR = "black"


@dataclass(frozen=True)
class RunCurves:
    """One value per round, in round order. ``quality``: "all" and each tier, NaN on rounds
    without an evaluation; ``resumed_from``: the round a resumed run went on after (0: none)."""

    rounds: np.ndarray
    sim_time_s: np.ndarray
    tiers: tuple[str, ...]
    metric: str
    quality: dict[str, np.ndarray]
    dropped: dict[str, np.ndarray]
    failed: dict[str, np.ndarray]
    resumed_from: int = 0
    label: str = ""
    evaluated: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        finite = [np.isfinite(v) for v in self.quality.values()]
        evaluated = np.logical_or.reduce(finite) if finite else np.zeros(len(self.rounds), bool)
        object.__setattr__(self, "evaluated", np.asarray(evaluated, bool))

    @property
    def metric_label(self) -> str:
        return METRIC_LABELS.get(self.metric, self.metric)

    def tier_gap(self) -> np.ndarray:
        """max − min of the tiers' metric per round; NaN where fewer than two tiers were measured."""
        if not self.tiers:
            return np.full(len(self.rounds), np.nan)
        values = np.vstack([self.quality[t] for t in self.tiers])
        measured = np.isfinite(values).sum(axis=0)
        gap = np.full(len(self.rounds), np.nan)
        some = measured >= 2
        if some.any():
            gap[some] = np.nanmax(values[:, some], axis=0) - np.nanmin(values[:, some], axis=0)
        return gap


def _value(row: dict, key: str) -> float:
    value = row.get(key)
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def recorded_metric(history: Sequence[dict], candidates: Iterable[str] = HEADLINE_METRICS) -> Optional[str]:
    """The first of ``candidates`` some round of ``history`` measured; None when none was."""
    for metric in candidates:
        if any(math.isfinite(_value(row, metric)) for row in history):
            return metric
    return None


def curves_from_history(history: Sequence[dict], tier_names: Sequence[str], metric: Optional[str] = None,
                        resumed_from: int = 0, label: str = "") -> RunCurves:
    """``history``: the round records (``round``, ``sim_time_s``, ``dropped_<tier>``, ...; a
    metric absent or NaN where the round was not evaluated). ``metric``: the one to draw; by
    default the first of HEADLINE_METRICS the run recorded."""
    # A round recorded twice (a replay after a restart) counts once: its last record.
    by_round = {int(row["round"]): row for row in history}
    rows = [by_round[r] for r in sorted(by_round)]
    tiers = tuple(tier_names)
    metric = metric or recorded_metric(rows) or HEADLINE_METRICS[0]
    column = lambda key: np.array([_value(row, key) for row in rows], dtype=float)  # noqa: E731
    counts = lambda kind: {t: np.nan_to_num(column(f"{kind}_{t}")) for t in tiers}  # noqa: E731
    return RunCurves(
        rounds=np.array(sorted(by_round), dtype=int),
        sim_time_s=column("sim_time_s"),
        tiers=tiers,
        metric=metric,
        quality={"all": column(metric), **{t: column(f"{metric}_{t}") for t in tiers}},
        dropped=counts("dropped"),
        failed=counts("failed"),
        resumed_from=int(resumed_from or 0),
        label=label,
    )


def history_from_tables(rounds, tiers) -> tuple[list[dict], tuple[str, ...]]:
    """The round records and tier names back from a run folder's ``rounds.parquet`` and
    ``tiers.parquet`` (pyarrow tables or pandas frames), to draw a finished run again."""
    rounds_rows = _records(rounds)
    tier_rows = _records(tiers)
    names = tuple(dict.fromkeys(str(row["tier"]) for row in tier_rows))
    history = {int(row["round"]): dict(row) for row in rounds_rows}
    for row in tier_rows:
        record = history.setdefault(int(row["round"]), {"round": int(row["round"])})
        for key in TIER_KEYS:
            if key in row:
                record[f"{key}_{row['tier']}"] = row[key]
    return [history[r] for r in sorted(history)], names


def _records(table) -> list[dict]:
    if hasattr(table, "to_pylist"):
        return table.to_pylist()
    return table.to_dict("records")


# ---------------------------------------------------------------------------------- drawing
def _tier_colors(tiers: Sequence[str]) -> dict[str, tuple]:
    # Ordered tiers (low → high) read best on an ordered colour map; "all" stays black.
    colors = pyplot().cm.viridis(np.linspace(0.1, 0.85, max(len(tiers), 1)))
    return {tier: tuple(colors[k]) for k, tier in enumerate(tiers)}


def _title(curves: RunCurves, text: str) -> str:
    return f"{curves.label}: {text}" if curves.label else text


def _resume_x(curves: RunCurves, x: np.ndarray) -> Optional[float]:
    """Where a resumed run went on, on axis ``x``: after its round ``resumed_from``."""
    if curves.resumed_from <= 0:
        return None
    at = np.flatnonzero(curves.rounds == curves.resumed_from)
    return float(x[at[0]]) if len(at) else None


def _mark_resume(axes, at: Optional[float], curves: RunCurves, label: bool) -> None:
    if at is None:
        return
    for k, ax in enumerate(axes):
        ax.axvline(at, color="grey", linestyle=":", linewidth=1.2,
                   label=f"resumed after round {curves.resumed_from}" if label and k == 0 else None)


def _time_axis(seconds: np.ndarray) -> tuple[np.ndarray, str]:
    longest = float(np.nanmax(seconds)) if len(seconds) and np.isfinite(seconds).any() else 0.0
    if longest >= 3 * 3600:
        return seconds / 3600, "h"
    if longest >= 600:
        return seconds / 60, "min"
    return seconds, "s"


def _quality_figure(curves: RunCurves, x: np.ndarray, xlabel: str, title: str, xlim: tuple[float, float],
                    integer_x: bool):
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (ax, gap_ax) = plt.subplots(2, 1, sharex=True, figsize=(8.5, 6.2),
                                     gridspec_kw={"height_ratios": [3, 1.5], "hspace": 0.08})
    shown = curves.evaluated
    colors = _tier_colors(curves.tiers)
    if not shown.any():
        ax.text(0.5, 0.5, f"no round was evaluated ({curves.metric_label})", transform=ax.transAxes,
                ha="center", va="center", color="grey")
        gap_ax.text(0.5, 0.5, "no tier gap to show", transform=gap_ax.transAxes, ha="center", va="center",
                    color="grey")
    for name in curves.tiers:
        values = curves.quality[name]
        keep = np.isfinite(values)
        if keep.any():
            ax.plot(x[keep], values[keep], marker="o", markersize=4, linewidth=1.4, color=colors[name], label=name)
    overall = curves.quality["all"]
    keep = np.isfinite(overall)
    if keep.any():
        ax.plot(x[keep], overall[keep], marker="D", markersize=4.5, linewidth=2.2, color=_OVERALL_COLOR,
                label="all clients")
    gap = curves.tier_gap()
    keep = np.isfinite(gap)
    if keep.any():
        gap_ax.plot(x[keep], gap[keep], marker="s", markersize=4, linewidth=1.6, color="tab:red",
                    label=f"max − min across tiers (last {gap[keep][-1]:.4f})")
        gap_ax.set_ylim(bottom=0, top=max(float(gap[keep].max()) * 1.15, 1e-3))
        gap_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    _mark_resume((ax, gap_ax), _resume_x(curves, x), curves, label=True)
    ax.margins(y=0.08)
    # The whole run's span, not just its evaluated rounds: a single evaluation still sits on a
    # readable axis, and sparse evaluations show where in the run they fell.
    gap_ax.set_xlim(*xlim)
    ax.set_ylabel(f"held-out {curves.metric_label}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="tier", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    gap_ax.set_ylabel(f"tier gap\n({curves.metric_label})")
    gap_ax.set_xlabel(xlabel)
    gap_ax.grid(alpha=0.3)
    if integer_x:
        gap_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def plot_quality_by_round(curves: RunCurves, target: Storage) -> None:
    """Held-out quality per tier and overall on each evaluated round, and the tier gap below."""
    x = curves.rounds.astype(float)
    span = (x.min() - 0.5, x.max() + 0.5) if len(x) else (0.0, 1.0)
    fig = _quality_figure(curves, x, "round", _title(curves, f"held-out {curves.metric_label} per tier over rounds"),
                          span, integer_x=True)
    save_figure(fig, target)


def plot_quality_by_sim_time(curves: RunCurves, target: Storage) -> None:
    """The same curves against the virtual clock: what the tiers' speeds cost in time."""
    x, unit = _time_axis(curves.sim_time_s)
    end = float(np.nanmax(x)) if len(x) and np.isfinite(x).any() else 0.0
    fig = _quality_figure(curves, x, f"simulated time ({unit}, end of round)",
                          _title(curves, f"held-out {curves.metric_label} per tier over simulated time"),
                          (0.0, end * 1.04 if end > 0 else 1.0), integer_x=False)
    save_figure(fig, target)


def plot_clients_lost_by_round(curves: RunCurves, target: Storage) -> None:
    """Per round, the selected clients each tier lost, stacked by tier: stragglers dropped
    (over-selection keeps the fastest; the deadline cuts the rest) and clients whose worker failed."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(8.5, 5.6), gridspec_kw={"hspace": 0.12})
    colors = _tier_colors(curves.tiers)
    x = curves.rounds.astype(float)
    width = 0.8 if len(x) <= 60 else 1.0
    panels = (("dropped", curves.dropped, "dropped stragglers"), ("failed", curves.failed, "failed (worker lost)"))
    for ax, (kind, counts, ylabel) in zip(axes, panels):
        bottom = np.zeros(len(x))
        for tier in curves.tiers:
            label = f"{tier}: {int(curves.dropped[tier].sum()):,} dropped, {int(curves.failed[tier].sum()):,} failed"
            ax.bar(x, counts[tier], width=width, bottom=bottom, color=colors[tier], label=label, linewidth=0)
            bottom = bottom + counts[tier]
        total = int(bottom.sum())
        if total == 0:
            ax.text(0.5, 0.5, f"no client {kind} in this run", transform=ax.transAxes, ha="center", va="center",
                    color="grey")
            ax.set_ylim(0, 1)
        else:
            ax.set_ylim(0, float(bottom.max()) * 1.12)
        ax.set_ylabel(f"{ylabel}\n(clients, total {total:,})")
        ax.grid(alpha=0.3, axis="y")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _mark_resume(axes, _resume_x(curves, x), curves, label=False)
    axes[0].set_title(_title(curves, "selected clients lost per round, by tier"))
    if curves.tiers:
        axes[0].legend(title="tier", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    axes[1].set_xlabel("round")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(x):
        axes[1].set_xlim(x.min() - 0.6 * width - 0.2, x.max() + 0.6 * width + 0.2)
    save_figure(fig, target)


def plot_caption(name: str, metric: str) -> str:
    """A sentence saying what plot ``name`` shows, for a results page."""
    label = METRIC_LABELS.get(metric, metric)
    return {
        "quality_by_round": f"Held-out {label} per tier and over all clients on each evaluated round; below, the "
                            "gap between the best and the worst tier.",
        "clients_lost_by_round": "Selected clients each tier lost per round: stragglers dropped (over-selection "
                                 "keeps the fastest; the deadline cuts the rest) and clients whose worker failed.",
        "quality_by_sim_time": f"Held-out {label} per tier and the tier gap against simulated time (the virtual "
                               "clock): what the slower tiers' rounds cost.",
    }.get(name, name.replace("_", " "))


PLOTTERS: dict[str, Callable[[RunCurves, Storage], None]] = {
    "quality_by_round": plot_quality_by_round,
    "clients_lost_by_round": plot_clients_lost_by_round,
    "quality_by_sim_time": plot_quality_by_sim_time,
}


def write_run_plots(history: Sequence[dict], tier_names: Sequence[str], run_dir: "Storage | str",
                    metric: Optional[str] = None, resumed_from: int = 0, label: str = "",
                    strict: bool = False) -> dict[str, str]:
    """Draw every plot of the run into ``run_dir`` (PLOT_FILES); returns name → path relative to
    it for the ones written. A plot that fails is reported on stderr and left out, so the run's
    results never depend on a figure; ``strict`` raises instead."""
    folder = as_storage(run_dir)
    try:
        curves = curves_from_history(history, tier_names, metric, resumed_from, label)
    except Exception as exc:
        if strict:
            raise
        _warn("plots/", exc)
        return {}
    written = {}
    for name, draw in PLOTTERS.items():
        path = PLOT_FILES[name]
        try:
            draw(curves, folder / path)
        except Exception as exc:
            if strict:
                raise
            _warn(path, exc)
            continue
        written[name] = path
    return written


def _warn(path: str, exc: Exception) -> None:
    print(f"warning: {path} not written ({type(exc).__name__}: {exc}); the run's results are unaffected",
          file=sys.stderr, flush=True)
