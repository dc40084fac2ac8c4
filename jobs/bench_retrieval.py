"""Measure the speed of the fair retriever at scale: synthetic items over shards.

    apt-get install wrk   # the compiled HTTP load generator (Debian/Ubuntu package)
    python jobs/bench_retrieval.py [--items 1000000 --dim 64 --shards 4] [--index flat|ivf] [--proxy default|haproxy]
                                   [--search-in replica|shard_actors] [--load wrk|python] [--duration 30]
                                   [--concurrency 1,16,64] [--check]

(a) raw FAISS: one in-process index over every item (IndexFlatIP, or with ``--index ivf`` an
IndexIVFFlat with the shards' nlist and nprobe), one thread; (b) the fair search as the service
runs it, no HTTP: the coordinator searching the partitions in process (``--search-in replica``,
the default) or fanning each batch out to shard actors, and its exposure report acknowledged by
the dual-vector actor;
(c) HTTP through Ray Serve at several concurrencies (the ingress batches concurrent requests),
and (d) the floor under (c): a Serve deployment that parses the same body and answers at once,
under the same proxy and load generator (wrk, pinned to the last core, its CPU use printed; see
``jobs/lib/wrk_load.py``) — no retrieval, so what it costs is Serve's and the
machine's share. Prints queries per second, p50 and p99 latency, (b)/(a) and (c)/(d) in the same run;
``--report PAGE.md`` also writes them as a results page for the documentation site. Serve's
per-request access log is off for (c) and (d) alike, as in the shipped Serve configs
(``--access-log`` turns it on for both).

``--check`` compares the run with the speed goals (``GOALS``) and exits ``EXIT_GOAL_MISSED`` when
one is missed: HTTP throughput at least 0.7 of the floor's at concurrency 16 and 0.5 at 1, an HTTP
p99 at most twice the floor's at each concurrency, (b) at batch 1 (a search and its
acknowledged report) with a p50 of at most 3 ms, and HTTP throughput at concurrency 16 at least 0.8 of the CPU
bound: the machine's cores over a query's search CPU ((a) at batch 64) plus the machine's CPU per
request while (d) answers (``jobs/lib/serving_bound.py``). Every figure is a ratio within the run,
or ((b) at batch 1) a latency of the same run.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from typing import Optional, Sequence

import numpy as np

from configs import SimConfig
from jobs.lib.cli import add_catalogue_arguments, first_paragraph
from jobs.lib.haproxy_cleanup import haproxy_pids, stop_new_haproxies
from jobs.lib.results_page import add_report_argument

# --check: (c)/(d) throughput at least this at a concurrency; (c) p99 at most this x (d)'s; (b) p50 at batch 1.
# (c) at least this share of the CPU bound at a concurrency (jobs/lib/serving_bound.py).
GOALS = {"throughput_vs_floor": {16: 0.7, 1: 0.5}, "p99_vs_floor": 2.0, "fanout_p50_ms": 3.0,
         "throughput_vs_bound": {16: 0.8}}
EXIT_GOAL_MISSED = 3


def bench_config(args: argparse.Namespace, storage: Path) -> SimConfig:
    index = {"kind": args.index, **{key: value for key, value in (("nlist", args.nlist), ("nprobe", args.nprobe),
                                                                  ("overfetch", args.overfetch)) if value is not None}}
    return SimConfig.model_validate({
        "name": "bench-retrieval", "storage": str(storage),
        "retrieval": {"source": "synthetic", "n_shards": args.shards, "search_in": args.search_in, "index": index,
                      "k": args.k, "max_k": max(100, args.k),
                      "policy": {"kind": "fairsync", "batch_size": 32, "lr": 0.5}, "exposure_share": 0.5,
                      "synthetic": {"n_items": args.items, "n_users": args.users, "dim": args.dim, "n_groups": 8,
                                    "disliked_group": 0}},
    })


def summarize(label: str, latencies_ms: list[float], queries: int, wall_s: float) -> dict:
    lat = np.asarray(latencies_ms)
    row = {"path": label, "qps": queries / wall_s, "p50_ms": float(np.percentile(lat, 50)),
           "p99_ms": float(np.percentile(lat, 99)), "requests": queries}
    print(f"{label:<34} {row['qps']:>9,.0f} q/s   p50 {row['p50_ms']:7.2f} ms   p99 {row['p99_ms']:7.2f} ms", flush=True)
    return row


def raw_faiss(cfg: SimConfig, catalog, queries: np.ndarray, k: int, batches: Sequence[int]) -> dict[int, dict]:
    """One index over every item, built once and timed at each batch size."""
    import faiss

    faiss.omp_set_num_threads(1)
    r = cfg.retrieval
    kind = r.index.kind
    if kind in ("ivf_rq", "hnsw"):
        # The same index over every item as one partition (its exact re-score included, μ = 0).
        from cluster.retrieval.shard_index import IndexSettings, ShardIndex

        shard = ShardIndex(np.arange(len(catalog.item_ids)), catalog.item_vectors, catalog.item_groups,
                           catalog.n_groups, IndexSettings(**r.shard_index_settings()))
        return {b: _timed(f"(a) one {kind} index, batch {b}", lambda q: shard.search(q, k), queries, b)
                for b in batches}
    if kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(catalog.dim), catalog.dim, r.index.nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(catalog.item_vectors)
        index.nprobe = r.index.nprobe
    else:
        index = faiss.IndexFlatIP(catalog.dim)
    index.add(catalog.item_vectors)
    return {b: _timed(f"(a) raw FAISS {kind}, batch {b}", lambda q: index.search(q, k), queries, b) for b in batches}


def _timed(label: str, search, queries: np.ndarray, batch: int) -> dict:
    search(queries[:batch])  # warm-up
    latencies, started = [], time.perf_counter()
    for lo in range(0, len(queries), batch):
        t0 = time.perf_counter()
        search(queries[lo:lo + batch])
        latencies.append((time.perf_counter() - t0) * 1e3)
    return summarize(label, latencies, len(queries), time.perf_counter() - started)


def approximate_recall(cfg: SimConfig, catalog, queries: np.ndarray, k: int) -> float:
    """The shards' approximate index (over-fetch by relevance, exact re-score) against the exact
    flat search, both with a non-zero μ, per shard partition as the actors hold them: recall@K."""
    from cluster.retrieval.partitions import partition_items
    from cluster.retrieval.shard_index import IndexSettings, ShardIndex, merge_top_k
    from cluster.rng import stream

    r = cfg.retrieval
    mu = -np.linspace(0.0, 1.0, catalog.n_groups)
    parts = partition_items(np.arange(len(catalog.item_ids)), catalog.item_vectors, catalog.item_groups, r.n_shards,
                            stream(cfg.seed, "partition"))
    answers = {}
    indexes = (("flat", IndexSettings(kind="flat")), (r.index.kind, IndexSettings(**r.shard_index_settings())))
    for kind, settings in indexes:
        shards = [ShardIndex(p.item_ids, p.vectors, p.groups, catalog.n_groups, settings) for p in parts]
        for shard in shards:
            shard.set_mu(mu)
        answers[kind] = merge_top_k([s.search(queries, k) for s in shards], k).items
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(answers[r.index.kind], answers["flat"])])
    shown = ", ".join(f"{key} {value}" for key, value in r.index.model_dump().items() if key != "kind")
    print(f"{r.index.kind} recall@{k} against exact ({shown}, mu != 0): {recall:.4f}", flush=True)
    return float(recall)


def actors_path(cfg: SimConfig, catalog, queries: np.ndarray, k: int, batches: Sequence[int],
                folder: Path) -> dict[int, dict]:
    """One coordinator over the partitions (searched in process, or by shard actors each built
    once) and a dual-vector actor, timed at each batch size in turn; the dual keeps stepping
    throughout, as it would in service."""
    from actors.retrieval_factory import save_partitions, start_retrieval
    from cluster.retrieval.policies import exposure_targets, make_policy
    from cluster.rng import stream
    from cluster.storage import Storage

    r = cfg.retrieval
    store = Storage(folder)
    save_partitions(r, catalog, store / "shards", stream(cfg.seed, "partition"))
    policy = make_policy(r.policy, exposure_targets(r, catalog.n_groups, 100_000))
    actors = start_retrieval(r, catalog, policy, store / "shards", store / "dual", name_prefix="bench-")
    try:
        return {b: _timed(f"(b) fair search, batch {b}", lambda q: actors.coordinator.retrieve(q, k), queries, b)
                for b in batches}
    finally:
        actors.kill()


async def _http_load(url: str, users: np.ndarray, k: int, concurrency: int) -> tuple[list[float], float]:
    """Closed-loop load: ``concurrency`` requests in flight, one per user in ``users``."""
    import httpx

    limit = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(client: httpx.AsyncClient, user: int) -> None:
        async with limit:
            t0 = time.perf_counter()
            answer = await client.post(f"{url}/retrieve", json={"user_id": int(user), "k": k})
            answer.raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1e3)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(one(client, u) for u in users[: min(32, len(users))]))  # warm-up
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(client, u) for u in users))
        return latencies, time.perf_counter() - started


def _load_level(args: argparse.Namespace, url: str, label: str, concurrency: int) -> dict:
    """One concurrency level from wrk (``--load wrk``) or the in-process Python generator."""
    from jobs.lib.serving_bound import machine_cpu

    if args.load == "python":
        users = np.random.default_rng(0).integers(0, args.users, args.http_requests)
        with machine_cpu() as spent:
            latencies, wall = asyncio.run(_http_load(url, users, args.k, concurrency))
        return {**summarize(label, latencies, len(users), wall), "cpu_per_query_s": spent[0] / len(users)}
    from jobs.lib.wrk_load import run_wrk

    run_wrk(url, concurrency, 2, args.users, args.k)  # warm-up: connections, batches, caches
    with machine_cpu() as spent:
        result = run_wrk(url, concurrency, args.duration, args.users, args.k)
    print(f"{label:<34} {result.qps:>9,.0f} q/s   p50 {result.p50_ms:7.2f} ms   p99 {result.p99_ms:7.2f} ms   "
          f"errors {result.non_2xx + result.socket_errors}   wrk CPU {result.generator_cpu:.2f} core", flush=True)
    return {"path": label, "qps": result.qps, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
            "errors": result.non_2xx + result.socket_errors, "generator_cpu": result.generator_cpu,
            "requests": result.requests, "cpu_per_query_s": spent[0] / max(result.requests, 1)}


def http_path(cfg: SimConfig, args: argparse.Namespace, concurrencies: list[int]) -> tuple[list[dict], list[dict]]:
    """(c) at every concurrency, then (d) at every concurrency: (rows of (c), rows of (d))."""
    from ray import serve

    from cluster.ports import free_port
    from serve.echo import RetrieveEcho
    from serve.retriever import FairRetriever

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    logs = {"enable_access_log": args.access_log}
    serve.run(FairRetriever.bind(cfg, "bench-http-"), name="bench-retriever", route_prefix="/", logging_config=logs)
    rows, floors = [], []
    try:
        for concurrency in concurrencies:
            rows.append({**_load_level(args, url, f"(c) HTTP via Serve, concurrency {concurrency}", concurrency),
                         "concurrency": concurrency})
        serve.delete("bench-retriever")
        serve.run(RetrieveEcho.bind(), name="bench-echo", route_prefix="/", logging_config=logs)
        for concurrency, row in zip(concurrencies, rows):
            floor = {**_load_level(args, url, f"(d) Serve floor (echo), concurrency {concurrency}", concurrency),
                     "concurrency": concurrency}
            print(f"(c)/(d) at concurrency {concurrency}: throughput {row['qps'] / floor['qps']:.2f}, "
                  f"p99 {row['p99_ms'] / floor['p99_ms']:.2f}", flush=True)
            floors.append(floor)
    finally:
        serve.shutdown()
    return rows, floors


def _sigkill(name: str) -> None:
    """SIGKILL the named actor's process, as a node failure would (Ray restarts it)."""
    import os
    import signal

    import ray

    named = {a["name"]: a["namespace"] for a in ray.util.list_named_actors(all_namespaces=True)}
    actor = ray.get_actor(name, namespace=named.get(name))
    os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)


