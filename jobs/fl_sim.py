"""Run one federated-learning experiment on Ray actors.

    python jobs/fl_sim.py --config configs/demo.yaml [--set fl.rounds=5 ...]
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python jobs/fl_sim.py --config ...
    python jobs/fl_sim.py --resume runs/fl-demo-...      # continue a killed run from its checkpoint
    python jobs/fl_sim.py --storage s3://bucket/runs?endpoint_override=...   # run folder in object storage
    python jobs/fl_sim.py --config configs/ml100k.yaml --report docs/results/ncf-ml100k.md   # and a results page

Writes a run folder in the storage (``storage`` / ``--storage``: a local path, NFS, or a URI): rounds.parquet, tiers.parquet, clients.parquet, item_embeddings.parquet,
user_queries.parquet (GMF only: the retriever's query vectors), config.yaml, versions.json, summary.json,
shards/ (each worker's clients, which a worker restarted on any node reloads) and checkpoint/ (every
fl.checkpoint_every rounds; JSON + npz, no pickle). Click models (dlrm, din) write no clients.parquet,
item_embeddings.parquet or user_queries.parquet. summary.json's final_train holds the train measures
(click models: AUC, accuracy and pair rate per tier; NCF: the pair rate, CEAG's reference).
plots/ holds quality per tier and the tier gap over rounds and over simulated time, and the clients
each tier lost per round; summary.json's plots lists them.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (also under `ray job submit`): import this checkout, not the script folder.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import re
import time
from pathlib import PurePosixPath
from typing import Optional, Sequence

from cluster import checkpoint
from cluster.fl.experiment import Experiment, build
from cluster.fl.round_loop import WorkersLost
from cluster.storage import Storage, StorageError, as_storage
from configs import ConfigError, SimConfig, config_hash, load_config_text
from jobs.lib.cli import (
    first_paragraph,
    EXIT_RUN_LOST,
    add_storage_argument,
    config_parser,
    load_or_exit,
    run_guarded,
    with_storage,
)
from jobs.lib.outputs import new_run_dir, write_json_atomic, write_resolved_config
from jobs.lib.results_page import add_report_argument


class RunLost(RuntimeError):
    """The run stopped part-way (args: its folder, why); its last checkpoint lets --resume go on."""


def run(exp: Experiment, run_dir: Storage | Path, resume: bool, address: Optional[str], quiet: bool = False) -> dict:
    """Start the actors, run the remaining rounds, return the final results (no files written).
    ``run_dir``: the run folder in the storage (a local path is taken as one)."""
    import ray

    from actors.storage_probe import check_storage_on_every_node
    from cluster.bootstrap import init_ray

    run_dir = as_storage(run_dir)
    # A Ray namespace per run: actor names (aggregator, clients-low-0, ...) are unique within a
    # namespace, so two runs can share one cluster.
    started_ray = init_ray(address=address, namespace=f"fairfleet-{run_dir.name}")
    handles: list = []
    try:
        check_storage_on_every_node(run_dir)
        workers, aggregator = _start_actors(exp, run_dir, quiet)
        handles = [aggregator, *workers]
        ray.get([w.ready.remote() for w in workers] + [aggregator.ready.remote()])
        done = ray.get(aggregator.restore.remote()) if resume else 0
        wall_started = time.perf_counter()
        restarts = _run_rounds(exp, aggregator, done, run_dir, quiet)
        wall_s = time.perf_counter() - wall_started
        return {"wall_s": wall_s, "resumed_from": done, "aggregator_restarts": restarts, **_final_results(exp, aggregator)}
    finally:
        for handle in handles:
            ray.kill(handle)
        if started_ray:
            ray.shutdown()


def _start_actors(exp: Experiment, run_dir: Storage, quiet: bool) -> tuple[list, object]:
    from actors.factory import start_aggregator, start_workers, worker_names
    from cluster.fl.shard import save_shards

    cfg, tiers = exp.cfg, exp.fleet.tiers.names
    # A worker reads its own shard from the run's storage, on whichever node it starts.
    save_shards(exp.shards(), worker_names(cfg.fl, tiers), run_dir / "shards", progress=not quiet)
    workers = start_workers(cfg.fl, exp.worker_setup(), tiers, run_dir)
    aggregator = start_aggregator(exp.server_setup(), run_dir / "checkpoint", run_name=run_dir.name)
    return workers, aggregator


def _final_results(exp: Experiment, aggregator) -> dict:
    """The global model, the last per-client metrics, the users' retrieval queries (a model that
    has them), the train measures, and the history they belong to."""
    import ray

    # Fairness measures compare train and held-out quality, and CEAG reads its reference from
    # the train measures (NCF: the pairwise one). Asked first: it reaches every worker, so a
    # worker restarted in the last round is found here and the run replayed before the rest
    # is read.
    train_eval = ray.get(aggregator.evaluate.remote("train"))
    params, last = ray.get([aggregator.global_params.remote(), aggregator.last_client_metrics.remote()])
    queries = None
    if exp.has_retrieval_queries:
        queries = ray.get(aggregator.retrieval_queries.remote())
    return {"params": params, "client_metrics": last, "queries": queries, "train_eval": train_eval,
            "history": ray.get(aggregator.history_rows.remote()), "worker_resyncs": ray.get(aggregator.resyncs.remote())}


def _run_rounds(exp: Experiment, aggregator, done: int, run_dir: Storage, quiet: bool) -> int:
    """Rounds ``done``..``fl.rounds``; returns the aggregator restarts they took: when it dies, Ray
    restarts it from its last checkpoint and the loop goes on from the round it reports."""
    import ray
    from ray.exceptions import RayActorError

    round_index, restarts = done, 0
    while round_index < exp.cfg.fl.rounds:
        try:
            record = ray.get(aggregator.run_round.remote())
        except WorkersLost as lost:
            raise RunLost(run_dir, str(lost)) from None
        except RayActorError:
            round_index = _await_restart(aggregator, run_dir)
            restarts += 1
            if not quiet:
                print(f"aggregator restarted: continuing from the checkpoint at round {round_index}", flush=True)
            continue
        round_index += 1
        if not quiet:
            from jobs.lib.fl_results import progress_line

            print(progress_line(record, exp.cfg.fl.rounds, exp.fleet.tiers.names, exp.ops.metric_names), flush=True)
    return restarts


def _await_restart(aggregator, run_dir: Storage, timeout_s: float = 300.0) -> int:
    """The round a restarted aggregator continues from; RunLost when Ray will not bring it back."""
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(aggregator.ready.remote(), timeout=max(1.0, deadline - time.monotonic()))
        except ActorUnavailableError:
            if time.monotonic() > deadline:
                raise RunLost(run_dir, "the aggregator died and could not be restarted") from None
            time.sleep(0.5)
        except (ActorDiedError, ray.exceptions.GetTimeoutError):
            raise RunLost(run_dir, "the aggregator died and could not be restarted") from None


def write_results(exp: Experiment, run_dir: Storage, outcome: dict) -> dict:
    from cluster.data.parquet_io import write_table_atomic
    from cluster.fl.families.base import RunTables
    from jobs.lib.fl_results import rounds_table, tiers_table, versions

    cfg, names = exp.cfg, exp.fleet.tiers.names
    digest = config_hash(cfg)
    history = outcome["history"]
    write_table_atomic(rounds_table(history, digest, cfg.seed), run_dir / "rounds.parquet")
    write_table_atomic(tiers_table(history, names, digest, cfg.seed), run_dir / "tiers.parquet")
    own = RunTables(outcome["params"], outcome["client_metrics"], outcome.get("queries"), digest, cfg.seed)
    for name, table in exp.family.result_tables(exp.setup, exp.world, own).items():
        write_table_atomic(table, run_dir / name)
    write_json_atomic(run_dir / "versions.json", versions())
    summary = run_summary(exp, run_dir, outcome, digest)
    write_json_atomic(run_dir / "summary.json", summary)
    # Drawn once the results are safe: a figure that fails costs only itself (a warning, and
    # summary.json does not list it).
    plots = _write_plots(exp, run_dir, outcome)
    if plots:
        summary["plots"] = plots
        write_json_atomic(run_dir / "summary.json", summary)
    return summary


def _write_plots(exp: Experiment, run_dir: Storage, outcome: dict) -> dict[str, str]:
    from jobs.lib.run_plots import write_run_plots

    return write_run_plots(outcome["history"], exp.fleet.tiers.names, run_dir, metric=exp.ops.metric_names[0],
                           resumed_from=outcome["resumed_from"], label=exp.cfg.name)


def run_summary(exp: Experiment, run_dir: Storage, outcome: dict, digest: str) -> dict:
    cfg, history = exp.cfg, outcome["history"]
    metric = exp.ops.metric_names[0]
    last = next((r for r in reversed(history) if metric in r), {})
    summary = {
        "run": run_dir.name,
        "config_hash": digest,
        "seed": cfg.seed,
        "model": cfg.model.kind,
        "rounds": len(history),
        "resumed_from_round": outcome["resumed_from"],
        "aggregator_restarts": outcome.get("aggregator_restarts", 0),
        "worker_resyncs": outcome.get("worker_resyncs", 0),
        "sim_time_s": history[-1]["sim_time_s"] if history else 0.0,
        "wall_s": outcome["wall_s"],
        "client_updates": int(sum(r["client_updates"] for r in history)),
        "optimization": cfg.fl.optimization.preset or cfg.fl.optimization.kind,
        "strategy": cfg.fl.strategy.kind,
        "tier_mapping": cfg.tier_mapping.mapping,
        "final": {k: v for k, v in last.items() if k.startswith((*exp.ops.metric_names, "evaluated"))},
    }
    if outcome.get("train_eval"):
        summary["final_train"] = outcome["train_eval"]
    if history and "dp_epsilon" in history[-1]:
        # The guarantee the released model carries, after every round the run took.
        summary["privacy"] = {k.removeprefix("dp_"): history[-1][k] for k in history[-1] if k.startswith("dp_")}
    return summary


def build_run_write(cfg: SimConfig, resume_dir: Optional[Storage | Path] = None, address: Optional[str] = None,
                    quiet: bool = False) -> tuple[Experiment, Storage, dict]:
    """The whole job: a new run folder (or ``resume_dir``), the rounds, the result files."""
    if resume_dir is None:
        Storage(cfg.storage).check_writable()  # a bad --storage fails now, not after the world is built
    exp = build(cfg, progress=not quiet)  # bad data fails here, before any folder exists
    run_dir = as_storage(resume_dir) if resume_dir is not None else None
    if run_dir is None:
        run_dir = new_run_dir(cfg, "fl")
        write_resolved_config(run_dir, cfg)
    print(f"run folder {run_dir}", flush=True)
    outcome = run(exp, run_dir, resume=resume_dir is not None, address=address, quiet=quiet)
    write_results(exp, run_dir, outcome)
    return exp, run_dir, outcome


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = config_parser(first_paragraph(__doc__))
    parser.add_argument("--resume", metavar="RUN", help="run folder (path or URI) of a killed run to continue from "
                                                        "its checkpoint")
    parser.add_argument("--address", help="Ray address to join (default: $RAY_ADDRESS, else a private local Ray)")
    add_storage_argument(parser)
    add_report_argument(parser)
    return parser.parse_args(argv)


def resume_config(run_dir: Storage, overrides: Sequence[str]) -> SimConfig:
    """The config of the run in ``run_dir``; ConfigError (exit 2) when it has no usable checkpoint."""
    try:
        folder = checkpoint.latest(run_dir / "checkpoint")
        if folder is None:
            raise ConfigError(f"{run_dir.describe()}: no checkpoint to resume from (checkpoint/latest.json)")
        # Read once here, so a damaged checkpoint is reported before any actor starts.
        checkpoint.read_state(folder, "aggregator", "aggregator")
        text = run_dir.read_text("config.yaml")
    except (checkpoint.CheckpointError, StorageError) as exc:
        raise ConfigError(f"cannot resume: {exc}") from None
    return load_config_text(text, run_dir.describe("config.yaml"), overrides)


def finished_rounds(run_dir: Storage) -> Optional[int]:
    """The rounds a run wrote its results after (summary.json), or None when it never finished."""
    if not run_dir.exists("summary.json"):
        return None
    try:
        return int(run_dir.read_json("summary.json")["rounds"])
    except (StorageError, KeyError, TypeError, ValueError):
        return None  # a damaged summary: resuming rewrites it


def updates_per_s(outcome: dict) -> float:
    """Client updates per second of wall time, over the rounds this process ran."""
    total = sum(r["client_updates"] for r in outcome["history"][outcome["resumed_from"]:])
    return total / max(outcome["wall_s"], 1e-9)


def check_report_location(location: Optional[str]) -> None:
    """Before the run: a page that cannot be written fails now, not after the last round."""
    if not location:
        return
    if not location.split("?", 1)[0].endswith(".md"):
        raise ConfigError(f"--report {location}: a results page is a Markdown file ending in .md")

    Storage(location).parent.check_writable()




def report_title(exp: Experiment) -> str:
    from jobs.lib.job_page import dataset_title, strategy_name

    cfg = exp.cfg
    family = "click model" if cfg.model.is_click else "NCF"
    strategy = strategy_name(cfg.fl.strategy.kind)
    return (f"Federated {family} on {dataset_title(exp.world.dataset.name)} "
            f"({cfg.model.kind.upper()}, {strategy}; config {cfg.name})")


def _redacted(args: Sequence[str]) -> list[str]:
    # A storage URI may carry credentials (user:secret@host); a published page must not.
    return [re.sub(r"(://)[^/@\s]+@", r"\1***@", a) for a in args]


def write_report(location: str, exp: Experiment, run_dir: Storage, outcome: dict,
                 argv: Optional[Sequence[str]] = None) -> Storage:
    """The run's results page: the command, its setup, final quality per tier, time and
    throughput, and the run's plots (copied beside the page)."""
    from jobs.lib.fl_results import final_markdown
    from jobs.lib.job_page import dataset_title, job_command
    from jobs.lib.results_page import ResultsPage
    from jobs.lib.run_plots import PLOT_FILES, plot_caption

    cfg, history, names = exp.cfg, outcome["history"], exp.fleet.tiers.names
    args = _redacted(sys.argv[1:] if argv is None else argv)
    page = ResultsPage(title=report_title(exp), command=job_command(__file__, args), seeds=[cfg.seed])
    fl = cfg.fl
    setup = [
        "| | |", "|---|---|",
        f"| config | {cfg.name} (hash `{config_hash(cfg)}`) |",
        f"| data | {dataset_title(exp.world.dataset.name)}"
        + ("" if cfg.model.is_click else f", {cfg.data.n_negatives} sampled negatives per held-out item") + " |",
        f"| model | {cfg.model.kind} |",
        f"| rounds | {len(history)} × {fl.clients_per_round} clients (over-selection {fl.overselect:.0%}), "
        f"evaluated every {fl.eval_every} rounds |",
        f"| strategy | {fl.strategy.kind}, optimization {fl.optimization.preset or fl.optimization.kind} |",
        f"| tier mapping | {cfg.tier_mapping.mapping} |",
        f"| run folder | `{run_dir.name}` (in the storage the run was given) |",
    ]
    if outcome["resumed_from"]:
        setup.append(f"| resumed | after round {outcome['resumed_from']} |")
    page.add("Setup", "\n".join(setup))
    page.add("Final quality", final_markdown(history, names, exp.ops.metric_names))
    sim_s = history[-1]["sim_time_s"] if history else 0.0
    ran = len(history) - outcome["resumed_from"]
    page.add("Time", "\n".join([
        "| | |", "|---|---|",
        f"| simulated time | {_duration(sim_s)} |",
        f"| wall time of the rounds | {outcome['wall_s']:,.1f} s for {ran} rounds |",
        f"| client updates/s | {updates_per_s(outcome):,.0f} |",
    ]))
    plots = run_dir.read_json("summary.json").get("plots", {})
    for name in [n for n in PLOT_FILES if n in plots]:
        rel = plots[name]
        page.add_plot(PurePosixPath(rel).name, plot_caption(name, exp.ops.metric_names[0]), _copy_from(run_dir, rel))
    return page.write(location)  # the plots first, the page last: it never links a missing one


