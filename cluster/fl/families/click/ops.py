"""``ModelOps`` for the click models (DLRM / DIN): tier-aware widths and compressed uploads,
HeteroFL-masked FedAvg, AUC per tier. See ``cluster/fl/families/base.py`` for the interface."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Optional

import numpy as np

from cluster.fl.aggregation import fastagg_dense_rows
from cluster.fl.families.click.auc_metrics import auc_summary
from cluster.fl.aggregation import empty_update, fedavg, merge_updates
from cluster.fl.families.click.upload import dense_entries
from cluster.fl.clock import RoundCosts
from cluster.fl.families.base import NOTHING_EXTRA
from cluster.fl.strategies.base import ExtraPayload
from cluster.fl.families.click.model import ClickSpec, channel_masks, is_embedding
from cluster.tiers.optimizations import TierPlan
from cluster.fl.types import ClientSettings, ClientUpdate
from configs.fl_schema import TouchedUpload, UploadConfig


@dataclass(frozen=True)
class ClickOps:
    """sparse_entries, sparse_rows: (n_users,) embedding entries and row ids each client uploads
    (fixed by its data and ``upload``: ``click_upload.upload_size``); proxy_upload: clients also
    upload CEAG's pairwise-proxy gradient, the same entries again under the same row ids."""

    spec: ClickSpec
    sparse_entries: np.ndarray
    sparse_rows: np.ndarray
    upload: UploadConfig = TouchedUpload()
    proxy_upload: bool = False
    metric_names: tuple[str, ...] = ("auc",)

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        # Imported here: the aggregator unpickles these ops but is sent w⁰, so it never loads torch.
        from cluster.fl.families.click.net import initial_params

        return initial_params(self.spec, seed)

    def _dense_work(self, width: float) -> float:
        return dense_entries(self.spec, width) / dense_entries(self.spec, 1.0)

    def round_costs(
        self,
        clients: np.ndarray,
        tiers: np.ndarray,
        samples: np.ndarray,
        plan: TierPlan,
        extra: ExtraPayload = NOTHING_EXTRA,
        passes: float = 1.0,
    ) -> RoundCosts:
        width = plan.width(tiers).astype(np.float64)
        by_width = {
            w: (self.spec.model_bytes(w), dense_entries(self.spec, w), self._dense_work(w)) for w in np.unique(width)
        }
        download = np.array([by_width[w][0] for w in width], dtype=np.float64) + extra.download_bytes
        copies = 2 if self.proxy_upload else 1
        model_entries = np.array([by_width[w][1] for w in width], dtype=np.float64) + self.sparse_entries[clients]
        entries = copies * model_entries + extra.upload_entries
        n_tensors = copies * len(self.spec.shapes()) + extra.tensors
        upload = plan.upload_bytes(tiers, entries, self.sparse_rows[clients], n_tensors)
        compute = np.array([by_width[w][2] for w in width], dtype=np.float64)
        trained = np.ceil(np.asarray(samples, np.float64) * plan.sample_share(tiers))  # as local_subsample
        return RoundCosts(trained * passes, download, upload, compute)

    def client_settings(self, tiers: np.ndarray, plan: TierPlan) -> ClientSettings:
        share = plan.sample_share(tiers) if plan.kind == "subsample" else None
        return ClientSettings(
            plan.kind,
            plan.compression_level(tiers),
            plan.rescale_pruned,
            self.upload,
            width=plan.width(tiers),
            sample_share=share,
        )

    def merge(self, results: list[ClientUpdate]) -> ClientUpdate:
        return merge_updates(results, empty_update(self.spec.shapes()))

    def average(self, merged: ClientUpdate, weights: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """Every parameter is sent whole (``dense_deltas``): there are no sparse rows."""
        return fedavg(merged, 0, weights, partial(channel_masks, self.spec))

    def held_entries(self, width: float) -> dict[str, np.ndarray]:
        return channel_masks(self.spec, width)

    def upload_stats(self, merged: ClientUpdate) -> dict:
        rows = sum(int((np.abs(d).sum(axis=2) > 0).sum()) for n, d in merged.dense_deltas.items() if is_embedding(n))
        return {"upload_rows": rows}

    def fastagg(self, merged: ClientUpdate) -> dict[str, np.ndarray]:
        """Every embedding table is shared (there is no user table), so FastAgg sets them all."""
        return {table: fastagg_dense_rows(merged.dense_deltas[table]) for table in self.spec.item_tables}

    def summarize(self, owners, labels, scores, tier_of_user, tier_names, split: str = "test") -> dict[str, float]:
        return auc_summary(owners, labels, scores, tier_of_user, tier_names, split)
