"""How fast do the click models train, and do they learn? Train DLRM and DIN in process on RF²'s
click task through the one round loop the simulations use; print the training loss, held-out AUC
and client updates per second, and the training's fraction of its arithmetic limits.

    python jobs/bench_click.py [--config configs/rf2_dlrm_ml100k.yaml] [--models dlrm din] [--rounds 60]
                               [--clients 100] [--epochs 1] [--history 50] [--eval-every 10]
                               [--check] [--report docs/results/click-speed.md]

Click = 5 stars; each user's latest ``data.holdout_fraction`` of ratings is held out. The recipe is
the config's (RF²'s: client SGD lr 1.0, server AdaGrad lr 0.1); the options override its rounds,
clients per round, local epochs, history length and the two learning rates. No Ray: this measures
the models and their training kernel on one thread (as inside a worker actor). Prints the
single-feature baselines for scale.

A round's arithmetic is its multiply-adds (the click family's ``flops.py``: the model's products
for the population's mean client, times the clients a round). Two limits are printed, each that
count at one thread's rate measured in the same run: elementwise (``np.multiply(a, b, out=o);
np.add(o, c, out=o)`` over float32 arrays of 2**23 elements) and
matrix products (a 256 x 256 float32 product). The fraction is the limit's time over the
measured training time a round; the elementwise fraction can pass 1, since BLAS's products beat
elementwise passes. ``--check`` holds each model to a fraction of its matrix-product limit;
``--report`` writes the results page.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cluster.fl.arithmetic_limit import ArithmeticLimit, elementwise_rate, matrix_product_rate
from configs import SimConfig
from jobs.lib.cli import config_parser, first_paragraph, load_or_exit, run_guarded
from jobs.lib.job_page import dataset_title, job_command, seeds_phrase, write_page
from jobs.lib.results_page import ResultsPage, add_report_argument, markdown_table

# The speed goal: each model's training a round at least this fraction of the least time its
# multiply-adds take as one thread's matrix products, measured in the same run. --check exits
# EXIT_GOAL_MISSED when a model misses it.
MATRIX_FRACTION_GOAL = 0.08
EXIT_GOAL_MISSED = 3


def model_config(base: SimConfig, kind: str, args) -> SimConfig:
    data = base.model_dump(mode="json")
    data["model"] = {**data["model"], "kind": kind, "history_len": args.history}
    data["fl"] = {**data["fl"], "rounds": args.rounds, "clients_per_round": args.clients, "local_epochs": args.epochs,
                  "eval_every": args.eval_every}
    if args.client_lr is not None:
        data["fl"]["client_lr"] = args.client_lr
    if args.server_lr is not None:
        data["fl"]["server_lr"] = args.server_lr
    return SimConfig.model_validate(data)


# A round is hundreds of millions of multiply-adds (DIN's billions): arrays that large would not
# fit in memory, and the elementwise rate stops changing once arrays are well past the caches.
RATE_ELEMENTS = 2**23


def round_multiply_adds(exp, cfg: SimConfig) -> float:
    """Multiply-adds of one round's local training: the population's mean client, times the
    clients a round."""
    return float(exp.setup.multiply_adds(cfg.fl.local_epochs).mean()) * cfg.fl.clients_per_round


@dataclass(frozen=True)
class ClickSpeed:
    """One model's run: its client updates per second over the training phase, training time a
    round, the final held-out AUC, and the round's arithmetic at the two single-thread rates."""

    kind: str
    n_params: int
    updates_per_s: float
    train_round_s: float
    auc: float
    elementwise: ArithmeticLimit
    matrix_product: ArithmeticLimit


@dataclass(frozen=True)
class Rates:
    """One thread's multiply-adds per second, measured once a run: elementwise and as matrix products."""

    elementwise: float
    matrix_product: float


def measure_rates() -> Rates:
    return Rates(elementwise_rate(RATE_ELEMENTS), matrix_product_rate())


def run_model(cfg: SimConfig, rates: Rates) -> ClickSpeed:
    from cluster.fl.experiment import build
    from cluster.fl.inprocess import round_loop

    exp = build(cfg)
    loop = round_loop(exp, cfg.fl.eval_every)
    n_params = sum(int(np.prod(shape)) for shape in exp.spec.shapes().values())
    print(f"\n{cfg.model.kind.upper()}: {n_params:,} parameters, {cfg.fl.clients_per_round} clients/round, "
          f"{cfg.fl.local_epochs} local epoch(s), server {cfg.fl.server_optimizer.kind} lr {cfg.fl.server_lr}")
    print(f"{'round':>6}{'train loss':>12}{'test AUC':>10}{'updates/s':>11}")
    train_s, updates, auc = 0.0, 0, float("nan")
    for _ in range(cfg.fl.rounds):
        record = loop.run_round()
        train_s += record["train_s"]
        updates += record["aggregated"]
        if "auc" in record:
            auc = record["auc"]
            print(f"{record['round']:>6}{record['train_loss']:>12.4f}{auc:>10.4f}"
                  f"{updates / max(train_s, 1e-9):>11,.0f}", flush=True)
    multiply_adds = round_multiply_adds(exp, cfg)
    speed = ClickSpeed(cfg.model.kind, n_params, updates / max(train_s, 1e-9), train_s / max(cfg.fl.rounds, 1), auc,
                       ArithmeticLimit(multiply_adds, rates.elementwise),
                       ArithmeticLimit(multiply_adds, rates.matrix_product))
    print(f"arithmetic: {multiply_adds / 1e6:,.0f} M multiply-adds a round; training took "
          f"{speed.train_round_s * 1e3:,.1f} ms a round: {limit_phrase(speed.elementwise, speed.train_round_s)} "
          f"elementwise, {limit_phrase(speed.matrix_product, speed.train_round_s)} as matrix products")
    return speed