def _stats(url: str) -> dict:
    import httpx

    deadline = time.time() + 120
    while True:
        reply = httpx.get(f"{url}/stats", timeout=60)
        if reply.status_code == 200 or time.time() > deadline:
            reply.raise_for_status()
            return reply.json()
        time.sleep(0.5)  # 503 while the dual-vector actor restarts


def soak(cfg: SimConfig, args: argparse.Namespace, concurrency: int = 64, duration_s: float = 60.0) -> dict:
    """``concurrency`` connections for ``duration_s``; shard 1 SIGKILLed at a third of it (with
    ``--search-in shard_actors``) and the dual-vector actor at two thirds. Prints errors, partial
    answers and whether the dual's counters match what wrk saw answered."""
    from ray import serve

    from cluster.ports import free_port
    from jobs.lib.wrk_load import run_wrk, start_wrk
    from serve.retriever import FairRetriever

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(FairRetriever.bind(cfg, "soak-"), name="soak-retriever", route_prefix="/")
    try:
        run_wrk(url, concurrency, 2, args.users, args.k)  # warm-up
        before = _stats(url)
        _, finish = start_wrk(url, concurrency, duration_s, args.users, args.k)
        time.sleep(duration_s / 3)
        if cfg.retrieval.search_in == "shard_actors":
            _sigkill("soak-shard-1")
        time.sleep(duration_s / 3)
        _sigkill("soak-dual-vector")
        result = finish()
        after = _stats(url)
    finally:
        serve.shutdown()
    counted = after["requests"] - before["requests"]
    exposure = sum(after["exposure"]) - sum(before["exposure"])
    shard = f"shard 1 killed at {duration_s / 3:.0f} s, " if cfg.retrieval.search_in == "shard_actors" else ""
    print(f"soak: {duration_s:.0f} s at concurrency {concurrency}, {shard}"
          f"dual-vector at {2 * duration_s / 3:.0f} s: {result.requests:,} answered ({result.qps:,.0f} q/s, "
          f"p99 {result.p99_ms:.0f} ms), non-2xx {result.non_2xx}, socket errors {result.socket_errors}, "
          f"partial {result.partial:,}", flush=True)
    print(f"soak: the dual counted {counted:,} requests and {exposure:,.0f} served slots (K x answered = "
          f"{args.k * result.requests:,}); unreported {after['unreported']}; requests wrk cut off in flight at "
          f"the end are served and counted but not in wrk's total (at most {concurrency})", flush=True)
    return {"answered": result.requests, "counted": counted, "exposure": exposure, "non_2xx": result.non_2xx,
            "socket_errors": result.socket_errors, "partial": result.partial}


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=first_paragraph(__doc__))
    add_catalogue_arguments(parser, queries=2048)
    parser.add_argument("--load", choices=["wrk", "python"], default="wrk",
                        help="HTTP load generator: wrk (compiled; apt-get install wrk) or the in-process Python one")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of wrk load per concurrency level")
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                        help="only the soak: wrk at concurrency 64 for SECONDS, shard 1 (with --search-in "
                             "shard_actors) and then the dual-vector actor SIGKILLed at a third and two thirds of it "
                             "(60 is a full soak)")
    parser.add_argument("--search-in", choices=["replica", "shard_actors"], default="replica",
                        help="where (b) and (c) search the partitions: in process (the Serve replica's) or by one "
                             "shard actor each (default: %(default)s)")
    parser.add_argument("--http-requests", type=int, default=1000, help="requests per level of --load python")
    parser.add_argument("--concurrency", default="1,16,64",
                        help="HTTP clients at once, one level per comma-separated value (default: %(default)s)")
    parser.add_argument("--index", choices=["flat", "ivf", "ivf_rq", "hnsw"], default="flat",
                        help="the shards' FAISS index (jobs/bench_index.py compares them without Ray)")
    parser.add_argument("--nlist", type=int, help="ivf, ivf_rq: lists per shard (default: the config's)")
    parser.add_argument("--nprobe", type=int, help="ivf, ivf_rq: lists scanned per query (default: the config's)")
    parser.add_argument("--overfetch", type=int, help="ivf, ivf_rq: candidates = overfetch x K (default: the config's)")
    parser.add_argument("--access-log", action="store_true",
                        help="Serve's per-request access log on for (c) and (d) (off, as in the shipped Serve configs)")
    parser.add_argument("--check", action="store_true",
                        help=f"exit {EXIT_GOAL_MISSED} when a speed goal is missed (the module's GOALS: HTTP "
                             "throughput and p99 against the floor's, (b)'s p50 at batch 1, HTTP throughput "
                             "against the CPU bound)")
    parser.add_argument("--proxy", choices=["default", "haproxy"], default="default",
                        help="Serve's HTTP proxy: Ray's Python proxy, or HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1)")
    add_report_argument(parser)
    args = parser.parse_args(argv)
    if args.check and args.soak:
        parser.error("--check compares the speed measurement with its goals; the soak has none")
    if args.report and args.soak:
        parser.error("--report writes the speed measurement's page; the soak has none (leave out one of them)")
    if args.load == "wrk":
        from jobs.lib.wrk_load import WrkMissing, wrk_binary

        try:
            wrk_binary()
        except WrkMissing as exc:
            parser.error(str(exc))
    return args


