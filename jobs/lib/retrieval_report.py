"""Write the fair-retrieval evaluation: Parquet tables, a Markdown table, two plots, and on request
a results page for the documentation site."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa

from cluster.data.parquet_io import write_table_atomic
from cluster.retrieval.policies import fairsync_batch
from cluster.storage import Storage
from configs import SimConfig, config_hash
from jobs.lib.outputs import write_text_atomic
from jobs.lib.plotting import pyplot, save_figure

COLUMNS = ("method", "batch_size", "recall", "ndcg", "hr", "esp", "fill", "worst_group_share", "ms_per_request")
METHOD_LABELS = {"topk": "plain top-K", "k_neighbor": "k-neighbor", "min_regularizer": "min-regularizer",
                 "fairsync": "FairSync"}
# Plain top-K never updates μ, so the batch it is replayed in changes nothing but its speed.
TOPK_BATCH = 64


def write_report(folder: Storage, cfg: SimConfig, rows: list[dict], exposure_rows: list[dict]) -> None:
    stamp = {"config_hash": config_hash(cfg), "seed": cfg.seed}
    write_table_atomic(pa.Table.from_pylist([{**r, **stamp} for r in rows]), folder / "results.parquet")
    write_table_atomic(pa.Table.from_pylist([{**r, **stamp} for r in exposure_rows]), folder / "exposure.parquet")
    write_text_atomic(folder / "results.md", markdown_table(rows, cfg.retrieval.k))
    plot_exposure(folder / "exposure.png", exposure_rows, fairsync_batch(cfg.retrieval))
    plot_batch_sizes(folder / "batch_size.png", rows, fairsync_batch(cfg.retrieval))


def markdown_table(rows: list[dict], k: int) -> str:
    head = ["method", "B", f"Recall@{k}", f"NDCG@{k}", f"HR@{k}", "ESP", "fill", "worst group", "ms/request"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['method']} | {r['batch_size']} | {r['recall']:.4f} | {r['ndcg']:.4f} | {r['hr']:.4f} | "
                     f"{r['esp']:.3f} | {r['fill']:.3f} | {r['worst_group_share']:.2f} | {r['ms_per_request']:.2f} |")
    return "\n".join(lines) + "\n"


def _group_style(n_groups: int):
    """(colour, line style) per group: distinct colours up to 20 groups, styles cycled past 10, so
    every legend entry names one line."""
    from matplotlib import colormaps

    colours = colormaps["tab10" if n_groups <= 10 else "tab20"]
    styles = ("-", "--", ":", "-.")
    return [(colours(g % colours.N), styles[(g // colours.N) % len(styles)]) for g in range(n_groups)]


def plot_exposure(path: Storage, exposure_rows: list[dict], fairsync_batch: int) -> None:
    """Exposure per group over the stream divided by its pro-rata minimum, for plain top-K and
    FairSync at the configured B: a line below 1 is a group short of its minimum. A group can be
    owed a small share and get many times it, so the scale is linear up to 1 (where shortfalls
    are read) and logarithmic above, up to the largest ratio drawn."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    groups = list(dict.fromkeys(r["group"] for r in exposure_rows))
    styles = dict(zip(groups, _group_style(len(groups))))
    top = 1.0
    for ax, (method, batch) in zip(axes, [("topk", TOPK_BATCH), ("fairsync", fairsync_batch)]):
        rows = [r for r in exposure_rows if r["method"] == method and r["batch_size"] == batch]
        for group in groups:
            mine = [r for r in rows if r["group"] == group and r["due"] > 0]
            ratio = [r["exposure"] / r["due"] for r in mine]
            colour, style = styles[group]
            ax.plot([r["requests"] for r in mine], ratio, lw=1, color=colour, ls=style, label=group)
            top = max(top, *ratio) if ratio else top
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set_title(f"{METHOD_LABELS[method]} (B={batch})")
        ax.set_xlabel("requests served")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    axes[0].set_yscale("symlog", linthresh=1.0, linscale=1.0)
    axes[0].set_ylim(0, top * 1.15)
    ticks = [t for t in (0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000) if t <= top * 1.15]
    axes[0].yaxis.set_major_locator(FixedLocator(ticks))
    axes[0].yaxis.set_minor_locator(NullLocator())
    axes[0].yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes[0].set_ylabel("exposure / pro-rata minimum")
    axes[1].legend(title="group", loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=1 if len(groups) <= 12 else 2,
                   fontsize="small", borderaxespad=0)
    save_figure(fig, path)


