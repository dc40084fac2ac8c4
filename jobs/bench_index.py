"""Compare the fair retriever's shard index kinds side by side, in-process (no Ray, no HTTP).

    python jobs/bench_index.py [--items 1000000 --dim 64 --shards 4] [--kinds flat,ivf,ivf_rq,hnsw]

The synthetic catalogue of jobs/bench_retrieval.py (8 groups, group 0 disliked) is split into
``--shards`` partitions as the retriever splits it, and every kind builds one ShardIndex per
partition. μ is not made up: for each ``--exposure-shares`` value FairSync's dual vector (the
DualVector the retriever runs, batch 32, lr 0.5, Adam) learns it from ``--dual-requests``
requests served by exact search over the first partition, and the average of its second-half
iterates is used (the iterates themselves keep hitting 0 under the projection).

Printed per kind: build seconds (all shards, one thread), recall@K of the merged sharded top-K
against exact flat search of the same adjusted score s − μ under each learned μ, queries/s at
batch 64 on one thread (every shard searched in turn, then merged; shard actors search in
parallel) under the first μ, memory per shard (the serialized FAISS index plus the float vectors
kept for the exact re-score where the index does not hold them), and each against flat.

    python jobs/bench_index.py --mu-sweep [--kinds ivf,ivf_rq,hnsw] [--fetch-by per_group,adjusted,relevance]
    python jobs/bench_index.py --check [--min-recall 0.9]

``--mu-sweep`` measures recall@K of every fetch way over a sweep of μ instead (cluster/retrieval/
mu_sweep.py: one low-scoring group lifted from 0 to 4σ, and a constant added to every μ), on a
6,000 x 16 catalogue of 4 clustered groups, one shard, a quarter of the lists probed
(nlist 64, nprobe 16) and over-fetch 4 unless told otherwise; each way's minimum over the sweep
and its queries per CPU-second (batch 64, one FAISS thread, at lift 1.25σ) close the table.
``--check`` builds each kind's default way only and exits 1 when its minimum is below
``--min-recall``. ``--report PAGE.md`` also writes the table, or the sweep's, as a results page
for the documentation site.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import gc
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from configs.schema import RetrievalConfig, SyntheticEmbeddingsConfig
from jobs.lib.cli import add_catalogue_arguments, first_paragraph
from jobs.lib.results_page import add_report_argument, command_line, load_line

KINDS = ("flat", "ivf", "ivf_rq", "hnsw")
N_GROUPS = 8
FETCH_WAYS = ("per_group", "adjusted", "relevance")
EXIT_BELOW_RECALL = 1
# --mu-sweep and --check: a catalogue small enough to sweep in seconds, a quarter of the lists probed
SWEEP_DEFAULTS = {"items": 6_000, "dim": 16, "shards": 1, "queries": 1_000, "nlist": 64, "overfetch": 4,
                  "kinds": "ivf,ivf_rq", "groups": 4}
SWEEP_TIMED_AT = "lift 1.25σ"


def learned_mu(shard, catalog, share: float, requests: int, k: int, seed: int) -> np.ndarray:
    """FairSync's μ for exposure share ``share``: the dual vector driven by exact answers."""
    from cluster.retrieval.fairsync import slots_per_group
    from cluster.retrieval.policies import exposure_targets, make_policy
    from cluster.rng import stream

    cfg = RetrievalConfig(source="synthetic", k=k, exposure_share=share, policy={"kind": "fairsync", "batch_size": 32, "lr": 0.5})
    policy = make_policy(cfg.policy, exposure_targets(cfg, catalog.n_groups, requests))
    users = stream(seed, "bench_index_duals").integers(0, len(catalog.user_vectors), requests)
    iterates = []
    for lo in range(0, requests, cfg.policy.batch_size):
        shard.set_mu(policy.mu)
        hits = shard.search(catalog.user_vectors[users[lo:lo + cfg.policy.batch_size]], k)
        policy.observe(slots_per_group(hits.items, catalog.item_groups, catalog.n_groups), len(hits.items))
        iterates.append(policy.mu)
    shard.set_mu(np.zeros(catalog.n_groups))
    return np.mean(iterates[len(iterates) // 2:], axis=0).astype(np.float32)


def sharded_search(shards, queries: np.ndarray, mu: np.ndarray, k: int, batch: int) -> tuple[np.ndarray, float]:
    """(merged top-k item ids, queries/s) with every shard searched in turn on this thread."""
    from cluster.retrieval.shard_index import merge_top_k

    for shard in shards:
        shard.set_mu(mu)
    merge_top_k([s.search(queries[:batch], k) for s in shards], k)  # warm-up
    answers, started = [], time.perf_counter()
    for lo in range(0, len(queries), batch):
        answers.append(merge_top_k([s.search(queries[lo:lo + batch], k) for s in shards], k).items)
    return np.concatenate(answers), len(queries) / (time.perf_counter() - started)


def rescore_share(shard, queries: np.ndarray, k: int, batch: int) -> float:
    """The share of one shard's ``search`` at this batch spent after the index's fetch (the
    exact re-score and the answer's assembly); 0 for flat, which has no fetch step."""
    if shard.kind == "flat":
        return 0.0
    fetch = whole = 0.0
    for lo in range(0, len(queries), batch):
        part = queries[lo:lo + batch]
        started = time.perf_counter()
        shard.candidates(part, k)
        fetched = time.perf_counter()
        shard.search(part, k)
        fetch, whole = fetch + fetched - started, whole + time.perf_counter() - fetched
    return max(0.0, 1.0 - fetch / whole)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean(recall_per_query(found, exact)))


def recall_per_query(found: np.ndarray, exact: np.ndarray) -> np.ndarray:
    return np.array([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)])


