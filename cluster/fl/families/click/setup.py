"""Everything a click-model run builds before Ray starts: per-row features of the click view, the
model spec, each client's train rows, and the ops the server prices rounds with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.fl.families.click.features import ClickFeatures, build_click_features, rows_by_user
from cluster.fl.families.click.flops import multiply_adds
from cluster.fl.families.click.ops import ClickOps
from cluster.fl.recipe import LocalRecipe
from cluster.fl.strategies import recipe_settings
from cluster.fl.families.click.upload import upload_size
from cluster.fl.families.click.model import ClickSpec
from cluster.world import World
from configs.schema import SimConfig


@dataclass(frozen=True)
class ClickSetup:
    """train_rows / test_rows: the temporal hold-out of the click view (RF²); train_samples:
    (n_users,) train rows per client; train_pairs: (n_users,) its (click, non-click) pairs."""

    features: ClickFeatures
    spec: ClickSpec
    recipe: LocalRecipe
    ops: ClickOps
    train_rows: np.ndarray
    test_rows: np.ndarray
    train_samples: np.ndarray
    train_pairs: np.ndarray

    def multiply_adds(self, epochs: int) -> np.ndarray:
        """Each client's multiply-adds of local training over all its train rows (``flops.py``),
        for the clients that have any."""
        features = self.features
        indptr, rows = rows_by_user(features, self.train_rows, len(features.click_indptr) - 1)
        pairs = np.minimum(features.prior_clicks[rows], self.spec.history_len).astype(np.int64)
        n_samples, n_pairs = np.diff(indptr), np.add.reduceat(np.r_[pairs, 0], indptr[:-1])
        held = n_samples > 0
        return multiply_adds(self.spec, n_samples[held], n_pairs[held], epochs)

    def single_feature_aucs(self) -> dict[str, float]:
        """Held-out AUC of one feature alone — the user's prior click rate, the item's smoothed
        train click rate: the floor a click model must clear to have learned anything."""
        from sklearn.metrics import roc_auc_score

        features, train, test = self.features, self.train_rows, self.test_rows
        labels = features.label[test]
        clicks = np.bincount(features.item[train], weights=features.label[train], minlength=features.n_items)
        rated = np.bincount(features.item[train], minlength=features.n_items)
        item_rate = (clicks + 1) / (rated + 5)
        return {
            "user prior click rate": float(roc_auc_score(labels, features.dense[test, 1])),
            "item train click rate": float(roc_auc_score(labels, item_rate[features.item[test]])),
        }


def click_spec(cfg: SimConfig, features: ClickFeatures) -> ClickSpec:
    model = cfg.model
    return ClickSpec.for_features(
        model.kind,
        features,
        dim=model.embedding_dim,
        bottom_hidden=tuple(model.bottom_hidden),
        attention_hidden=tuple(model.attention_hidden),
        top_hidden=tuple(model.top_hidden),
        history_len=model.history_len,
        init_std=model.init_std,
    )


def click_setup(cfg: SimConfig, world: World) -> ClickSetup:
    holdout = world.click_holdout
    features = build_click_features(world.dataset, world.clicks, holdout.train_rows)
    spec = click_spec(cfg, features)
    indptr, rows = rows_by_user(features, holdout.train_rows, world.dataset.n_users)
    entries, sparse_rows = upload_size(spec, features, indptr, rows, cfg.fl.upload)
    proxy_upload = getattr(cfg.fl.fairness, "proxy", None) == "pairwise_logistic"
    return ClickSetup(
        features=features,
        spec=spec,
        # One rate for every tensor: the item and user scales are the NCF recipe's.
        recipe=LocalRecipe.one_rate(
            cfg.fl.client_lr,
            epochs=cfg.fl.local_epochs,
            loss_reduction=cfg.fl.loss_reduction,
            ranking_bits=getattr(cfg.fl.fairness, "measure", None) == "pairwise",
            proxy_gradient=proxy_upload,
            **recipe_settings(cfg.fl.strategy),
        ),
        ops=ClickOps(spec, entries, sparse_rows, cfg.fl.upload, proxy_upload=proxy_upload),
        train_rows=np.asarray(holdout.train_rows),
        test_rows=np.asarray(holdout.test_rows),
        train_samples=np.diff(indptr),
        train_pairs=pairs_per_client(features.label[rows], indptr),
    )


def pairs_per_client(labels: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """(C,) clicks × non-clicks of each client of the CSR whose rows have ``labels``."""
    clicks = np.add.reduceat(np.r_[labels >= 0.5, False].astype(np.int64), indptr[:-1]) if len(labels) else 0
    clicks = np.where(np.diff(indptr) > 0, clicks, 0)
    return clicks * (np.diff(indptr) - clicks)