def measure(cfg: SimConfig, args: argparse.Namespace, folder: Path) -> dict:
    """(a) at batch 1 and 64 before Ray starts (its daemons would share (a)'s core), then (b),
    their ratio, and (c) and (d) at every concurrency. Returns what the results page shows:
    the settings, each path's rows, the recall of an approximate index, and the machine's load
    at the start and the end."""
    import ray

    from cluster.bootstrap import init_ray
    from cluster.rng import stream
    from jobs.lib.results_page import load_line
    from jobs.lib.retrieval_source import load_or_train_catalog
    from jobs.lib.retrieval_speed_page import level_rows

    load_at_start = load_line()
    started = time.perf_counter()
    catalog, _, _ = load_or_train_catalog(cfg, with_requests=False)
    print(f"{args.items:,} items x dim {args.dim}, {args.shards} shards, K={args.k}; "
          f"vectors drawn in {time.perf_counter() - started:.1f} s", flush=True)
    queries = catalog.user_vectors[stream(0, "bench_queries").integers(0, args.users, args.queries)]
    raw = raw_faiss(cfg, catalog, queries, args.k, (1, 64))
    recall = approximate_recall(cfg, catalog, queries, args.k) if args.index != "flat" else None
    started_ray = init_ray(address=None)
    try:
        fair = actors_path(cfg, catalog, queries, args.k, (1, 64), folder)
        for b in (1, 64):
            print(f"throughput ratio (b)/(a) at batch {b}: {fair[b]['qps'] / raw[b]['qps']:.2f}")
        call_floor = fanout_call_floor(cfg, queries, args.k)
        print(f"(b) p50 at batch 1: {fair[1]['p50_ms']:.2f} ms against Ray's floor for its calls "
              f"{call_floor['p50_ms']:.2f} ms ({fair[1]['p50_ms'] / call_floor['p50_ms']:.2f}x)", flush=True)
        del catalog
        http, floor = http_path(cfg, args, [int(c) for c in args.concurrency.split(",")])
    finally:
        if started_ray:
            ray.shutdown()
    return {"settings": settings(cfg, args), "raw": level_rows(raw, "batch"), "fair": level_rows(fair, "batch"),
            "recall": recall, "http": http, "floor": floor, "bound": cpu_bounds(raw, floor), "call_floor": call_floor,
            "loads": (load_at_start, load_line())}


