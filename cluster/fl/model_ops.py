"""What the server and the aggregator need to know about a model family, behind one interface:
its initial global parameters, what a client's round costs (work, bytes down, bytes up), the
settings a client trains with, how uploads merge and average, and how evaluations summarize.

``NCFOps`` (GMF / MLP / NeuMF, leave-one-out ranking) and ``ClickOps`` (DLRM / DIN, AUC;
``cluster/fl/click_ops.py``) implement it, so the round loop is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np
import torch

from cluster.fl.aggregation import fedavg, merge_results
from cluster.fl.local_training import LocalResult
from cluster.fl.records import evaluation_summary
from cluster.models.ncf import NCFSpec, init_global
from cluster.tiers.optimizations import TierPlan


@dataclass(frozen=True)
class RoundCosts:
    """Per selected client (k,): samples it computes over, bytes it downloads and uploads, and
    the share of the full model's work it does."""

    work_samples: np.ndarray
    download_bytes: np.ndarray
    upload_bytes: np.ndarray
    compute_fraction: np.ndarray


class ModelOps(Protocol):
    def init_params(self, seed: int) -> dict[str, np.ndarray]: ...

    def round_costs(self, clients: np.ndarray, tiers: np.ndarray, samples: np.ndarray, plan: TierPlan) -> RoundCosts: ...

    def client_settings(self, tiers: np.ndarray, plan: TierPlan): ...

    def merge(self, results: list): ...

    def average(self, merged, weights: Optional[np.ndarray] = None) -> dict[str, np.ndarray]: ...

    def upload_stats(self, merged) -> dict: ...

    def summarize(self, owners: np.ndarray, a: np.ndarray, b: np.ndarray, tier_of_user: np.ndarray,
                  tier_names: tuple[str, ...], split: str) -> dict[str, float]: ...


def estimated_upload_bytes(spec: NCFSpec, samples: np.ndarray) -> np.ndarray:
    """A client uploads the item rows it touched (at most its sample count) and the dense weights."""
    return np.minimum(samples, spec.n_items) * spec.row_bytes() + spec.dense_bytes()


@dataclass(frozen=True)
class NCFOps:
    """``samples`` are a client's positives; it trains on them plus ``negatives_per_positive`` each."""

    spec: NCFSpec
    negatives_per_positive: int
    metric_names: tuple[str, str] = ("hr10", "ndcg10")

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        generator = torch.Generator().manual_seed(seed)
        return {name: t.numpy().astype(np.float32) for name, t in init_global(self.spec, generator).items()}

    def round_costs(self, clients: np.ndarray, tiers: np.ndarray, samples: np.ndarray, plan: TierPlan) -> RoundCosts:
        work = samples * (1 + self.negatives_per_positive)
        ones = np.ones(len(clients))
        return RoundCosts(work, ones * self.spec.model_bytes(), estimated_upload_bytes(self.spec, work), ones)

    def client_settings(self, tiers: np.ndarray, plan: TierPlan) -> None:
        return None  # NCF clients all train the same full model (compression is refused by the config)

    def merge(self, results: list[LocalResult]) -> LocalResult:
        return merge_results(results, self.spec)

    def average(self, merged: LocalResult, weights: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        if weights is not None:
            raise NotImplementedError("per-client aggregation weights are implemented for click models only")
        return fedavg(merged, self.spec)

    def upload_stats(self, merged: LocalResult) -> dict:
        return {"upload_rows": int(merged.touched_rows.sum())}

    def summarize(self, owners, hit, ndcg, tier_of_user, tier_names, split: str = "test") -> dict[str, float]:
        return evaluation_summary(owners, hit, ndcg, tier_of_user, tier_names)