def plot_batch_sizes(path: Storage, rows: list[dict], default_batch: int) -> None:
    plt = pyplot()
    sweep = [r for r in rows if r["method"] == "fairsync"]
    sweep = sorted({r["batch_size"]: r for r in sweep}.values(), key=lambda r: r["batch_size"])
    topk = next(r for r in rows if r["method"] == "topk")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    b = [r["batch_size"] for r in sweep]
    for ax, key, label in zip(axes, ["esp", "recall", "ms_per_request"], ["ESP", "Recall@K", "ms per request"]):
        ax.plot(b, [r[key] for r in sweep], marker="o", label="FairSync")
        ax.axhline(topk[key], color="gray", ls="--", label="plain top-K")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size B")
        ax.set_title(label)
    axes[0].legend()
    save_figure(fig, path)


def _interval(row: dict, key: str) -> str:
    half = row.get(key + "_ci95")
    return "" if half is None or math.isnan(half) else f" ± {half:.4f}"


def _difference(row: dict) -> str:
    if row["method"] == "topk" or row.get("recall_vs_topk") is None:
        return "–"
    return f"{row['recall_vs_topk']:+.4f}{_interval(row, 'recall_vs_topk')}"


def results_page(cfg: SimConfig, rows: list[dict], exposure_rows: list[dict], command: str, setting: str,
                 loads: Optional[tuple[str, str]] = None):
    """The evaluation as a results page: the table, what it says about FairSync at the configured
    B and over the sweep of B, and both plots. ``setting``: one line on the catalogue and the
    requests; ``loads``: the machine's load at the start and at the end of the run."""
    from jobs.lib.results_page import ResultsPage, markdown_table as table

    k, batch = cfg.retrieval.k, fairsync_batch(cfg.retrieval)
    n_groups = len({r["group"] for r in exposure_rows})
    requests = max((int(r.get("requests", 0)) for r in rows), default=0)
    page = ResultsPage(
        title=f"Fair retrieval: FairSync against the baselines ({cfg.name})", command=command, seeds=(cfg.seed,),
        intro=(f"{setting}\n\nOne run, one seed. Every ± is a 95 % t-interval over the {requests:,} requests of "
               "this run (the differences are paired: the same requests under both methods), not over seeds."),
    )
    head = ["method", "B", f"Recall@{k} ± CI", f"NDCG@{k}", "ESP", "fill", "worst group", "ms/request",
            "Recall − plain top-K ± CI"]
    body = []
    for r in rows:
        label = METHOD_LABELS.get(r["method"], r["method"])
        if r["method"] == "fairsync" and r["batch_size"] == batch:
            label = f"**{label}** (configured B)"
        body.append([label, "–" if r["method"] == "topk" else r["batch_size"],
                     f"{r['recall']:.4f}{_interval(r, 'recall')}",
                     f"{r['ndcg']:.4f}", f"{r['esp']:.3f}", f"{r['fill']:.3f}", f"{r['worst_group_share']:.2f}",
                     f"{r['ms_per_request']:.2f}", _difference(r)])
    notes = ""
    if all(abs(r["hr"] - r["recall"]) < 1e-12 for r in rows):
        notes = f"\nHR@{k} equals Recall@{k} here: every request has one held-out item.\n"
    page.add("Quality and exposure per method", table(head, body) + notes)
    page.add(f"FairSync at the configured B = {batch}", _configured_findings(rows, batch, n_groups, k))
    page.add("FairSync over the batch size B", _sweep_findings(rows, loads))
    page.add("Columns", COLUMN_NOTES.format(k=k, share=cfg.retrieval.exposure_share))
    page.add_plot("exposure.png",
                  f"Exposure of each group over the stream divided by its pro-rata minimum: plain top-K (left) and "
                  f"FairSync at B = {batch} (right). Below the dashed line a group is short of its minimum; the "
                  "scale is linear up to 1 and logarithmic above.",
                  lambda target: plot_exposure(target, exposure_rows, batch))
    page.add_plot("batch_size.png", f"ESP, Recall@{k} and milliseconds per request of FairSync against B; "
                                    "dashed: plain top-K.",
                  lambda target: plot_batch_sizes(target, rows, batch))
    return page


COLUMN_NOTES = """\
- **ESP**: the share of groups whose exposure reached their minimum (m = {share} · T·K/G slots
  over the T requests, pro rata where a run stops early).
- **fill**: the share of the owed exposure delivered, Σ min(e, m) / Σ m; 1.0 when every minimum is met.
- **worst group**: the lowest delivered share of a group's minimum (1.0 = met; 0 = never shown).
- **ms/request**: the replay's wall time per request, one fan-out to the shards per batch.
- **Recall − plain top-K**: the paired difference in Recall@{k} over the same requests.
"""


