"""Do the click models learn, and how fast? Train DLRM and DIN in process on RF²'s click task through
the one round loop the simulations use; print the training loss, held-out AUC and client updates
per second, and the training's fraction of its arithmetic limit.

    python jobs/bench_click.py [--config configs/rf2_dlrm_ml100k.yaml] [--models dlrm din] [--rounds 60]
                               [--clients 100] [--epochs 1] [--history 50] [--eval-every 10]

Click = 5 stars; each user's latest ``data.holdout_fraction`` of ratings is held out. The recipe is
the config's (RF²'s: client SGD lr 1.0, server AdaGrad lr 0.1); the options override its rounds,
clients per round, local epochs, history length and the two learning rates. No Ray: this measures
the models and their batched training, one torch thread (as inside a worker actor). Prints the
single-feature baselines for scale.

The arithmetic limit of a round is its multiply-adds (the click family's ``flops.py``: the
model's products for the population's mean client, times the clients a round) at the rate one
thread does ``np.multiply(a, b, out=o); np.add(o, c, out=o)`` over float32 arrays as long as that
count (at most 2**23 elements), measured in the same run; the fraction is that time over the
measured training time a round. Above 1 is possible: BLAS's products beat elementwise passes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from collections.abc import Sequence

import numpy as np
import torch

from configs import SimConfig
from jobs.lib.cli import config_parser, first_paragraph, load_or_exit, run_guarded


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


RATE_ELEMENTS = 2**23


def elementwise_rate(n_elements: int, repeats: int = 5) -> float:
    """Multiply-adds per second of one thread's ``np.multiply`` then ``np.add`` over float32 arrays
    of ``n_elements``: the best of ``repeats`` (a busy machine only makes a run slower)."""
    n = max(1, min(int(n_elements), RATE_ELEMENTS))
    rng = np.random.default_rng(0)
    a, b, c = (rng.random(n, dtype=np.float32) for _ in range(3))
    out = np.empty(n, np.float32)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        np.multiply(a, b, out=out)
        np.add(out, c, out=out)
        best = min(best, time.perf_counter() - started)
    return n / best


def round_multiply_adds(exp, cfg: SimConfig) -> float:
    """Multiply-adds of one round's local training: the population's mean client, times the
    clients a round."""
    return float(exp.setup.multiply_adds(cfg.fl.local_epochs).mean()) * cfg.fl.clients_per_round


def run_model(cfg: SimConfig) -> None:
    from cluster.fl.experiment import build
    from cluster.fl.inprocess import round_loop

    exp = build(cfg)
    loop = round_loop(exp, cfg.fl.eval_every)
    n_params = sum(int(np.prod(shape)) for shape in exp.spec.shapes().values())
    print(f"\n{cfg.model.kind.upper()}: {n_params:,} parameters, {cfg.fl.clients_per_round} clients/round, "
          f"{cfg.fl.local_epochs} local epoch(s), server {cfg.fl.server_optimizer.kind} lr {cfg.fl.server_lr}")
    print(f"{'round':>6}{'train loss':>12}{'test AUC':>10}{'updates/s':>11}")
    train_s, updates = 0.0, 0
    for _ in range(cfg.fl.rounds):
        record = loop.run_round()
        train_s += record["train_s"]
        updates += record["aggregated"]
        if "auc" in record:
            print(f"{record['round']:>6}{record['train_loss']:>12.4f}{record['auc']:>10.4f}"
                  f"{updates / max(train_s, 1e-9):>11,.0f}", flush=True)
    multiply_adds = round_multiply_adds(exp, cfg)
    rate = elementwise_rate(int(multiply_adds))
    limit_s, round_s = multiply_adds / rate, train_s / max(cfg.fl.rounds, 1)
    print(f"arithmetic limit: {multiply_adds / 1e6:,.0f} M multiply-adds a round at {rate / 1e9:.2f} G/s elementwise "
          f"= {limit_s * 1e3:,.1f} ms; training took {round_s * 1e3:,.1f} ms a round: "
          f"{limit_s / round_s:.2f} of the limit")


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
    for kind in args.models:
        run_model(model_config(base, kind, args))
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