def fanout_call_floor(cfg: SimConfig, queries: np.ndarray, k: int) -> dict:
    """Ray's floor under (b) at batch 1 (``jobs/lib/fanout_floor.py``), with this run's payload sizes:
    the shard calls (none when searched in process) and the report."""
    from cluster.retrieval.shard_index import Hits
    from cluster.retrieval.wire import pack_hits, pack_query
    from jobs.lib.fanout_floor import fanout_floor

    n_groups = cfg.retrieval.synthetic.n_groups
    query = pack_query(queries[:1], k, np.zeros(n_groups), 0)
    reply = pack_hits(Hits(np.zeros((1, k), np.int64), np.zeros((1, k), np.float32), np.zeros((1, k), np.float32)), 0)
    shard_calls = cfg.retrieval.n_shards if cfg.retrieval.search_in == "shard_actors" else 0
    return fanout_floor(shard_calls, query, reply, n_groups)


def cpu_bounds(raw: dict[int, dict], floor: list[dict]) -> list[dict]:
    """At each concurrency of (d): the queries per second this machine's cores could serve if the
    retriever cost only (a)'s search at batch 64 and (d)'s CPU per request (``jobs/lib/serving_bound.py``)."""
    from jobs.lib.serving_bound import ServingBound

    cores = os.cpu_count() or 1
    search_cpu_s = 1.0 / raw[max(raw)]["qps"]
    bounds = []
    for row in floor:
        bound = ServingBound(cores, search_cpu_s, row["cpu_per_query_s"])
        bounds.append({"concurrency": row["concurrency"], "search_cpu_ms": 1e3 * bound.search_cpu_s,
                       "floor_cpu_ms": 1e3 * bound.floor_cpu_s, "qps": bound.qps, "cores": cores})
        print(f"CPU bound at concurrency {row['concurrency']}: {cores} cores / ({1e3 * search_cpu_s:.3f} ms search "
              f"+ {1e3 * bound.floor_cpu_s:.3f} ms Serve) = {bound.qps:,.0f} q/s", flush=True)
    return bounds


