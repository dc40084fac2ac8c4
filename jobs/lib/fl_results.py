"""Result tables of an FL run, each with an explicit pyarrow schema and the config hash and
seed in every row, plus the console progress line and final table."""

from __future__ import annotations

import math
import platform
from importlib import metadata
from typing import Optional

import pyarrow as pa

ROUND_FIELDS = [
    ("round", pa.int32()), ("sim_round_s", pa.float64()), ("sim_time_s", pa.float64()), ("wall_s", pa.float64()),
    ("client_updates", pa.int32()), ("client_updates_per_s", pa.float64()), ("train_loss", pa.float64()),
    ("upload_rows", pa.int64()), ("selected", pa.int32()), ("dropped", pa.int32()), ("failed", pa.int32()),
    ("aggregated", pa.int32()), ("hr10", pa.float64()), ("ndcg10", pa.float64()), ("hr10_std", pa.float64()),
    ("ndcg10_std", pa.float64()), ("evaluated_clients", pa.int32()), ("auc", pa.float64()), ("auc_rows", pa.int64()),
    ("upload_mb", pa.float64()),
    ("plan_s", pa.float64()), ("train_s", pa.float64()), ("aggregate_s", pa.float64()), ("eval_s", pa.float64()),
]
TIER_FIELDS = [
    ("round", pa.int32()), ("tier", pa.string()), ("selected", pa.int32()), ("dropped", pa.int32()),
    ("failed", pa.int32()), ("aggregated", pa.int32()), ("hr10", pa.float64()), ("ndcg10", pa.float64()),
    ("auc", pa.float64()),
]
TIER_KEYS = ("selected", "dropped", "failed", "aggregated", "hr10", "ndcg10", "auc")
_IDENTITY = [("config_hash", pa.string()), ("seed", pa.int64())]


def _column(rows: list[dict], key: str, kind: pa.DataType) -> pa.Array:
    missing = float("nan") if pa.types.is_floating(kind) else None
    return pa.array([row.get(key, missing) for row in rows], kind)


def rounds_table(history: list[dict], config_hash: str, seed: int) -> pa.Table:
    """ROUND_FIELDS, plus a fairness mitigation's per-tier fields (CEAG: lambda_<tier>, psi_<tier>)
    and a privacy mechanism's (dp_epsilon, dp_delta, ...), secure aggregation's (secagg_dropped, ...)
    and asynchronous mode's (staleness_mean, staleness_mean_<tier>, in_flight)."""
    extra = sorted({k for row in history for k in row
                    if k.startswith(("lambda_", "psi_", "dp_", "secagg_", "staleness_", "in_flight", "applied_weight_",
                                       "sample_weight_"))})
    schema = pa.schema(ROUND_FIELDS + [(k, pa.float64()) for k in extra] + _IDENTITY)
    rows = [{**row, "config_hash": config_hash, "seed": seed} for row in history]
    return pa.table([_column(rows, f.name, f.type) for f in schema], schema=schema)