def settings_for(kind: str, args: argparse.Namespace, fetch_by: str | None = None,
                 nprobe: int | None = None) -> RetrievalConfig:
    """The kind's index section from the command line (``nprobe``: one of ``--nprobe``'s, else
    the first); ``fetch_by`` None keeps the kind's default."""
    ivf = {"nlist": args.nlist, "nprobe": nprobe or args.nprobes[0], "overfetch": args.overfetch}
    index = {"flat": {}, "ivf": ivf, "ivf_rq": {**ivf, "rq_m": args.rq_m, "train_size": args.rq_train_size},
             "hnsw": {"m": args.hnsw_m, "ef_construction": args.hnsw_ef_construction,
                      "ef_search": args.hnsw_ef_search, "overfetch": args.hnsw_overfetch}}[kind]
    if fetch_by is not None and kind != "flat":
        index["fetch_by"] = fetch_by
    return RetrievalConfig(index={"kind": kind, **index})


def describe(cfg: RetrievalConfig) -> str:
    index = cfg.index
    return {"flat": lambda: "exact",
            "ivf": lambda: f"nlist {index.nlist}, nprobe {index.nprobe}, over-fetch x{index.overfetch}",
            "ivf_rq": lambda: f"nlist {index.nlist}, nprobe {index.nprobe}, over-fetch x{index.overfetch}, "
                              f"RQ {index.rq_m}x4 bits ({index.rq_m // 2} B/item), trained on {index.train_size:,}/shard",
            "hnsw": lambda: f"M {index.m}, efConstruction {index.ef_construction}, efSearch {index.ef_search} "
                            f"(whole beam re-scored), over-fetch x{index.overfetch}"}[index.kind]()


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=first_paragraph(__doc__))
    add_catalogue_arguments(parser, queries=1024)
    parser.add_argument("--mu-sweep", action="store_true",
                        help="recall of each fetch way over a sweep of mu; it and --check default to a small "
                             "catalogue: --items 6000 --dim 16 --shards 1 --queries 1000 --nlist 64 --overfetch 4 "
                             "--kinds ivf,ivf_rq --groups 4")
    parser.add_argument("--check", action="store_true",
                        help="the sweep for each kind's default way; exit 1 when its minimum recall is below "
                             "--min-recall")
    parser.add_argument("--min-recall", type=float, default=0.9,
                        help="--check: the lowest recall@K that passes (default: %(default)s)")
    parser.add_argument("--timing-rounds", type=int, default=5,
                        help="--mu-sweep: passes over the queries per way, the ways taking turns; the best is shown")
    parser.add_argument("--groups", type=int, default=N_GROUPS,
                        help="item groups, the first disliked (--mu-sweep: 4, the last disliked)")
    parser.add_argument("--batch", type=int, default=64,
                        help="queries per search call when timing (default: %(default)s)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="index kinds, comma-separated, of flat, ivf, ivf_rq, hnsw; flat always runs (the "
                             "reference) (default: %(default)s)")
    parser.add_argument("--exposure-shares", default="0.5,1.0",
                        help="one learned μ per share (m_g = share x T*K/G); the first also times the search")
    parser.add_argument("--dual-requests", type=int, default=4096,
                        help="requests FairSync's dual vector learns each mu from (default: %(default)s)")
    parser.add_argument("--nlist", type=int, default=256, help="ivf, ivf_rq: lists per shard")
    parser.add_argument("--nprobe", default=None, help="ivf, ivf_rq: lists scanned per query (default: a quarter of "
                                                       "--nlist); several, comma-separated, are measured on one build")
    parser.add_argument("--overfetch", type=int, default=8, help="ivf, ivf_rq: candidates = overfetch x K")
    parser.add_argument("--rq-m", type=int, default=64, help="ivf_rq: 4-bit codebooks per item")
    parser.add_argument("--rq-train-size", type=int, default=65_536, help="ivf_rq: training sample per shard")
    parser.add_argument("--hnsw-m", type=int, default=32, help="hnsw: neighbours per node, M (default: %(default)s)")
    parser.add_argument("--hnsw-ef-construction", type=int, default=80,
                        help="hnsw: beam width while building, efConstruction (default: %(default)s)")
    parser.add_argument("--hnsw-ef-search", type=int, default=512,
                        help="hnsw: beam width per query, efSearch (default: %(default)s)")
    parser.add_argument("--hnsw-overfetch", type=int, default=1,
                        help="hnsw: candidates = overfetch x K (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the catalogue, its partition and the queries (default: %(default)s)")
    parser.add_argument("--fetch-by", default="",
                        help="comma-separated: per_group (IVF lists of one group each, probed by s - mu), adjusted "
                             "(by s - mu through per-group columns), relevance (by s alone); each approximate kind "
                             "runs once per value it takes (default: each kind's own; --mu-sweep: all)")
    add_report_argument(parser)
    if "--mu-sweep" in argv or "--check" in argv:
        parser.set_defaults(**SWEEP_DEFAULTS)
    args = parser.parse_args(argv)
    args.kinds = ["flat"] + [k for k in args.kinds.split(",") if k and k != "flat"]
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; expected some of {KINDS}")
    args.exposure_shares = [float(s) for s in args.exposure_shares.split(",")]
    args.nprobes = [int(n) for n in args.nprobe.split(",")] if args.nprobe else [max(1, args.nlist // 4)]
    args.fetch_by = [f for f in args.fetch_by.split(",") if f] or [None]
    if set(args.fetch_by) - {*FETCH_WAYS, None}:
        parser.error(f"--fetch-by takes some of {FETCH_WAYS}, got {args.fetch_by}")
    if args.mu_sweep and args.fetch_by == [None]:
        args.fetch_by = list(FETCH_WAYS)
    return args


def ways_for(kind: str, fetch_by: list) -> list:
    """The fetch ways a kind runs: flat has none, and per_group lays out IVF lists."""
    if kind == "flat":
        return [None]
    return [way for way in fetch_by if not (kind == "hnsw" and way == "per_group")]


def draw_catalogue(args: argparse.Namespace):
    """(catalogue, its shard partitions, the queries, the spread of their scores)."""
    from cluster.retrieval.partitions import partition_items
    from cluster.retrieval.synthetic_embeddings import synthetic_catalog
    from cluster.rng import stream

    started = time.perf_counter()
    synthetic = SyntheticEmbeddingsConfig(n_items=args.items, n_users=args.users, dim=args.dim, n_groups=args.groups,
                                          disliked_group=0)
    catalog, _ = synthetic_catalog(synthetic, stream(args.seed, "synthetic_embeddings"), with_heldout=False)
    parts = partition_items(catalog.item_ids, catalog.item_vectors, catalog.item_groups, args.shards,
                            stream(args.seed, "partition"))
    queries = catalog.user_vectors[stream(args.seed, "bench_queries").integers(0, args.users, args.queries)]
    sigma = float(np.std(queries[:256] @ parts[0].vectors[:20_000].T))
    print(f"{args.items:,} items x dim {args.dim}, {args.groups} groups, {args.shards} shards "
          f"(~{args.items // args.shards:,} items each), K={args.k}, {args.queries} queries; vectors drawn in "
          f"{time.perf_counter() - started:.1f} s; one FAISS thread", flush=True)
    return catalog, parts, queries, sigma


def learn_mus(shard, catalog, sigma: float, args: argparse.Namespace) -> dict[float, np.ndarray]:
    """One learned μ per exposure share, on the exact index."""
    mus = {}
    for share in args.exposure_shares:
        started = time.perf_counter()
        mus[share] = learned_mu(shard, catalog, share, args.dual_requests, args.k, args.seed)
        print(f"mu learned at exposure share {share} ({args.dual_requests} requests, "
              f"{time.perf_counter() - started:.0f} s): [{', '.join(f'{m:.2f}' for m in mus[share])}] = "
              f"[{', '.join(f'{m:.2f}' for m in mus[share] / sigma)}] x sigma(scores) {sigma:.2f}", flush=True)
    return mus


@dataclass(frozen=True)
class Workload:
    """What every kind is measured on: the queries, FairSync's learned μ per exposure share, and
    flat's answers under each μ, the reference of the others' recall. Flat runs first and fills
    both dicts (μ from its ``on_built``, its answers as it measures them)."""

    queries: np.ndarray
    mus: dict
    exact: dict


def measure_kind(kind: str, parts, workload: Workload, args: argparse.Namespace, on_built=None,
                 fetch_by: str | None = None) -> list[dict]:
    """Build ``kind`` over every partition, then its recall against ``workload.exact`` (filled in
    when ``kind`` is flat), speed and memory: one row, or one per ``--nprobe`` for the IVF kinds
    (one build). ``on_built(shards)`` runs right after the build. ``fetch_by="adjusted"`` rows are
    labelled ``<kind>/adj``."""
    from cluster.retrieval.shard_index import IndexSettings, ShardIndex

    cfg = settings_for(kind, args, fetch_by)
    label = kind + {"adjusted": "/adj", "relevance": "/rel", "per_group": "/grp", None: ""}[fetch_by]
    gc.collect()
    started = time.perf_counter()
    settings = IndexSettings(**cfg.shard_index_settings())
    shards = [ShardIndex(p.item_ids, p.vectors, p.groups, args.groups, settings, seed=args.seed) for p in parts]
    build_s = time.perf_counter() - started
    if on_built is not None:
        on_built(shards)
    sweep = args.nprobes if kind in ("ivf", "ivf_rq") else [None]
    rows = []
    for nprobe in sweep:
        if nprobe is not None:
            for shard in shards:
                shard.set_nprobe(nprobe)
            cfg = settings_for(kind, args, fetch_by, nprobe)
        name = label if len(sweep) == 1 else f"{label} np{nprobe}"
        rows.append(measure_built(name, shards, cfg, build_s, workload, args))
    return rows


def measure_built(label: str, shards, cfg: RetrievalConfig, build_s: float, workload: Workload,
                  args: argparse.Namespace) -> dict:
    from cluster.fairness.stats import ci95_half_width

    recalls, halves, qps = [], [], None
    for share in args.exposure_shares:
        found, speed = sharded_search(shards, workload.queries, workload.mus[share], args.k, args.batch)
        qps = speed if qps is None else qps
        workload.exact.setdefault(share, found)
        per_query = recall_per_query(found, workload.exact[share])
        recalls.append(float(np.mean(per_query)))
        halves.append(ci95_half_width(per_query))
    share = rescore_share(shards[0], workload.queries, args.k, args.batch)
    memory = [s.memory_bytes() for s in shards]
    row = {"kind": label, "build_s": build_s, "recall": recalls, "recall_ci95": halves, "qps": qps,
           "index_mb": np.mean([m["index"] for m in memory]) / 2**20,
           "vectors_mb": np.mean([m["vectors"] for m in memory]) / 2**20,
           "memory_mb": np.mean([m["total"] for m in memory]) / 2**20, "rescore_share": share,
           "settings": describe(cfg)}
    print(f"{label:<10} built in {build_s:7.1f} s; recall@{args.k} "
          + ", ".join(f"{r:.4f} (share {s})" for r, s in zip(recalls, args.exposure_shares))
          + f"; {qps:,.0f} q/s; re-score {100 * share:.0f} % of a shard's search; {row['memory_mb']:.1f} MiB/shard"
          + f" — {row['settings']}", flush=True)
    return row


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    flat, shares = rows[0], args.exposure_shares
    recall_heads = " ".join(f"{'R@' + str(args.k) + ' s=' + str(s):>11}" for s in shares)
    print(f"\n{'kind':<10} {'build s':>8} {recall_heads} {'q/s b' + str(args.batch):>9} "
          f"{'MiB/shard':>10} {'(index':>7} {'+ floats)':>9} {'build/flat':>10} {'q/s/flat':>9} {'mem/flat':>9}")
    for row in rows:
        recalls = " ".join(f"{r:>11.4f}" for r in row["recall"])
        print(f"{row['kind']:<10} {row['build_s']:>8.1f} {recalls} {row['qps']:>9,.0f} {row['memory_mb']:>10.1f} "
              f"{row['index_mb']:>7.1f} {row['vectors_mb']:>9.1f} {row['build_s'] / max(flat['build_s'], 1e-9):>10.1f} "
              f"{row['qps'] / flat['qps']:>9.2f} {row['memory_mb'] / flat['memory_mb']:>9.2f}")
    from jobs.lib.index_page import best_row

    best = best_row(rows)
    if best is not None:
        print(f"\nbest approximate kind at exposure share {shares[0]}: {best['kind']} "
              f"(recall@{args.k} {best['recall'][0]:.4f}, {best['qps'] / flat['qps']:.1f}x flat's q/s)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = command_line(argv, program="jobs/bench_index.py")
    if args.mu_sweep or args.check:
        return run_mu_sweep(args, command)
    load_at_start = load_line()
    catalog, parts, queries, sigma = draw_catalogue(args)
    mus: dict = {}
    workload = Workload(queries, mus, exact={})
    # flat first: its μ per share and its answers are every other kind's reference
    learn = lambda shards: mus.update(learn_mus(shards[0], catalog, sigma, args))  # noqa: E731
    rows = measure_kind("flat", parts, workload, args, on_built=learn)
    rows += [row for kind in args.kinds[1:] for fetch_by in ways_for(kind, args.fetch_by)
             for row in measure_kind(kind, parts, workload, args, fetch_by=fetch_by)]
    print_table(rows, args)
    if args.report:
        from jobs.lib.index_page import kinds_page

        page = kinds_page(rows, args, mus, sigma, command, (load_at_start, load_line()))
        print(f"wrote {page.write(args.report)}")
    return 0


def run_mu_sweep(args: argparse.Namespace, command: str = "") -> int:
    """Recall@K of each kind and fetch way at every point of the μ sweep, its minimum and its
    q/s; with ``--check``, exit 1 when a kind's default way's minimum is below --min-recall."""
    from cluster.retrieval.mu_sweep import mu_sweep, skewed_world

    world = skewed_world(args.items, args.dim, args.groups, args.queries, args.seed)
    points = mu_sweep(world)
    print(f"{args.items:,} items x dim {args.dim}, {args.groups} groups (group {world.low_group} scored low by every "
          f"user), {args.shards} shard(s), K={args.k}, {args.queries} queries, sigma(scores) {world.sigma:.2f}; "
          f"ivf kinds: nlist {args.nlist}, nprobe {args.nprobes[0]}, over-fetch x{args.overfetch}; one FAISS thread",
          flush=True)
    columns = [sweep_column(kind, way, world, points, args)
               for kind in args.kinds for way in ways_for(kind, args.fetch_by)]
    time_columns(columns, world, dict(points)[SWEEP_TIMED_AT], args, args.timing_rounds)
    print_sweep(columns, points, args)
    code = check_minimum(columns, args) if args.check else 0
    if args.report:
        from jobs.lib.index_page import sweep_page

        page = sweep_page(columns, points, world, args, command, SWEEP_TIMED_AT,
                          check_verdicts(columns, args)[0] if args.check else None)
        print(f"wrote {page.write(args.report)}")
    return code


def sweep_column(kind: str, fetch_by: str | None, world, points: list, args: argparse.Namespace) -> dict:
    """One kind and fetch way: built once, its recall at every μ point."""
    from cluster.retrieval.mu_sweep import build_shards, sweep_recall
    from cluster.retrieval.shard_index import IndexSettings

    cfg = settings_for(kind, args, fetch_by)
    way = getattr(cfg.index, "fetch_by", None)
    default = way == getattr(settings_for(kind, args).index, "fetch_by", None)
    gc.collect()
    started = time.perf_counter()
    shards = build_shards(world, args.shards, IndexSettings(**cfg.shard_index_settings()), args.seed)
    build_s = time.perf_counter() - started
    recalls = sweep_recall(shards, world, args.k, points)
    label = kind if way is None else f"{kind}/{way}"
    print(f"{label:<16} built in {build_s:5.2f} s; min recall@{args.k} {min(recalls):.3f} — {describe(cfg)}",
          flush=True)
    return {"label": label, "kind": kind, "default": default, "recall": recalls, "build_s": build_s,
            "shards": shards}


def time_columns(columns: list[dict], world, mu: np.ndarray, args: argparse.Namespace, rounds: int) -> None:
    """Each column's queries per CPU-second of this process at ``mu``, batch by batch as the
    shards answer them: the best of ``rounds`` passes, the columns taking turns. CPU time, not
    wall time, so that other work on a shared machine does not count against a way."""
    from cluster.retrieval.mu_sweep import search_shards

    for column in columns:
        for shard in column["shards"]:
            shard.set_mu(mu)
        column["qps"] = 0.0
    for _ in range(rounds):
        for column in columns:
            started = time.process_time()
            for lo in range(0, len(world.queries), args.batch):
                search_shards(column["shards"], world.queries[lo:lo + args.batch], args.k)
            spent = max(time.process_time() - started, 1e-9)
            column["qps"] = max(column["qps"], len(world.queries) / spent)


def print_sweep(columns: list[dict], points: list, args: argparse.Namespace) -> None:
    width = max(16, *(len(c["label"]) + 1 for c in columns))
    heads = [f"{label:<26} [" + ", ".join(f"{m:.2f}" for m in mu) + "]" for label, mu in points]
    head_width = max(len(h) for h in heads) + 1

    def line(head: str, cell) -> None:
        print(f"{head:<{head_width}}" + "".join(cell(c) for c in columns))

    print()
    line(f"{'recall@' + str(args.k) + ' at mu':<26} mu", lambda c: f"{c['label']:>{width}}")
    for at, head in enumerate(heads):
        line(head, lambda c: f"{c['recall'][at]:>{width}.3f}")
    line("minimum", lambda c: f"{min(c['recall']):>{width}.3f}")
    line(f"q/CPU-s, batch {args.batch}, one FAISS thread", lambda c: f"{c['qps']:>{width},.0f}")
    line("build s", lambda c: f"{c['build_s']:>{width}.2f}")


def check_minimum(columns: list[dict], args: argparse.Namespace) -> int:
    lines, failed = check_verdicts(columns, args)
    for line in lines:
        print(f"check: {line}")
    return EXIT_BELOW_RECALL if failed else 0


def check_verdicts(columns: list[dict], args: argparse.Namespace) -> tuple[list[str], bool]:
    """One line per kind's default way (its minimum against --min-recall), and whether any is below."""
    failed = [c for c in columns if c["default"] and c["kind"] != "flat" and min(c["recall"]) < args.min_recall]
    lines = [f"{column['label']} (default) minimum recall@{args.k} over the mu sweep {min(column['recall']):.3f} "
             f"vs {args.min_recall}: {'BELOW' if column in failed else 'ok'}"
             for column in columns if column["default"] and column["kind"] != "flat"]
    return lines, bool(failed)


if __name__ == "__main__":
    sys.exit(main())