def _configured_findings(rows: list[dict], batch: int, n_groups: int, k: int) -> str:
    topk = next(r for r in rows if r["method"] == "topk")
    fair = next((r for r in rows if r["method"] == "fairsync" and r["batch_size"] == batch), None)
    if fair is None:
        return "FairSync did not run at the configured B.\n"
    met = round(fair["esp"] * n_groups)
    lines = [f"- Exposure: {met} of {n_groups} groups reached their minimum (ESP {fair['esp']:.3f}, fill "
             f"{fair['fill']:.3f}, worst group {fair['worst_group_share']:.2f} of its minimum); plain top-K: ESP "
             f"{topk['esp']:.3f}, worst group {topk['worst_group_share']:.2f}."]
    lines.append(f"- Recall@{k}: {fair['recall']:.4f} against plain top-K's {topk['recall']:.4f}"
                 + _relative(fair, topk) + ".")
    for r in rows:
        if r["method"] in ("k_neighbor", "min_regularizer"):
            lines.append(f"- {METHOD_LABELS[r['method']]} (B = {r['batch_size']}): ESP {r['esp']:.3f}, "
                         f"Recall@{k} {r['recall']:.4f}" + _relative(r, topk) + ".")
    return "\n".join(lines) + "\n"


def _relative(row: dict, topk: dict) -> str:
    """The paired recall difference against plain top-K, relative, and whether its interval holds 0."""
    diff, half = row.get("recall_vs_topk"), row.get("recall_vs_topk_ci95")
    relative = f" ({diff / topk['recall']:+.1%} relative)" if diff is not None and topk["recall"] > 0 else ""
    if diff is None:
        return ""
    if half is None or math.isnan(half):
        return f", a difference of {diff:+.4f}{relative}"
    verdict = ("the interval holds 0: no difference is shown at this number of requests" if abs(diff) <= half
               else "the interval excludes 0")
    return f", a difference of {diff:+.4f} ± {half:.4f}{relative}; {verdict}"


def _sweep_findings(rows: list[dict], loads: Optional[tuple[str, str]]) -> str:
    sweep = sorted((r for r in rows if r["method"] == "fairsync"), key=lambda r: r["batch_size"])
    if not sweep:
        return "FairSync did not run.\n"
    meeting = [r["batch_size"] for r in sweep if r["esp"] >= 1.0]
    missing = [f"{r['batch_size']} (ESP {r['esp']:.3f})" for r in sweep if r["esp"] < 1.0]
    lines = [f"- B meeting every minimum: {', '.join(map(str, meeting)) or 'none'}"
             + (f"; not: {', '.join(missing)}." if missing else ".")]
    recalls = [r["recall"] for r in sweep]
    first, last = sweep[0]["batch_size"], sweep[-1]["batch_size"]
    span = f"B = {first}–{last}" if len(sweep) > 1 else f"B = {first}"
    lines.append(f"- Recall@K is {min(recalls):.4f} at every B ({span})." if min(recalls) == max(recalls) else
                 f"- Recall@K ranges from {min(recalls):.4f} to {max(recalls):.4f} over {span}.")
    speed = (f"- Milliseconds per request: {sweep[0]['ms_per_request']:.2f} at B = {sweep[0]['batch_size']}, "
             f"{sweep[-1]['ms_per_request']:.2f} at B = {sweep[-1]['batch_size']} (one fan-out per batch).")
    if loads:
        speed += f" Measured with {loads[0]} at the start and {loads[1]} at the end: compare them within this run."
    lines.append(speed)
    return "\n".join(lines) + "\n"


def recall_intervals(rows: list[dict], hits: Sequence[np.ndarray]) -> None:
    """Add to each row its Recall's 95 % interval over requests and its paired difference from
    plain top-K's (``hits[i]``: row i's hit per request, in the same request order)."""
    from cluster.fairness.stats import ci95_half_width

    reference = next((h for r, h in zip(rows, hits) if r["method"] == "topk"), None)
    for row, hit in zip(rows, hits):
        row["recall_ci95"] = ci95_half_width(hit)
        if reference is not None and row["method"] != "topk":
            n = min(len(hit), len(reference))
            row["recall_vs_topk"] = float(np.mean(hit[:n] - reference[:n]))
            row["recall_vs_topk_ci95"] = ci95_half_width(hit[:n] - reference[:n])