def _duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds:,.0f} s ({seconds / 3600:.1f} h)"
    if seconds >= 120:
        return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"
    return f"{seconds:,.1f} s"


def _copy_from(run_dir: Storage, rel: str):
    return lambda target: target.write_bytes("", run_dir.read_bytes(rel))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    check_report_location(args.report)
    if args.resume:
        run_dir = Storage(args.resume)
        cfg = resume_config(run_dir, args.overrides)
        done = finished_rounds(run_dir)
        if done is not None and done >= cfg.fl.rounds:
            print(f"nothing to resume: {run_dir} finished its {done} rounds (to go on, --set fl.rounds=<more>)")
            return 0
    else:
        cfg = with_storage(load_or_exit(args), args.storage)
        run_dir = None
    try:
        exp, run_dir, outcome = build_run_write(cfg, run_dir, args.address)
    except RunLost as lost:
        run, why = lost.args
        print(f"error: {why}; the run folder {run} keeps its last checkpoint: continue with  "
              f"fairfleet sim --resume '{run.uri}'", file=sys.stderr)
        return EXIT_RUN_LOST
    from jobs.lib.fl_results import chance_note, final_table

    print(final_table(outcome["history"], exp.fleet.tiers.names, exp.ops.metric_names))
    train = outcome.get("train_eval") or {}
    if "auc_train" in train:
        print(f"train AUC {train['auc_train']:.4f} (the rows clients trained on)")
    elif "pair_train" in train:
        print(f"train pair rate {train['pair_train']:.4f} (positives above their sampled negatives)")
    print(f"simulated time {outcome['history'][-1]['sim_time_s']:.1f} s, wall time {outcome['wall_s']:.1f} s, "
          f"{updates_per_s(outcome):,.0f} client updates/s")
    note = chance_note(outcome["history"], exp.cfg.data.n_negatives)
    if note:
        print(note)
    print(f"wrote {run_dir}")
    if args.report:
        print(f"wrote results page {write_report(args.report, exp, run_dir, outcome, argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
