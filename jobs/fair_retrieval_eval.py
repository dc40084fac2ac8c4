"""Evaluate the fair retriever: replay held-out users as the request stream through the shard
and dual-vector actors, for FairSync and the baselines, and for FairSync over a range of batch
sizes B.

    python jobs/fair_retrieval_eval.py --config configs/retrieval_ml100k.yaml
    python jobs/fair_retrieval_eval.py --config configs/retrieval_skewed.yaml

Writes a folder with results.parquet (one row per method and B: Recall/NDCG/HR@K, ESP, fill,
worst group's share of its minimum, ms per request), exposure.parquet (exposure per group after
every batch), results.md (the table), exposure.png and batch_size.png; with ``--report PAGE.md``
also a results page for the documentation site.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from cluster.retrieval.catalog import Catalog, RequestStream
from cluster.retrieval.fairsync import ExposureTargets, exposure_satisfaction
from cluster.retrieval.list_metrics import exposure_shortfall, list_metrics
from cluster.retrieval.policies import configured, exposure_targets, make_policy
from cluster.rng import stream as rng_stream
from cluster.storage import Storage
from configs import SimConfig
from configs.retrieval_policy import FairSyncPolicy, KNeighborPolicy, MinRegularizerPolicy, PolicyConfig, TopKPolicy
from jobs.lib.cli import (
    first_paragraph,
    add_storage_argument,
    config_parser,
    load_or_exit,
    run_guarded,
    with_storage,
)
from jobs.lib.results_page import add_report_argument
from jobs.lib.retrieval_report import recall_intervals

# Each baseline with the batch it replays requests in: top-K never updates, so any batch serves it.
BASELINES = ((TopKPolicy(), 64), (KNeighborPolicy(), 1), (MinRegularizerPolicy(), 1))


@dataclass(frozen=True)
class ReplayInputs:
    """What every method is replayed over: the catalogue, the request stream, the exposure
    targets its policy works towards, and K items per request."""

    catalog: Catalog
    requests: RequestStream
    targets: ExposureTargets
    k: int


def methods(cfg: SimConfig, batch_sizes: list[int]) -> list[tuple[PolicyConfig, int]]:
    """The baselines (the configured one with its settings), then FairSync at the configured B
    and every B of the sweep (each once)."""
    fairsync = configured(cfg.retrieval, FairSyncPolicy())
    sizes = sorted(set(batch_sizes) | {fairsync.batch_size})
    return [(configured(cfg.retrieval, policy), batch) for policy, batch in BASELINES] + [(fairsync, b) for b in sizes]


def evaluate(cfg: SimConfig, catalog, requests, folder: Storage, batch_sizes: list[int]) -> tuple[list[dict], list[dict]]:
    """Every method over one set of shard actors (they hold no policy: each method brings its own
    dual-vector actor, and the shards forget the previous one's μ)."""
    import ray

    from actors.retrieval_factory import save_partitions, start_shards
    from cluster.bootstrap import init_ray

    started_ray = init_ray(address=None)
    r = cfg.retrieval
    targets = exposure_targets(r, catalog.n_groups, r.horizon or len(requests))
    save_partitions(r, catalog, folder / "shards", rng_stream(cfg.seed, "partition"))
    rows, exposure_rows, shards, hits = [], [], [], []
    try:
        shards = start_shards(r, catalog.n_groups, folder / "shards", name_prefix="eval-")
        inputs = ReplayInputs(catalog, requests, targets, r.k)
        for index, (policy, batch) in enumerate(methods(cfg, batch_sizes)):
            result = _replay_method(policy, batch, inputs, shards, folder / f"state-{index}", f"eval{index}-")
            rows.append(_row(policy.kind, batch, result, requests, targets))
            hits.append(_hits(result.served, requests.heldout))
            exposure_rows += _exposure_rows(policy.kind, batch, result, targets, catalog.group_names)
            print(_line(rows[-1]), flush=True)
    finally:
        for shard in shards:
            ray.kill(shard, no_restart=True)
        if started_ray:
            ray.shutdown()
    recall_intervals(rows, hits)
    return rows, exposure_rows


def _replay_method(policy: PolicyConfig, batch: int, inputs: ReplayInputs, shards: list, state: Storage, prefix: str):
    """``policy`` replayed over ``inputs`` in batches of ``batch``, through ``shards`` (made to forget
    the previous method's μ) and a dual-vector actor of its own, kept in ``state``, named with
    ``prefix`` and killed afterwards."""
    import ray

    from actors.retrieval_coordinator import Coordinator
    from actors.retrieval_factory import start_dual
    from jobs.lib.retrieval_replay import replay

    ray.get([s.forget_mu.remote() for s in shards])
    dual = start_dual(make_policy(policy, inputs.targets, batch=batch), shards, state, name_prefix=prefix)
    try:
        ray.get(dual.ready.remote())
        coordinator = Coordinator(shards, dual, inputs.catalog.item_groups)
        return replay(coordinator, inputs.catalog, inputs.requests, inputs.k, batch)
    finally:
        ray.kill(dual, no_restart=True)


def _row(policy: str, batch: int, result, requests, targets) -> dict:
    final = result.exposure[-1]
    return {
        "method": policy, "batch_size": batch, **list_metrics(result.served, requests.heldout[: len(result.served)]),
        **exposure_satisfaction(final, targets, int(result.requests_done[-1])),
        "worst_group_share": exposure_shortfall(final, targets.m * result.requests_done[-1] / targets.horizon),
        "ms_per_request": float(result.batch_ms.sum() / result.requests_done[-1]),
        "ms_per_batch_p50": float(np.median(result.batch_ms)), "partial_batches": result.partial,
        "requests": len(result.served),
    }


def _hits(served: np.ndarray, heldout: np.ndarray) -> np.ndarray:
    """1.0 where a request's list holds its held-out item (Recall@K of one request)."""
    return (served == heldout[: len(served), None]).any(axis=1).astype(np.float64)


def _exposure_rows(policy: str, batch: int, result, targets, names: list[str]) -> list[dict]:
    rows = []
    for done, exposure in zip(result.requests_done, result.exposure):
        due = targets.m * done / targets.horizon
        rows += [{"method": policy, "batch_size": batch, "requests": int(done), "group": names[g],
                  "exposure": float(exposure[g]), "due": float(due[g])} for g in range(len(names))]
    return rows


def _line(row: dict) -> str:
    return (f"{row['method']:>16} B={row['batch_size']:<4d} recall@K {row['recall']:.4f}  NDCG@K {row['ndcg']:.4f}  "
            f"ESP {row['esp']:.3f}  fill {row['fill']:.3f}  worst {row['worst_group_share']:.2f}  "
            f"{row['ms_per_request']:.2f} ms/request")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = config_parser(first_paragraph(__doc__), default_config="configs/retrieval_ml100k.yaml")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32,64,128,256,512",
                        help="FairSync batch sizes B to sweep (default: %(default)s)")
    add_storage_argument(parser)
    add_report_argument(parser)
    args = parser.parse_args(argv)
    cfg = with_storage(load_or_exit(args), args.storage)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    from jobs.lib.outputs import new_run_dir, write_resolved_config
    from jobs.lib.results_page import command_line, load_line
    from jobs.lib.retrieval_report import results_page, write_report
    from jobs.lib.retrieval_source import load_or_train_catalog

    catalog, requests, run_dir = load_or_train_catalog(cfg)
    source = f"{cfg.model.kind} vectors from run {run_dir.name}" if run_dir else f"{cfg.retrieval.source} vectors"
    setting = (f"{len(catalog.item_ids):,} items in {catalog.n_groups} groups, {len(requests):,} requests, "
               f"K={cfg.retrieval.k}, exposure_share={cfg.retrieval.exposure_share}, {cfg.retrieval.n_shards} shards, "
               f"{source}")
    print(setting + (f" ({run_dir})" if run_dir else ""))
    folder = new_run_dir(cfg, "retrieval")
    write_resolved_config(folder, cfg)
    load_at_start = load_line()
    rows, exposure_rows = evaluate(cfg, catalog, requests, folder, batch_sizes)
    write_report(folder, cfg, rows, exposure_rows)
    print(f"wrote {folder}")
    if args.report:
        page = results_page(cfg, rows, exposure_rows, command_line(argv, program="jobs/fair_retrieval_eval.py"),
                            setting, (load_at_start, load_line()))
        print(f"wrote {page.write(args.report)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
