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

from cluster.fl import cali3f, ditto
from cluster.fl.aggregation import fedavg, merge_results
from cluster.fl.local_training import LocalResult
from cluster.fl.records import evaluation_summary
from cluster.fl.worker_core import NCFSettings
from cluster.models.ncf import NCFSpec, initial_params
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


@dataclass(frozen=True)
class NCFOps:
    """``samples`` are a client's positives; it trains on them plus ``negatives_per_positive`` each.
    ``strategy`` (fedavg, cali3f, ditto) sets what a client computes, downloads and uploads."""

    spec: NCFSpec
    negatives_per_positive: int
    strategy: str = "fedavg"
    metric_names: tuple[str, str] = ("hr10", "ndcg10")

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        return initial_params(self.spec, seed)

    def round_costs(self, clients: np.ndarray, tiers: np.ndarray, samples: np.ndarray, plan: TierPlan) -> RoundCosts:
        """A client uploads the item rows it touched (at most its sample count) and the dense
        weights. A Cali3F delegate also downloads its cluster's dense part and uploads its pass
        at it and its user-vector change; Cali3F and Ditto clients train two models (two passes)."""
        spec = self.spec
        samples = np.asarray(samples, dtype=np.float64)
        work = samples * (1 + self.negatives_per_positive)
        rows = np.minimum(work, spec.n_items)
        dense_entries = spec.dense_bytes() // 4
        entries = rows * len(spec.item_tables) * spec.dim + dense_entries
        download = np.full(len(clients), float(spec.model_bytes()))
        n_tensors = len(spec.item_tables) + len(spec.dense_shapes())
        if self.strategy == "cali3f":
            entries = entries + dense_entries + len(spec.user_tables) * spec.dim
            download = download + spec.dense_bytes()
            n_tensors += len(spec.dense_shapes()) + len(spec.user_tables)
        passes = {"fedavg": 1.0, "cali3f": cali3f.COMPUTE_MULTIPLIER, "ditto": ditto.COMPUTE_MULTIPLIER}[self.strategy]
        upload = plan.upload_bytes(tiers, entries, rows, n_tensors)
        return RoundCosts(work * passes, download, upload, np.ones(len(clients)))

    def client_settings(self, tiers: np.ndarray, plan: TierPlan) -> Optional[NCFSettings]:
        if plan.compression_level(tiers).any():
            return NCFSettings(plan.kind, plan.compression_level(tiers), plan.rescale_pruned)
        return None

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
