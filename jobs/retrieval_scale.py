"""The fair retriever over a catalogue larger than a replica should hold: one shard actor per
partition on the cluster's nodes, each loading its partition's stored index from the storage.

    python jobs/retrieval_scale.py --address HEAD:6379 --storage /mnt/nfs/fairfleet \\
        --items 10000000 --dim 64 --shards 8 --index ivf_rq --nlist 1024 --nprobe 256 --overfetch 8 \\
        --concurrency 16 --duration 30 --report docs/results/retriever-10m.md

In order, each step timed:

1. the catalogue's partitions written to the storage, unless an earlier run with the same
   settings wrote them (the folder is the Serve application's, named by the config);
2. one shard actor per partition (``--shard-cpus`` each, so they go where the CPUs are), which
   builds its index and stores it beside its partition, or loads it where an earlier run stored
   it: time to ready, built or loaded, and each shard process's peak memory;
3. recall@K of the shards' merged answers with a non-zero μ against the exact top-K, which this
   job computes partition by partition from the stored files (never the whole catalogue at once);
4. every shard stopped and started again: each loads its index (time to ready, peak memory);
5. the service over HTTP (Ray Serve, ``search_in: shard_actors``, its proxy on the head node):
   wrk at each ``--concurrency``, then Serve's floor (``serve/echo.py``) at the same.

Every file goes through ``--storage``: on a cluster of several nodes, one every node reaches.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import time
from typing import Optional, Sequence

import numpy as np

from configs import SimConfig
from jobs.lib.cli import add_catalogue_arguments, add_storage_argument, first_paragraph
from jobs.lib.results_page import add_report_argument


def scale_config(args: argparse.Namespace) -> SimConfig:
    index = {"kind": args.index, **{key: value for key, value in (("nlist", args.nlist), ("nprobe", args.nprobe),
                                                                  ("overfetch", args.overfetch)) if value is not None}}
    return SimConfig.model_validate({
        "name": "retrieval-scale", "storage": args.storage,
        "retrieval": {"source": "synthetic", "n_shards": args.shards, "search_in": "shard_actors",
                      "shard_num_cpus": args.shard_cpus, "index": index, "k": args.k, "max_k": max(100, args.k),
                      "policy": {"kind": "fairsync", "batch_size": 32, "lr": 0.5}, "exposure_share": 0.5,
                      "synthetic": {"n_items": args.items, "n_users": args.users, "dim": args.dim, "n_groups": 8}},
    })


def write_partitions(cfg: SimConfig) -> dict:
    """The partitions in the application's folder (drawn and written only when missing) and the
    query vectors: the first ``--users`` users of the same synthetic draw."""
    from actors.retrieval_factory import save_partitions, saved_partitions
    from cluster.rng import stream
    from jobs.lib.retrieval_source import load_or_train_catalog
    from serve.backend import backend_folder

    folder = backend_folder(cfg) / "shards"
    started = time.perf_counter()
    catalog, _, _ = load_or_train_catalog(cfg, with_requests=False)
    drawn = time.perf_counter() - started
    found = saved_partitions(folder) == cfg.retrieval.n_shards
    if not found:
        save_partitions(cfg.retrieval, catalog, folder, stream(cfg.seed, "partition"))
    step = {"folder": str(folder), "found": found, "draw_s": drawn, "write_s": time.perf_counter() - started - drawn,
            "n_groups": catalog.n_groups, "users": catalog.user_vectors}
    print(f"partitions: {'found' if found else 'written'} in {folder} ({step['draw_s']:.0f} s to draw the "
          f"catalogue, {step['write_s']:.0f} s to write)", flush=True)
    return step


def start_timed(cfg: SimConfig, n_groups: int, label: str) -> tuple[list, dict]:
    """The shard actors, started and waited for: each one's ready() and memory(), and the wall time."""
    import ray

    from actors.retrieval_factory import start_shards
    from serve.backend import backend_folder

    started = time.perf_counter()
    shards = start_shards(cfg.retrieval, n_groups, backend_folder(cfg) / "shards", name_prefix="scale-")
    ready = ray.get([s.ready.remote() for s in shards])
    wall = time.perf_counter() - started
    memory = ray.get([s.memory.remote() for s in shards])
    rows = [{**r, **m} for r, m in zip(ready, memory)]
    how = sorted({r["index"] for r in rows})
    peak = max(r["peak_rss"] for r in rows)
    print(f"{label}: {len(shards)} shards ready in {wall:.0f} s (index {'/'.join(how)}; slowest shard "
          f"{max(r['index_seconds'] for r in rows):.0f} s), peak memory of a shard process {peak / 2**30:.2f} GiB",
          flush=True)
    return shards, {"wall_s": wall, "shards": rows}


