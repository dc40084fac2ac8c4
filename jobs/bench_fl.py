"""Benchmark the FL engine: client updates per second, wall seconds per epoch, peak memory.

    python jobs/bench_fl.py [--config configs/ml100k.yaml] [--rounds 40] [--workers 1 2] [--report PAGE.md]

Runs GMF, 100 clients per round, 1 local epoch (the settings of the speed goal) on Ray actors,
once per workers-per-tier value, and the same rounds in one process without Ray as the
baseline of the same run. Evaluation runs only after the last round and is timed apart. Beside
the in-process figures it prints their fraction of the round's arithmetic limit: GMF's
multiply-adds at this machine's elementwise rate, measured in the same run
(``cluster/fl/arithmetic_limit.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import resource
import tempfile
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from cluster.fl.arithmetic_limit import ArithmeticLimit, elementwise_rate
from cluster.fl.inprocess import round_loop
from jobs.lib.cli import config_parser, load_or_exit, run_guarded, first_paragraph
from cluster.fl.experiment import Experiment, build
from jobs.fl_sim import run
from jobs.lib.job_page import dataset_title, job_command, seeds_phrase, write_page
from jobs.lib.results_page import ResultsPage, add_report_argument, markdown_table

# The engine's speed goals, as ratios and costs within one run: the Ray path at least this share
# of the in-process path, Ray's own cost per round at most this, and the in-process train phase at
# least this fraction of its elementwise limit. --check exits EXIT_GOAL_MISSED when one is missed.
RAY_RATIO_GOAL = 0.8
OWN_COST_GOAL_S = 0.005
LIMIT_FRACTION_GOAL = 0.25
EXIT_GOAL_MISSED = 3
BENCH_SETTINGS = ["model.kind=gmf", "fl.clients_per_round=100", "fl.local_epochs=1", "fl.overselect=0", "fl.checkpoint_every=100000"]


def in_process(exp: Experiment, rounds: int) -> dict:
    """The same round loop over the worker cores in this process: no actors, no object store."""
    loop = round_loop(exp, eval_every=None)
    history = [loop.run_round() for _ in range(rounds)]
    return _speed(history)


def _speed(train_rounds: list[dict]) -> dict:
    wall = sum(r["wall_s"] for r in train_rounds)
    phases = {k: float(np.mean([r[k] for r in train_rounds])) for k in ("plan_s", "train_s", "aggregate_s")}
    return {"updates_per_s": sum(r["client_updates"] for r in train_rounds) / wall,
            "round_s": wall / len(train_rounds), "phases": phases,
            "updates_per_round": float(np.mean([r["client_updates"] for r in train_rounds]))}


def arithmetic_limit(exp: Experiment, updates_per_round: float) -> Optional[ArithmeticLimit]:
    """The in-process round's elementwise limit (``cluster/fl/arithmetic_limit.py``): the model's
    multiply-adds over a round's train samples (its clients at the population's mean each) at
    this thread's elementwise rate on arrays that size, measured now. None for a model whose
    ops do not count their arithmetic."""
    count = getattr(exp.ops, "local_multiply_adds", None)  # only some families count theirs
    samples = updates_per_round * float(np.mean(exp.fleet.train_samples))
    multiply_adds = None if count is None else count(samples, exp.recipe.epochs)
    if multiply_adds is None:
        return None
    return ArithmeticLimit(multiply_adds, elementwise_rate(int(multiply_adds)))


def limit_line(limit: ArithmeticLimit, result: dict) -> str:
    """The limit beside a path's figures: its cost a round and the train phase's and the whole
    round's fraction of it."""
    return (f"elementwise limit: {limit.multiply_adds / 1e6:.2f} M multiply-adds a round at "
            f"{limit.rate / 1e9:.2f} G/s (float32 multiply + add, one thread) = {1e3 * limit.seconds:.2f} ms; "
            f"fraction of the limit: train {limit.fraction(result['phases']['train_s']):.2f}, "
            f"whole round {limit.fraction(result['round_s']):.2f}")


