"""The results pages of ``jobs/bench_index.py``: the shard index kinds side by side (recall,
speed, memory), and the recall of each fetch way over the sweep of μ (``--mu-sweep``)."""

from __future__ import annotations

import argparse
import math
from typing import Optional, Sequence

import numpy as np

from cluster.storage import Storage
from jobs.lib.plotting import pyplot, save_figure
from jobs.lib.results_page import ResultsPage, markdown_table


def _one_run(args: argparse.Namespace, what: str) -> str:
    return (f"One run (seed {args.seed} draws the catalogue, its partition and the queries): {what}. Speeds are "
            "one measurement each, on one FAISS thread; read them as ratios within the run.")


def kinds_page(rows: list[dict], args: argparse.Namespace, mus: dict, sigma: float, command: str,
               loads: Optional[tuple[str, str]] = None) -> ResultsPage:
    """``rows``: bench_index's rows, flat first; ``mus``: the learned μ per exposure share."""
    k, shares = args.k, args.exposure_shares
    intro = [
        f"{args.items:,} synthetic items × dim {args.dim}, {args.groups} groups (group 0 disliked by every user), "
        f"{args.shards} shards (~{args.items // args.shards:,} items each), K = {k}, {args.queries:,} queries; "
        "every kind builds one index per shard.",
        "",
        _one_run(args, f"recall ± is a 95 % t-interval over the {args.queries:,} queries, not over seeds"),
    ]
    if loads:
        intro += ["", f"Machine load at the start: {loads[0]}; at the end: {loads[1]}."]
    page = ResultsPage(title=f"Shard index kinds: {args.items:,} items × {args.dim}, {args.shards} shards",
                       command=command, seeds=(args.seed,), intro="\n".join(intro))
    mu_lines = [f"- exposure share {share}: μ = [{', '.join(f'{m:.2f}' for m in mu)}] = "
                f"[{', '.join(f'{m:.2f}' for m in np.asarray(mu) / sigma)}] × σ(scores) {sigma:.2f}"
                for share, mu in mus.items()]
    page.add("The μ each kind is measured under",
             f"FairSync's dual vector (batch 32, lr 0.5, Adam) learned from {args.dual_requests:,} requests "
             "answered by exact search over the first shard; the mean of its second-half iterates:\n\n"
             + "\n".join(mu_lines))
    flat = rows[0]
    head = (["kind", "build s"] + [f"R@{k} share {s}" for s in shares]
            + [f"q/s batch {args.batch}", "MiB/shard (index + floats)", "q/s ÷ flat", "memory ÷ flat",
               "re-score share", "settings"])
    body = []
    for r in rows:
        recalls = ([f"{value:.4f}" + _interval(r.get("recall_ci95"), i) for i, value in enumerate(r["recall"])]
                   if r is not flat else ["1 (the reference)"] * len(shares))
        body.append([f"`{r['kind']}`", f"{r['build_s']:,.1f}", *recalls, f"{r['qps']:,.0f}",
                     f"{r['memory_mb']:.1f} ({r['index_mb']:.1f} + {r['vectors_mb']:.1f})",
                     f"{r['qps'] / flat['qps']:.2f}", f"{r['memory_mb'] / flat['memory_mb']:.2f}",
                     f"{100 * r['rescore_share']:.0f} %", r["settings"]])
    page.add("Recall, speed and memory per kind", markdown_table(head, body) + KINDS_NOTES.format(
        k=k, batch=args.batch, shards=args.shards))
    best = best_row(rows)
    if best is not None:
        page.add("Highest recall", f"At exposure share {shares[0]}, the fastest of the highest recall: `{best['kind']}`, recall@{k} "
                                   f"{best['recall'][0]:.4f}{_interval(best.get('recall_ci95'), 0)} at "
                                   f"{_times(best['qps'] / flat['qps'])} flat's queries per second (one run).")
    page.add_plot("recall_speed.png", f"Recall@{k} at exposure share {shares[0]} against queries per second "
                                      f"(batch {args.batch}, one thread), one point per kind; flat is exact.",
                  lambda target: plot_recall_speed(target, rows, k, shares[0]))
    return page


KINDS_NOTES = """
- **Recall** is of the merged {shards}-shard top-{k} against exact flat search of the same s − μ.
- **q/s** is at batch {batch}, every shard searched in turn on one thread and then merged; shard
  actors search in parallel.
- **Memory per shard** is the serialized FAISS index plus the floats kept for the exact re-score.
- **Re-score share** is the part of one shard's search spent after the index's fetch.
"""


def best_row(rows: list[dict]) -> Optional[dict]:
    """The approximate row of highest recall at the first share; kinds that recall the same to
    four decimals (the same IVF lists probed by two index kinds) go by queries per second."""
    return max(rows[1:], key=lambda r: (round(r["recall"][0], 4), r["qps"]), default=None)


def _times(ratio: float) -> str:
    return f"{ratio:.1f}×" if ratio >= 1 else f"{ratio:.2f}×"