def stop(shards: list, timeout_s: float = 60) -> None:
    """Kill the shard actors and wait until their names are free for the next start."""
    import ray

    names = [ray.get(s.ready.remote())["name"] for s in shards]
    for shard in shards:
        ray.kill(shard, no_restart=True)
    deadline = time.monotonic() + timeout_s
    for name in names:
        while time.monotonic() < deadline:
            try:
                ray.get_actor(f"scale-{name}")
            except ValueError:
                break
            time.sleep(0.2)


def exact_top_k(folder, n_shards: int, queries: np.ndarray, mu: np.ndarray, k: int) -> np.ndarray:
    """The exact top-k item ids by s − μ_g, partition file by partition file, in chunks."""
    from actors.retrieval_factory import shard_name
    from cluster.retrieval.partitions import Partition

    best_ids = np.full((len(queries), 0), -1, dtype=np.int64)
    best = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    for i in range(n_shards):
        part = Partition.load(folder, f"{shard_name(i)}.npz")
        for lo in range(0, len(part.item_ids), 200_000):
            scores = queries @ part.vectors[lo:lo + 200_000].T - mu[part.groups[lo:lo + 200_000]].astype(np.float32)
            ids = np.broadcast_to(part.item_ids[lo:lo + 200_000], scores.shape)
            best = np.concatenate([best, scores], axis=1)
            best_ids = np.concatenate([best_ids, ids], axis=1)
            keep = np.argpartition(-best, k - 1, axis=1)[:, :k]
            best, best_ids = np.take_along_axis(best, keep, 1), np.take_along_axis(best_ids, keep, 1)
    return best_ids


def recall(cfg: SimConfig, shards: list, folder, users: np.ndarray, n_queries: int, k: int) -> dict:
    """Recall@k of the shards' merged answers against the exact top-k, both with a non-zero μ."""
    import ray

    from cluster.retrieval.shard_index import merge_top_k
    from cluster.rng import stream

    n_groups = cfg.retrieval.synthetic.n_groups
    mu = -np.linspace(0.0, 1.0, n_groups)
    queries = users[stream(0, "bench_queries").integers(0, len(users), n_queries)].astype(np.float32)
    started = time.perf_counter()
    answers = ray.get([s.search.remote(queries, k, mu, 1) for s in shards])
    served = merge_top_k([hits for hits, _ in answers], k).items
    search_s = time.perf_counter() - started
    exact = exact_top_k(folder, cfg.retrieval.n_shards, queries, mu, k)
    value = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(served, exact)]))
    print(f"recall@{k} against exact ({n_queries} queries, mu != 0): {value:.4f}; the shards answered them in "
          f"{search_s:.1f} s (one batch)", flush=True)
    return {"recall": value, "queries": n_queries, "batch_s": search_s}


