"""Write the fair-retrieval evaluation: Parquet tables, a Markdown table and two plots."""

from __future__ import annotations

import pyarrow as pa

from cluster.data.parquet_io import write_table_atomic
from cluster.retrieval.policies import fairsync_batch
from cluster.storage import Storage
from configs import SimConfig, config_hash
from jobs.lib.outputs import write_text_atomic
from jobs.lib.plotting import pyplot, save_figure

COLUMNS = ("method", "batch_size", "recall", "ndcg", "hr", "esp", "fill", "worst_group_share", "ms_per_request")


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


def plot_exposure(path: Storage, exposure_rows: list[dict], fairsync_batch: int) -> None:
    """Exposure per group over the stream divided by its pro-rata minimum, for plain top-K and
    FairSync at the configured B: a line below 1 is a group short of its minimum."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (method, batch) in zip(axes, [("topk", 64), ("fairsync", fairsync_batch)]):
        rows = [r for r in exposure_rows if r["method"] == method and r["batch_size"] == batch]
        for group in sorted({r["group"] for r in rows}):
            mine = [r for r in rows if r["group"] == group and r["due"] > 0]
            ax.plot([r["requests"] for r in mine], [r["exposure"] / r["due"] for r in mine], lw=1)
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set_title(f"{method} (B={batch})")
        ax.set_xlabel("requests served")
        ax.set_ylim(0, 3)
    axes[0].set_ylabel("exposure / pro-rata minimum (one line per group)")
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