def _interval(halves: Optional[Sequence[float]], i: int) -> str:
    if not halves or halves[i] is None or math.isnan(halves[i]):
        return ""
    return f" ± {halves[i]:.4f}"


def plot_recall_speed(path: Storage, rows: list[dict], k: int, share: float) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in rows:
        ax.scatter(r["qps"], r["recall"][0], s=30)
        ax.annotate(r["kind"], (r["qps"], r["recall"][0]), textcoords="offset points", xytext=(5, 4),
                    fontsize="small")
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:,.0f}")
    ax.xaxis.set_major_formatter(plain)
    speeds = [r["qps"] for r in rows]
    if max(speeds) < 10 * min(speeds):  # within one decade there may be no major tick to read
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize="x-small")
    ax.set_xlabel("queries per second (log)")
    ax.set_ylabel(f"recall@{k} at exposure share {share}")
    lowest = min(r["recall"][0] for r in rows)
    ax.set_ylim(max(0.0, lowest - 0.05), 1.01)
    save_figure(fig, path)


def sweep_page(columns: list[dict], points: list, world, args: argparse.Namespace, command: str,
               timed_at: str, verdicts: Optional[list[str]] = None) -> ResultsPage:
    """``columns``: one per kind and fetch way (label, recall per point, qps, build_s); ``points``:
    the sweep's (label, μ); ``verdicts``: ``--check``'s lines, when it ran."""
    k = args.k
    intro = [
        f"{args.items:,} items × dim {args.dim}, {args.groups} clustered groups (group {world.low_group} scored low "
        f"by every user), {args.shards} shard(s), K = {k}, {args.queries:,} queries, σ(scores) {world.sigma:.2f}; "
        f"ivf kinds: nlist {args.nlist}, nprobe {args.nprobes[0]}, over-fetch ×{args.overfetch}.",
        "",
        _one_run(args, f"each recall is the mean over the {args.queries:,} queries"),
    ]
    page = ResultsPage(title=f"Recall of each fetch way over a sweep of μ ({args.items:,} × {args.dim})",
                       command=command, seeds=(args.seed,), intro="\n".join(intro))
    head = ["μ point", "μ"] + [f"`{c['label']}`" + (" (default)" if c.get("default") and c["kind"] != "flat" else "")
                               for c in columns]
    body = [[label, "[" + ", ".join(f"{m:.2f}" for m in mu) + "]", *(f"{c['recall'][i]:.3f}" for c in columns)]
            for i, (label, mu) in enumerate(points)]
    body.append([f"**minimum over {len(points)} points**", "", *(f"**{min(c['recall']):.3f}**" for c in columns)])
    body.append([f"queries per CPU-second, batch {args.batch}, at {timed_at}", "",
                 *(f"{c['qps']:,.0f}" for c in columns)])
    body.append(["build s", "", *(f"{c['build_s']:.2f}" for c in columns)])
    page.add(f"Recall@{k} at each μ", markdown_table(head, body)
             + "\nSpeeds are per CPU-second of this process, the best of "
               f"{args.timing_rounds} pass{'' if args.timing_rounds == 1 else 'es'} with the ways taking turns, so "
               "that other work on the machine does not count against a way.\n")
    if verdicts:
        page.add(f"Check (minimum recall ≥ {args.min_recall})", "\n".join(f"- {line}" for line in verdicts))
    page.add_plot("mu_sweep.png", f"Recall@{k} of each kind and fetch way at each point of the μ sweep.",
                  lambda target: plot_sweep(target, columns, points, k))
    return page


def plot_sweep(path: Storage, columns: list[dict], points: list, k: int) -> None:
    """One colour per fetch way and one line style per kind, so that ways that recall alike on
    two kinds stay visible on top of each other. The lifts are joined; the shifted points are
    separate cases, drawn as markers past a dotted divider."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(7.0, 0.6 * len(points)), 4.2))
    labels = [label for label, _ in points]
    lifts = next((i for i, label in enumerate(labels) if ", all" in label), len(labels))
    ways = list(dict.fromkeys(c["label"].partition("/")[2] or c["kind"] for c in columns))
    kinds = list(dict.fromkeys(c["kind"] for c in columns))
    colours = {way: f"C{i}" for i, way in enumerate(ways)}
    styles = {kind: (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))[i % 4] for i, kind in enumerate(kinds)}
    x = np.arange(len(points))
    for column in columns:
        colour = colours[column["label"].partition("/")[2] or column["kind"]]
        line, marker = styles[column["kind"]]
        ax.plot(x[:lifts], column["recall"][:lifts], ls=line, marker=marker, ms=4, mfc="none", color=colour,
                label=column["label"])
        ax.plot(x[lifts:], column["recall"][lifts:], ls="none", marker=marker, ms=5, mfc="none", color=colour)
    if lifts < len(points):
        ax.axvline(lifts - 0.5, color="gray", ls=":", lw=0.8)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize="small")
    ax.set_ylabel(f"recall@{k}")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    save_figure(fig, path)