def http(cfg: SimConfig, args: argparse.Namespace) -> dict:
    """(c) the retriever and (d) Serve's floor at each concurrency, Serve's proxy on the head node."""
    from ray import serve

    from cluster.ports import free_port
    from jobs.bench_retrieval import _load_level
    from serve.echo import RetrieveEcho
    from serve.retriever import FairRetriever

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    logs = {"enable_access_log": False}
    rows, floors = [], []
    try:
        started = time.perf_counter()
        serve.run(FairRetriever.bind(cfg, "scale-http-"), name="scale-retriever", route_prefix="/",
                  logging_config=logs)
        up_s = time.perf_counter() - started
        print(f"the retriever answers over HTTP {up_s:.0f} s after serve.run (its shards loading their indexes)",
              flush=True)
        for concurrency in args.concurrency:
            rows.append({**_load_level(args, url, f"(c) HTTP via Serve, concurrency {concurrency}", concurrency),
                         "concurrency": concurrency})
        serve.delete("scale-retriever")
        serve.run(RetrieveEcho.bind(), name="scale-echo", route_prefix="/", logging_config=logs)
        for concurrency in args.concurrency:
            floors.append({**_load_level(args, url, f"(d) Serve floor (echo), concurrency {concurrency}",
                                         concurrency), "concurrency": concurrency})
    finally:
        serve.shutdown()
    return {"up_s": up_s, "http": rows, "floor": floors}


def cluster_line() -> str:
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"]]
    cpus = [int(n["Resources"].get("CPU", 0)) for n in nodes]
    return f"{len(nodes)} Ray nodes, CPUs per node {cpus}"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=first_paragraph(__doc__))
    parser.add_argument("--address", help="the Ray cluster (HEAD:6379, or auto); default: start one on this machine")
    add_storage_argument(parser)
    add_catalogue_arguments(parser, queries=256)
    parser.add_argument("--index", choices=["flat", "ivf", "ivf_rq", "hnsw"], default="ivf_rq",
                        help="each shard's FAISS index (default: %(default)s)")
    parser.add_argument("--nlist", type=int, help="ivf, ivf_rq: lists per shard (default: the config's)")
    parser.add_argument("--nprobe", type=int, help="ivf, ivf_rq: lists scanned per query (default: the config's)")
    parser.add_argument("--overfetch", type=int, help="approximate kinds: candidates = overfetch x K")
    parser.add_argument("--shard-cpus", type=float, default=0.25,
                        help="CPUs Ray reserves per shard actor: > 0 keeps shards off a head started with no CPUs "
                             "(default: %(default)s)")
    parser.add_argument("--concurrency", default="16",
                        help="HTTP clients at once, one level per comma-separated value (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of wrk load per level")
    add_report_argument(parser)
    args = parser.parse_args(argv)
    if not args.storage:
        parser.error("--storage is required: the partitions and their indexes are kept there for the next run")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.load, args.access_log, args.http_requests = "wrk", False, 0
    from jobs.lib.wrk_load import WrkMissing, wrk_binary

    try:
        wrk_binary()
    except WrkMissing as exc:
        parser.error(str(exc))
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    import ray

    from cluster.bootstrap import init_ray
    from jobs.lib.results_page import command_line, load_line
    from serve.backend import backend_folder

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    cfg = scale_config(args)
    started_ray = init_ray(address=args.address)
    result: dict = {"settings": vars(args).copy(), "index": cfg.retrieval.index.model_dump(), "loads": [load_line()]}
    try:
        result["cluster"] = cluster_line()
        print(result["cluster"], flush=True)
        step = write_partitions(cfg)
        users = step.pop("users")
        result["partitions"] = step
        shards, result["first_start"] = start_timed(cfg, step["n_groups"], "first start")
        result["recall"] = recall(cfg, shards, backend_folder(cfg) / "shards", users, args.queries, args.k)
        stop(shards)
        shards, result["restart"] = start_timed(cfg, step["n_groups"], "restart")
        stop(shards)
        try:
            result["serving"] = http(cfg, args)
        except Exception as exc:  # noqa: BLE001 - the steps above are still worth their page
            result["serving"] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"serving over HTTP failed: {result['serving']['error']}", file=sys.stderr, flush=True)
        result["loads"].append(load_line())
    finally:
        if started_ray:
            ray.shutdown()
    if args.report:
        from jobs.lib.retrieval_scale_page import scale_page

        page = scale_page(result, command_line(argv, program="jobs/retrieval_scale.py"))
        print(f"wrote {page.write(args.report)}")
    return 1 if "error" in result["serving"] else 0


if __name__ == "__main__":
    sys.exit(main())
