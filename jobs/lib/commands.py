"""The jobs a user runs, by the name ``fairfleet <name>`` gives each. ``jobs/<module>.py`` is the
same job run as a script; every job module has ``main(argv) -> int``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str      # ``fairfleet <name>``; "bench fl" is the bench group's "fl"
    module: str    # the job module under jobs/
    summary: str   # one line for ``fairfleet --help``


COMMANDS: tuple[Command, ...] = (
    Command("sim", "fl_sim", "run one federated-learning experiment on Ray actors"),
    Command("world", "build_world", "build the simulated world from a config and print its summary"),
    Command("download", "download_movielens", "download and verify a GroupLens MovieLens archive into the cache"),
    Command("tiers", "tier_heterogeneity", "heterogeneity of RF²'s six tier-mapping presets on a data set"),
    Command("matrix", "rf2_matrix", "RF²'s matrix: every tier-aware optimization under every tier mapping"),
    Command("ceag", "ceag_compare", "each optimization without and with CEAG's tier constraints"),
    Command("secure-cost", "secure_cost", "what secure aggregation costs each tier on the virtual clock"),
    Command("availability-trace", "availability_trace", "write a device-availability trace (Parquet) per tier"),
    Command("async", "async_tiers", "what asynchronous aggregation does to each tier, against synchronous rounds"),
    Command("dp", "dp_tiers", "per-tier cost of user-level differential privacy, alone and with each optimization"),
    Command("cali3f", "cali3f_compare", "FedAvg, Ditto and Cali3F side by side on MovieLens 100K"),
    Command("retrieval-eval", "fair_retrieval_eval", "the fair retriever's quality and exposure against baselines"),
    Command("retrieval-scale", "retrieval_scale",
            "a large catalogue over shard actors on a cluster: build once, load at every start, recall, HTTP"),
    Command("bench fl", "bench_fl", "FL engine speed: client updates per second, in process and on actors"),
    Command("bench click", "bench_click", "how fast DLRM and DIN train in process, against their arithmetic limits"),
    Command("bench index", "bench_index", "the retriever's shard index kinds side by side"),
    Command("bench memory", "bench_memory", "peak memory of every process of an FL run against 4 GiB"),
    Command("bench retrieval", "bench_retrieval", "speed of the fair retriever over HTTP against Serve's own floor"),
    Command("bench synthetic", "bench_synthetic", "speed and memory of the synthetic world generator"),
)

GROUPS: dict[str, str] = {
    "bench": "benchmarks of speed, memory and learning",
}

# The smallest useful run of the commands a new user reaches for first, as ``fairfleet --help`` shows them.
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("fairfleet world", "the demo's synthetic world and its tiers, in seconds"),
    ("fairfleet sim --set fl.rounds=20", "a twenty-round federated run of the demo (it learns after ~10)"),
    ("fairfleet download ml-100k", "MovieLens 100K into the cache; it prints the data.path to use"),
    ("fairfleet sim --config configs/ml100k.yaml --set data.path=DIR --set fl.rounds=20",
     "twenty rounds on MovieLens 100K, DIR the folder download printed"),
    ("fairfleet bench synthetic --scales 0.01", "the world generator's speed and memory at 1% scale"),
    ("fairfleet serve", "the fair retriever over HTTP on 127.0.0.1:8000 (Ctrl-C stops it)"),
)
