"""``ModelOps`` for the NCF models (GMF / MLP / NeuMF): a client's positives and sampled
negatives priced on the virtual clock, its item rows uploaded sparsely, FedAvg over them,
HR/NDCG per tier. See ``cluster/fl/families/base.py`` for the interface."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Optional

import numpy as np

from cluster.fl.aggregation import empty_update, fedavg, merge_updates
from cluster.fl.aggregation import fastagg_item_deltas
from cluster.fl.clock import RoundCosts
from cluster.fl.rank_metrics import count_rate_by_tier
from cluster.fl.families.base import NOTHING_EXTRA
from cluster.fl.strategies.base import ExtraPayload
from cluster.fl.upload_rows import decoy_count
from cluster.fl.rank_metrics import evaluation_summary
from cluster.fl.families.ncf.gmf_training import gmf_multiply_adds
from cluster.fl.families.ncf.model import NCFSpec, channel_masks
from cluster.tiers.optimizations import TierPlan
from cluster.fl.types import ClientSettings, ClientUpdate
from configs.fl_schema import TouchedUpload, UploadConfig


def sent_item_rows(upload: UploadConfig, touched: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(item rows each client sends (n,), row ids among them) given the rows it touches (n,):
    a dense upload sends every row in table order, so no ids; padded adds its decoys."""
    touched = np.asarray(touched, dtype=np.float64)
    if upload.kind == "dense":
        return np.full(len(touched), float(n_items)), np.zeros(len(touched))
    if upload.kind == "padded":
        rows = touched + decoy_count(touched, n_items, upload.pad_ratio)
        return rows, rows
    return touched, touched


@dataclass(frozen=True)
class NCFOps:
    """``samples`` are a client's positives; it trains on them plus ``negatives_per_positive`` each,
    and uploads the item rows ``upload`` says."""

    spec: NCFSpec
    negatives_per_positive: int
    metric_names: tuple[str, str] = ("hr10", "ndcg10")
    upload: UploadConfig = TouchedUpload()

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        # Imported here: the aggregator unpickles these ops but is sent w⁰, so it never loads torch.
        from cluster.fl.families.ncf.net import initial_params

        return initial_params(self.spec, seed)

    def round_costs(
        self,
        clients: np.ndarray,
        tiers: np.ndarray,
        samples: np.ndarray,
        plan: TierPlan,
        extra: ExtraPayload = NOTHING_EXTRA,
        passes: float = 1.0,
    ) -> RoundCosts:
        """A client uploads the item rows it touched (at most its sample count) and the dense
        weights, plus what its strategy adds (``extra``; a Cali3F delegate: its pass at its
        cluster's dense part and its user-vector change), and computes ``passes`` times."""
        spec = self.spec
        samples = np.asarray(samples, dtype=np.float64)
        work = samples * (1 + self.negatives_per_positive)
        rows, ids = sent_item_rows(self.upload, np.minimum(work, spec.n_items), spec.n_items)
        dense = self._dense_entries(plan.width(tiers))  # a Channel client's sub-model is smaller
        entries = rows * len(spec.item_tables) * spec.dim + dense + extra.upload_entries
        tables = float(spec.model_bytes() - spec.dense_bytes())
        download = tables + 4 * dense + extra.download_bytes
        n_tensors = len(spec.item_tables) + len(spec.dense_shapes()) + extra.tensors
        upload = plan.upload_bytes(tiers, entries, ids, n_tensors)
        return RoundCosts(work * passes, download, upload, dense / (spec.dense_bytes() // 4))

    def local_multiply_adds(self, samples: float, epochs: int) -> Optional[float]:
        """Multiply-adds of the local passes of clients holding ``samples`` positives in all,
        their negatives included, ``epochs`` steps each: what a benchmark holds its time
        against (``cluster/fl/arithmetic_limit.py``). Counted for GMF's hand-written gradient
        only; None for MLP and NeuMF."""
        if self.spec.kind != "gmf":
            return None
        return gmf_multiply_adds(samples * (1 + self.negatives_per_positive), self.spec.dim, epochs)

    def _dense_entries(self, width: np.ndarray) -> np.ndarray:
        """(n,) dense float32 entries of each client's model at its width."""
        full = float(self.spec.dense_bytes() // 4)
        by_width = {
            float(w): full if w == 1.0 else float(sum(m.sum() for m in channel_masks(self.spec, float(w)).values()))
            for w in np.unique(width)
        }
        return np.array([by_width[float(w)] for w in width], dtype=np.float64)

    def client_settings(self, tiers: np.ndarray, plan: TierPlan) -> Optional[ClientSettings]:
        if plan.kind == "channel":
            return ClientSettings(upload=self.upload, width=plan.width(tiers))
        if plan.compression_level(tiers).any():
            return ClientSettings(plan.kind, plan.compression_level(tiers), plan.rescale_pruned, self.upload)
        return None if self.upload.kind == "touched" else ClientSettings(upload=self.upload)

    def merge(self, results: list[ClientUpdate]) -> ClientUpdate:
        return merge_updates(
            results, empty_update(self.spec.dense_shapes(), {t: self.spec.dim for t in self.spec.item_tables})
        )

    def average(self, merged: ClientUpdate, weights: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        return fedavg(merged, self.spec.n_items, weights, partial(channel_masks, self.spec))

    def held_entries(self, width: float) -> dict[str, np.ndarray]:
        return channel_masks(self.spec, width)

    def upload_stats(self, merged: ClientUpdate) -> dict:
        return {"upload_rows": len(merged.item_ids)}

    def fastagg(self, merged: ClientUpdate) -> dict[str, np.ndarray]:
        return fastagg_item_deltas(merged, self.spec.item_tables, self.spec.n_items)

    def summarize(self, owners, a, b, tier_of_user, tier_names, split: str = "test") -> dict[str, float]:
        """test: (clients, HR@10, NDCG@10); train: (clients, pairs ordered correctly, pairs) of
        each client's (positive, sampled negative) pairs, CEAG's pairwise measure (``pair_train``
        overall and per tier)."""
        if split == "train":
            return count_rate_by_tier(owners, a, b, tier_of_user, tier_names, "pair_train")
        return evaluation_summary(owners, a, b, tier_of_user, tier_names)