def goal_verdicts(baseline: dict, on_ray_rows: list[dict], floor_s: float,
                  limit: Optional[ArithmeticLimit]) -> list[tuple[str, bool]]:
    """Each speed goal in words, and whether this run met it."""
    verdicts = [(f"Ray with {r['workers']} worker(s) per tier at {r['updates_per_s'] / baseline['updates_per_s']:.2f}x "
                 f"the in-process path (goal: at least {RAY_RATIO_GOAL:.2f}x)",
                 r["updates_per_s"] / baseline["updates_per_s"] >= RAY_RATIO_GOAL) for r in on_ray_rows]
    verdicts.append((f"Ray's own cost {1e3 * floor_s:.1f} ms a round (goal: at most {1e3 * OWN_COST_GOAL_S:.0f} ms)",
                     floor_s <= OWN_COST_GOAL_S))
    if limit is not None:
        fraction = limit.fraction(baseline["phases"]["train_s"])
        verdicts.append((f"in-process train phase at {fraction:.2f} of its elementwise limit "
                         f"(goal: at least {LIMIT_FRACTION_GOAL:.2f})", fraction >= LIMIT_FRACTION_GOAL))
    return verdicts


class _EchoWorker:
    """A client worker that trains nothing: every call is answered with the upload it holds."""

    def __init__(self, upload):
        self.upload = upload

    def ready(self) -> dict:
        return {"incarnation": "echo"}

    def train(self, call, *model):
        return self.upload


def ray_floor(exp: Experiment, rounds: int) -> float:
    """Seconds per round that Ray alone costs at this run's payload: the aggregator's pool
    (``RayWorkerPool``) over echo actors answering with one real round's uploads, no training —
    a call per worker carrying the global model, the wait, the results."""
    import ray

    from actors.worker_pool import RayWorkerPool
    from cluster.fl.worker_pool import TrainTask

    loop = round_loop(exp, eval_every=None)
    plan = loop.server.plan_round()
    tasks = loop.train_tasks(plan)
    uploads = loop.pool.train(plan.round_index, tasks, loop.server.params).results
    echoes = [ray.remote(_EchoWorker).options(num_cpus=0).remote(upload) for upload in uploads]
    pool = RayWorkerPool(echoes, timeout_s=60.0)
    echo_tasks = [TrainTask(i, task.clients) for i, task in enumerate(tasks)]
    pool.train(0, echo_tasks, loop.server.params)  # warm-up
    started = time.perf_counter()
    for round_index in range(rounds):
        pool.train(round_index, echo_tasks, loop.server.params)
    elapsed = (time.perf_counter() - started) / rounds
    for echo in echoes:
        ray.kill(echo)
    return elapsed


def on_ray(exp: Experiment, rounds: int) -> dict:

    with tempfile.TemporaryDirectory() as tmp:
        outcome = run(exp, Path(tmp) / "run", resume=False, address=None, quiet=True)
    history = outcome["history"]
    eval_round = history[-1]
    return {**_speed([r for r in history if "hr10" not in r]), "eval_round_s": eval_round["wall_s"],
            "hr10": eval_round.get("hr10", float("nan"))}


@dataclass(frozen=True)
class SpeedMeasurements:
    """What the benchmark measured: the in-process ``baseline``, one result per Ray run
    (``on_ray_rows``, each with its ``workers`` per tier), Ray's own cost per round over echo
    workers (``floor_s``) and the driver's peak resident memory."""

    baseline: dict
    on_ray_rows: list[dict]
    floor_s: float
    driver_peak_mib: float
    limit: Optional[ArithmeticLimit] = None