def tiers_table(history: list[dict], tier_names: tuple[str, ...], config_hash: str, seed: int) -> pa.Table:
    schema = pa.schema(TIER_FIELDS + _IDENTITY)
    rows = []
    for record in history:
        for tier in tier_names:
            rows.append({
                "round": record["round"], "tier": tier, "config_hash": config_hash, "seed": seed,
                **{key: record.get(f"{key}_{tier}", float("nan")) for key in TIER_KEYS},
            })
    return pa.table([_column(rows, f.name, f.type) for f in schema], schema=schema)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("fairfleet", "ray", "torch", "numpy", "pyarrow", "pydantic", "faiss-cpu"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _fmt(value: float, spec: str = ".4f") -> str:
    return "   -  " if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


METRIC_LABELS = {"hr10": "HR@10", "ndcg10": "NDCG@10", "auc": "AUC"}


def progress_line(record: dict, total_rounds: int, tier_names: tuple[str, ...],
                  metrics: tuple[str, ...] = ("hr10", "ndcg10")) -> str:
    dropped = " ".join(f"{t}={record[f'dropped_{t}'] + record[f'failed_{t}']}" for t in tier_names)
    shown = " | ".join(f"{METRIC_LABELS[m]} {_fmt(record.get(m, float('nan')))}" for m in metrics)
    privacy = f" | ε {record['dp_epsilon']:.2f}" if "dp_epsilon" in record else ""
    return (f"round {record['round']:>4}/{total_rounds} | sim {record['sim_time_s']:9.1f} s | "
            f"loss {_fmt(record['train_loss'])} | {shown}{privacy} | dropped {dropped} | "
            f"{record['client_updates_per_s']:,.0f} upd/s")


def _final_rows(history: list[dict], tier_names: tuple[str, ...], metrics: tuple[str, ...]):
    """(tier, last evaluated values, selected, dropped, failed) for "all" and each tier."""
    last = next((r for r in reversed(history) if metrics[0] in r), {})
    total = lambda key: sum(r.get(key, 0) for r in history)  # noqa: E731
    for tier in ("all", *tier_names):
        suffix = "" if tier == "all" else f"_{tier}"
        yield (tier, [last.get(m + suffix) for m in metrics], total("selected" + suffix), total("dropped" + suffix),
               total("failed" + suffix))


def final_table(history: list[dict], tier_names: tuple[str, ...], metrics: tuple[str, ...] = ("hr10", "ndcg10")) -> str:
    """Last evaluation per tier, with selection totals over the whole run."""
    last = next((r for r in reversed(history) if metrics[0] in r), {})
    header = "".join(f"{METRIC_LABELS[m]:>9}" for m in metrics)
    lines = [f"{'tier':<8}{header}{'selected':>10}{'dropped':>9}{'failed':>8}"]
    for tier, values, selected, dropped, failed in _final_rows(history, tier_names, metrics):
        shown = "".join(f"{_fmt(v):>9}" for v in values)
        lines.append(f"{tier:<8}{shown}{selected:>10,}{dropped:>9,}{failed:>8,}")
    spread = [m for m in metrics if f"{m}_std" in last]
    if spread:
        lines.append("std across clients: " + ", ".join(f"{METRIC_LABELS[m]} {_fmt(last.get(m + '_std'))}" for m in spread))
    return "\n".join(lines)


def final_markdown(history: list[dict], tier_names: tuple[str, ...],
                   metrics: tuple[str, ...] = ("hr10", "ndcg10")) -> str:
    """final_table as a Markdown table, naming the round the quality was measured at."""
    last = next((r for r in reversed(history) if metrics[0] in r), {})
    labels = [METRIC_LABELS.get(m, m) for m in metrics]
    lines = ["| tier | " + " | ".join(labels) + " | selected | dropped | failed |",
             "|---|" + "---:|" * (len(metrics) + 3)]
    for tier, values, selected, dropped, failed in _final_rows(history, tier_names, metrics):
        shown = " | ".join(_fmt(v).strip() for v in values)
        lines.append(f"| {tier} | {shown} | {selected:,} | {dropped:,} | {failed:,} |")
    if last:
        lines += ["", f"Held-out quality at round {last['round']}, the last evaluation; selected, dropped and "
                      "failed clients are summed over all rounds."]
    spread = [m for m in metrics if f"{m}_std" in last]
    if spread:
        lines.append("Standard deviation across clients: "
                     + ", ".join(f"{METRIC_LABELS.get(m, m)} {_fmt(last.get(m + '_std'))}" for m in spread) + ".")
    return "\n".join(lines) + "\n"


def chance_note(history: list[dict], n_negatives: int) -> Optional[str]:
    """A line for a run whose final quality is still near what random scores give, saying so and
    why: a short run of an embedding model ranks at chance until its item vectors spread out."""
    last = next((r for r in reversed(history) if "hr10" in r or "auc" in r), None)
    if last is None:
        return None
    if "hr10" in last:
        chance = min(1.0, 10 / (n_negatives + 1))
        value, label, what = last["hr10"], "HR@10", f"10 of the {n_negatives + 1} candidates"
    else:
        chance, value, label, what = 0.5, last["auc"], "AUC", "a coin flip"
    if not math.isfinite(value) or value > 1.25 * chance:
        return None
    return (f"note: final {label} {value:.4f} is near chance ({chance:.2f}, {what}): the item embeddings start "
            f"random and a run needs some rounds before it learns (the demo about 10); add rounds with "
            f"--set fl.rounds=N")