def settings(cfg: SimConfig, args: argparse.Namespace) -> dict:
    """The run's settings as its results page names them."""
    return {"items": args.items, "dim": args.dim, "shards": args.shards, "search_in": args.search_in, "k": args.k,
            "queries": args.queries,
            "index": cfg.retrieval.index.model_dump(), "proxy": args.proxy, "load": args.load,
            "duration": args.duration, "http_requests": args.http_requests, "seed": cfg.seed}


def goal_verdicts(result: dict) -> list[tuple[str, bool]]:
    """Each goal of ``GOALS`` the run measured: (what was measured against what, met)."""
    verdicts = []
    fanout = result["fair"][0] if result["fair"] and result["fair"][0].get("batch") == 1 else None
    for row, floor in zip(result["http"], result["floor"]):
        concurrency = row["concurrency"]
        ratio = row["qps"] / floor["qps"]
        wanted = GOALS["throughput_vs_floor"].get(concurrency)
        if wanted is not None:
            verdicts.append((f"(c)/(d) throughput at concurrency {concurrency}: {ratio:.2f} (goal >= {wanted})",
                             ratio >= wanted))
        p99 = row["p99_ms"] / floor["p99_ms"]
        verdicts.append((f"(c)/(d) p99 at concurrency {concurrency}: {p99:.2f} (goal <= {GOALS['p99_vs_floor']})",
                         p99 <= GOALS["p99_vs_floor"]))
    bounds = {b["concurrency"]: b for b in result.get("bound", [])}
    for row in result["http"]:
        wanted, bound = GOALS["throughput_vs_bound"].get(row["concurrency"]), bounds.get(row["concurrency"])
        if wanted is not None and bound is not None:
            share = row["qps"] / bound["qps"]
            verdicts.append((f"(c) at concurrency {row['concurrency']}: {share:.2f} of the CPU bound of "
                             f"{bound['qps']:,.0f} q/s (goal >= {wanted})", share >= wanted))
    if fanout is not None:
        verdicts.append((f"(b) p50 at batch 1: {fanout['p50_ms']:.2f} ms (goal <= {GOALS['fanout_p50_ms']} ms)",
                         fanout["p50_ms"] <= GOALS["fanout_p50_ms"]))
    return verdicts