def speed_page(command: str, dataset: str, cfg, rounds: int, n_clients: int, measured: SpeedMeasurements) -> ResultsPage:
    """The results page: both paths' speed, per-round phase costs, Ray's own floor, the goal's verdict."""
    baseline, on_ray_rows, floor_s = measured.baseline, measured.on_ray_rows, measured.floor_s
    epoch = n_clients / cfg.fl.clients_per_round
    epochs = f"{cfg.fl.local_epochs} local epoch{'s' if cfg.fl.local_epochs != 1 else ''}"
    page = ResultsPage(
        title=f"FL engine speed: GMF on {dataset}, {cfg.fl.clients_per_round} clients per round, {epochs}",
        command=command, seeds=[cfg.seed],
        intro=(f"{rounds} training rounds per mode over {n_clients:,} clients, timed in one process without Ray "
               "and on Ray actors; both run the same round loop, only the worker pool differs. Evaluation runs "
               "after the last round and is timed apart."))

    def row(mode: str, result: dict, evaluation: str) -> list[str]:
        phases = result["phases"]
        return [mode, f"{result['updates_per_s']:,.0f}", f"{result['round_s']:.3f}", f"{result['round_s'] * epoch:.2f}",
                f"{result['updates_per_s'] / baseline['updates_per_s']:.2f}x",
                *(f"{1e3 * phases[k]:.1f}" for k in ("plan_s", "train_s", "aggregate_s")), evaluation]

    rows = [row("in process (no Ray)", baseline, "–")]
    rows += [row(f"Ray, {r['workers']} worker(s) per tier", r, f"{r['eval_round_s']:.2f}") for r in on_ray_rows]
    page.add("Client updates per second", markdown_table(
        ["mode", "updates/s", "s/round", "s/epoch", "vs in process", "plan (ms/round)", "train (ms/round)",
         "aggregate (ms/round)", f"evaluation of all {n_clients:,} clients (s)"], rows))
    lines = [f"- {what}: {'met' if met else 'not met'} in this run."
             for what, met in goal_verdicts(baseline, on_ray_rows, floor_s, measured.limit)]
    lines.append(f"- Ray's own cost per round at this run's payload (the aggregator's worker pool over echo actors "
                 f"that answer with one real round's uploads and train nothing): {1e3 * floor_s:.1f} ms, "
                 f"{floor_s / baseline['round_s']:.2f}x the whole in-process round.")
    lines.append(f"- Peak resident memory of the driver: {measured.driver_peak_mib:,.0f} MiB.")
    lines.append(f"- One run, {seeds_phrase([cfg.seed])}: no confidence interval. Wall-clock timings move with "
                 "whatever else the machine runs, so compare ratios within one run, not across pages.")
    page.add("What the run shows", "\n".join(lines))
    if measured.limit is not None:
        page.add("Fraction of the arithmetic limit", limit_section(measured.limit, baseline))
    return page


