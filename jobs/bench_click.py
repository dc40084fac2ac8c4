"""Do the click models learn? Train DLRM and DIN with in-process FedAvg on RF²'s click task and print
the test AUC per round.

    python jobs/bench_click.py [--config configs/ml100k.yaml] [--models dlrm din] [--rounds 60]
                               [--clients 100] [--epochs 1] [--history 50] [--eval-every 10]

Click = 5 stars; each user's latest ``data.holdout_fraction`` of ratings is held out (the world's
``click_holdout``); clients train full-batch SGD lr 1.0 on their own train ratings, the server
applies AdaGrad lr 0.1 (RF²). No Ray: this measures the models and their batched training, one
torch thread (as inside a worker actor). Prints the single-feature baselines for scale.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import time
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from cluster.data.click_features import (
    ClickFeatures,
    build_click_features,
    rows_by_user,
)
from cluster.fl.server_optimizers.adagrad import Adagrad
from cluster.fl.families.click.batches import click_auc
from cluster.fl.local_sgd import LocalRecipe
from cluster.fl.families.click.training import fedavg_round
from cluster.models.click import ClickSpec
from cluster.models.click_net import init_params
from cluster.rng import stream
from cluster.world import build_world
from jobs.lib.cli import config_parser, load_or_exit, run_guarded, first_paragraph


def baselines(features: ClickFeatures, train_rows: np.ndarray, test_rows: np.ndarray) -> dict[str, float]:
    """AUC of one feature alone: the user's prior click rate, the item's train click rate."""
    labels = features.label[test_rows]
    clicks = np.bincount(features.item[train_rows], weights=features.label[train_rows], minlength=features.n_items)
    rated = np.bincount(features.item[train_rows], minlength=features.n_items)
    item_rate = (clicks + 1) / (rated + 5)
    return {
        "user prior click rate": float(roc_auc_score(labels, features.dense[test_rows, 1])),
        "item train click rate": float(roc_auc_score(labels, item_rate[features.item[test_rows]])),
    }


def run_model(kind: str, args, features: ClickFeatures, indptr: np.ndarray, rows: np.ndarray, test_rows: np.ndarray,
              seed: int) -> None:
    spec = ClickSpec.for_features(kind, features, history_len=args.history)
    params = {k: v.numpy() for k, v in init_params(spec, torch.Generator().manual_seed(seed)).items()}
    server = Adagrad(args.server_lr)
    recipe = LocalRecipe.one_rate(args.client_lr, epochs=args.epochs)
    eligible = np.flatnonzero(np.diff(indptr) > 0)
    rng = stream(seed, "click_selection")
    n_params = sum(v.size for v in params.values())
    print(f"\n{kind.upper()}: {n_params:,} parameters, {args.clients} clients/round, {args.epochs} local epoch(s)")
    print(f"{'round':>6}{'train loss':>12}{'test AUC':>10}{'updates/s':>11}")
    train_s, updates = 0.0, 0
    for r in range(1, args.rounds + 1):
        clients = np.sort(rng.choice(eligible, size=min(args.clients, len(eligible)), replace=False))
        started = time.perf_counter()
        result = fedavg_round(spec, recipe, params, server, features, indptr, rows, clients)
        train_s += time.perf_counter() - started
        updates += len(clients)
        if r % args.eval_every == 0 or r == args.rounds:
            loss = np.average(result.loss, weights=result.n_samples)
            auc = click_auc(spec, params, features, test_rows)
            print(f"{r:>6}{loss:>12.4f}{auc:>10.4f}{updates / train_s:>11,.0f}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = config_parser(first_paragraph(__doc__), default_config="configs/ml100k.yaml")
    parser.add_argument("--models", nargs="+", choices=["dlrm", "din"], default=["dlrm", "din"],
                        help="click models to train, one after the other (default: both)")
    parser.add_argument("--rounds", type=int, default=60, help="FedAvg rounds per model (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=100, help="clients per round (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="local epochs per client (default: %(default)s)")
    parser.add_argument("--history", type=int, default=50, help="most recent clicks a sample sees")
    parser.add_argument("--client-lr", type=float, default=1.0,
                        help="clients' local learning rate (default: %(default)s)")
    parser.add_argument("--server-lr", type=float, default=0.1,
                        help="the server's Adagrad learning rate (default: %(default)s)")
    parser.add_argument("--eval-every", type=int, default=10,
                        help="rounds between test AUC measurements; the last round is always measured "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    cfg = load_or_exit(args)
    torch.set_num_threads(1)

    world = build_world(cfg)
    holdout = world.click_holdout
    features = build_click_features(world.dataset, world.clicks, holdout.train_rows)
    indptr, rows = rows_by_user(features, holdout.train_rows, world.dataset.n_users)
    print(f"{world.dataset.name}: {len(holdout.train_rows):,} train / {len(holdout.test_rows):,} test ratings, "
          f"click rate {features.label.mean():.3f}")
    for name, auc in baselines(features, holdout.train_rows, holdout.test_rows).items():
        print(f"baseline AUC, {name} alone: {auc:.4f}")
    for kind in args.models:
        run_model(kind, args, features, indptr, rows, holdout.test_rows, cfg.seed)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