def run_soak(cfg: SimConfig, args: argparse.Namespace) -> None:
    import ray

    from cluster.bootstrap import init_ray

    started_ray = init_ray(address=None)
    try:
        soak(cfg, args, duration_s=args.soak)
    finally:
        if started_ray:
            ray.shutdown()


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.proxy == "haproxy":
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"  # read when Serve starts its proxy, in the Ray this job starts
    folder = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    cfg = bench_config(args, folder)
    haproxies_before = haproxy_pids()
    try:
        if args.soak:
            run_soak(cfg, args)
        else:
            result = measure(cfg, args, folder)
    finally:
        stop_new_haproxies(haproxies_before)  # see jobs/lib/haproxy_cleanup.py
        # the shard partitions and the dual's state: a full-scale run leaves hundreds of MB otherwise
        shutil.rmtree(folder, ignore_errors=True)
    if args.report:
        from jobs.lib.results_page import command_line
        from jobs.lib.retrieval_speed_page import speed_page

        page = speed_page(result, command_line(argv, program="jobs/bench_retrieval.py"))
        print(f"wrote {page.write(args.report)}")
    if args.check:
        verdicts = goal_verdicts(result)
        for line, met in verdicts:
            print(f"goal {'met   ' if met else 'MISSED'} {line}", flush=True)
        if not all(met for _, met in verdicts):
            return EXIT_GOAL_MISSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