def limit_phrase(limit: ArithmeticLimit, round_s: float) -> str:
    return f"{limit.fraction(round_s):.2f} of the limit at {limit.rate / 1e9:.1f} G/s ({limit.seconds * 1e3:,.1f} ms)"


def goal_verdicts(speeds: Sequence[ClickSpeed]) -> list[tuple[str, bool]]:
    """Each model's speed goal in words, and whether this run met it."""
    return [(f"{s.kind.upper()} training at {s.matrix_product.fraction(s.train_round_s):.2f} of its matrix-product "
             f"limit (goal: at least {MATRIX_FRACTION_GOAL:.2f})",
             s.matrix_product.fraction(s.train_round_s) >= MATRIX_FRACTION_GOAL) for s in speeds]


def speed_page(command: str, dataset: str, cfg: SimConfig, speeds: Sequence[ClickSpeed]) -> ResultsPage:
    page = ResultsPage(
        title=f"Click-model training speed: DLRM and DIN on {dataset}, {cfg.fl.clients_per_round} clients per round",
        command=command, seeds=[cfg.seed],
        intro=(f"{cfg.fl.rounds} rounds per model in one process (no Ray), one thread, {cfg.fl.local_epochs} local "
               f"epoch(s), histories of the latest {cfg.model.history_len} clicks. Updates per second count the "
               "training phase only; evaluation is not timed."))
    page.add("Client updates per second", markdown_table(
        ["model", "parameters", "updates/s", "train (ms/round)", "held-out AUC", "multiply-adds a round",
         "fraction of the elementwise limit", "fraction of the matrix-product limit"],
        [[s.kind.upper(), f"{s.n_params:,}", f"{s.updates_per_s:,.0f}", f"{1e3 * s.train_round_s:.1f}", f"{s.auc:.4f}",
          f"{s.elementwise.multiply_adds / 1e6:,.0f} M", f"{s.elementwise.fraction(s.train_round_s):.2f}",
          f"{s.matrix_product.fraction(s.train_round_s):.2f}"] for s in speeds]))
    rates = speeds[0]  # one measurement a run, shared by every model
    lines = [f"- {what}: {'met' if met else 'not met'} in this run." for what, met in goal_verdicts(speeds)]
    lines += [
        f"- The limits are a round's multiply-adds (three forward passes' worth a local step, for the population's "
        f"mean client) at one thread's rate measured in the same run: {rates.elementwise.rate / 1e9:.2f} G/s for "
        f"`np.multiply` then `np.add` on float32 arrays, {rates.matrix_product.rate / 1e9:.1f} G/s for a 256 x 256 "
        "float32 matrix product. The dense layers are matrix products, so training can pass the elementwise limit; "
        "the matrix-product limit is what a round would take if all its arithmetic ran as large products.",
        f"- One run, {seeds_phrase([cfg.seed])}: no confidence interval. Compare ratios within one run, "
        "not across pages.",
    ]
    page.add("What the run shows", "\n".join(lines))
    return page


def main(argv: Sequence[str] | None = None) -> int:
    parser = config_parser(first_paragraph(__doc__), default_config="configs/rf2_dlrm_ml100k.yaml")
    parser.add_argument("--models", nargs="+", choices=["dlrm", "din"], default=["dlrm", "din"],
                        help="click models to train, one after the other (default: both)")
    parser.add_argument("--rounds", type=int, default=60, help="rounds per model (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=100, help="clients per round (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="local epochs per client (default: %(default)s)")
    parser.add_argument("--history", type=int, default=50, help="most recent clicks a sample sees")
    parser.add_argument("--client-lr", type=float, default=None,
                        help="clients' local learning rate (default: the config's fl.client_lr)")
    parser.add_argument("--server-lr", type=float, default=None,
                        help="the server optimizer's learning rate (default: the config's fl.server_lr)")
    parser.add_argument("--eval-every", type=int, default=10,
                        help="rounds between test AUC measurements; the last round is always measured "
                             "(default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help=f"exit {EXIT_GOAL_MISSED} when a model trains at less than {MATRIX_FRACTION_GOAL} of "
                             "its matrix-product limit")
    add_report_argument(parser)
    args = parser.parse_args(argv)
    base = load_or_exit(args)
    torch.set_num_threads(1)

    from cluster.fl.experiment import build

    exp = build(model_config(base, args.models[0], args))
    setup = exp.setup
    print(f"{exp.world.dataset.name}: {len(setup.train_rows):,} train / {len(setup.test_rows):,} test ratings, "
          f"click rate {setup.features.label.mean():.3f}")
    for name, auc in setup.single_feature_aucs().items():
        print(f"baseline AUC, {name} alone: {auc:.4f}")
    rates = measure_rates()
    speeds = [run_model(model_config(base, kind, args), rates) for kind in args.models]
    if args.report:
        write_page(speed_page(job_command(__file__, argv), dataset_title(exp.world.dataset.name),
                              model_config(base, args.models[0], args), speeds), args.report)
    missed = [what for what, met in goal_verdicts(speeds) if not met]
    for what in missed:
        print(f"goal missed: {what}")
    return EXIT_GOAL_MISSED if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