def limit_section(limit: ArithmeticLimit, baseline: dict) -> str:
    """The in-process path against the elementwise limit of its round."""
    train_s = baseline["phases"]["train_s"]
    table = markdown_table(
        ["multiply-adds a round", "elementwise rate (G/s)", "limit (ms/round)", "train (ms/round)",
         "fraction of the limit: train", "fraction of the limit: whole round"],
        [[f"{limit.multiply_adds / 1e6:.2f} M", f"{limit.rate / 1e9:.2f}", f"{1e3 * limit.seconds:.2f}",
          f"{1e3 * train_s:.1f}", f"{limit.fraction(train_s):.2f}", f"{limit.fraction(baseline['round_s']):.2f}"]])
    return ("The in-process path against the least time its arithmetic could take: GMF's multiply-adds a round "
            "(3 × the embedding width per sample and local step: the logit, the item gradient and the sum the "
            "user and dense gradients share; a round's samples are its clients' mean positives and their "
            "negatives) at the rate one thread does `np.multiply(a, b, out=o); np.add(o, c, out=o)` on float32 "
            "arrays that large, measured in the same run.\n\n" + table)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = config_parser(first_paragraph(__doc__), default_config="configs/ml100k.yaml")
    parser.add_argument("--rounds", type=int, default=40,
                        help="rounds timed in each mode; evaluation follows the last (default: %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="client workers per tier, one Ray run per value (default: 1 2)")
    parser.add_argument("--check", action="store_true",
                        help=f"exit {EXIT_GOAL_MISSED} when a speed goal is missed: Ray at least {RAY_RATIO_GOAL}x "
                             f"in process, Ray's own cost at most {1e3 * OWN_COST_GOAL_S:.0f} ms a round, the "
                             f"in-process train phase at least {LIMIT_FRACTION_GOAL} of its elementwise limit")
    add_report_argument(parser)
    args = parser.parse_args(argv)
    args.overrides = BENCH_SETTINGS + [f"fl.rounds={args.rounds}", f"fl.eval_every={args.rounds}"] + args.overrides
    cfg = load_or_exit(args)

    import ray
    from cluster.bootstrap import init_ray

    started_ray = init_ray(address="local")
    base_exp = build(cfg)
    n_clients = base_exp.world.population.n_clients
    rounds_per_epoch = n_clients / cfg.fl.clients_per_round
    baseline = in_process(base_exp, args.rounds)
    print(f"{base_exp.world.dataset.name}: {n_clients} clients, GMF, {cfg.fl.clients_per_round} clients/round, "
          f"{cfg.fl.local_epochs} local epoch, {args.rounds} rounds")
    print(f"{'mode':<28}{'updates/s':>11}{'s/round':>9}{'s/epoch':>9}{'vs in-process':>15}")
    print(f"{'in-process (no Ray)':<28}{baseline['updates_per_s']:>11,.0f}{baseline['round_s']:>9.3f}"
          f"{baseline['round_s'] * rounds_per_epoch:>9.2f}{1.0:>14.2f}x")
    print("    mean per round: " + ", ".join(f"{k[:-2]} {v * 1e3:.1f} ms" for k, v in baseline["phases"].items()))
    limit = arithmetic_limit(base_exp, baseline["updates_per_round"])
    if limit is not None:
        print("    " + limit_line(limit, baseline))
    on_ray_rows = []
    for workers in args.workers:
        runtime = cfg.fl.runtime.model_copy(update={"workers_per_tier": workers})
        exp = build(cfg.model_copy(update={"fl": cfg.fl.model_copy(update={"runtime": runtime})}))
        result = on_ray(exp, args.rounds)
        on_ray_rows.append({"workers": workers, **result})
        print(f"{f'Ray, {workers} worker(s)/tier':<28}{result['updates_per_s']:>11,.0f}{result['round_s']:>9.3f}"
              f"{result['round_s'] * rounds_per_epoch:>9.2f}{result['updates_per_s'] / baseline['updates_per_s']:>14.2f}x"
              f"   (evaluation of all {n_clients} clients: {result['eval_round_s']:.2f} s)")
        print("    mean per round: " + ", ".join(f"{k[:-2]} {v * 1e3:.1f} ms" for k, v in result["phases"].items()))
    floor_s = ray_floor(base_exp, args.rounds)
    print(f"Ray's own cost per round (echo workers answering with one real round's uploads, no training): "
          f"{floor_s * 1e3:.1f} ms, {floor_s / baseline['round_s']:.2f}x the whole in-process round")
    driver_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: driver {driver_peak_mib:.0f} MiB")
    if started_ray:
        ray.shutdown()
    if args.report:
        measured = SpeedMeasurements(baseline, on_ray_rows, floor_s, driver_peak_mib, limit)
        write_page(speed_page(job_command(__file__, argv), dataset_title(base_exp.world.dataset.name), cfg, args.rounds,
                              n_clients, measured), args.report)
    missed = [what for what, met in goal_verdicts(baseline, on_ray_rows, floor_s, limit) if not met]
    for what in missed:
        print(f"goal missed: {what}")
    return EXIT_GOAL_MISSED if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
