"""A tier-aware optimization (``fl.optimization``) resolved against the fleet's tiers: per-tier
arrays the server and the workers index by a client's tier, and what the optimization does to a
client's round — the bytes it uploads, the share of the model it downloads and computes.

Latency follows the optimization consistently (RF²'s point: each one buys speed):
- prune: only the kept entries travel (plus the mask's seed, as in ``compression.prune_random``);
- quant / quants: ``bits`` per entry plus the range (two floats for quant, one for quants) per
  tensor;
- channel: a narrower model to download, train and upload. Download and upload scale with the
  parameters it holds; compute with its dense (MLP) parameters, since an embedding lookup is a
  copy while every MLP weight is a multiply-add per sample.
- subsample: a client trains on a random share of its samples each round, so its compute (and
  weight in FedAvg) shrinks while its upload does not: a slow tier kept in the round instead of
  excluded;
- exclude, overselect: act on selection, not on a client's round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from configs.schema import OptimizationConfig, levels_of

FLOAT_BYTES = 4
INDEX_BYTES = 4  # a row id of a sparse (embedding-row) upload
_NEUTRAL = {"prune": 0.0, "quant": 32.0, "quants": 32.0, "channel": 1.0, "subsample": 1.0}


@dataclass(frozen=True)
class TierPlan:
    """kind: the optimization; excluded: (n_tiers,) tiers that never train; level: (n_tiers,)
    prune share / bits / width / sample share (neutral where a tier is untouched); overselect: the fraction
    selected in excess, the slowest dropped."""

    kind: str
    excluded: np.ndarray
    level: np.ndarray
    overselect: float
    rescale_pruned: bool = False

    @classmethod
    def resolve(cls, cfg: OptimizationConfig, overselect: float, tier_names: tuple[str, ...]) -> "TierPlan":
        neutral = _NEUTRAL.get(cfg.kind, 0.0)
        levels = levels_of(cfg)
        level = np.array([levels.get(name, neutral) for name in tier_names], dtype=np.float64)
        excluded = np.array([name in getattr(cfg, "excluded_tiers", ()) for name in tier_names])
        return cls(cfg.kind, excluded, level, overselect, getattr(cfg, "rescale_pruned", False))

    def width(self, tiers: np.ndarray) -> np.ndarray:
        """(n,) width fraction of each client's model (1 unless channel)."""
        if self.kind != "channel":
            return np.ones(len(tiers), dtype=np.float32)
        return self.level[tiers].astype(np.float32)

    def sample_share(self, tiers: np.ndarray) -> np.ndarray:
        """(n,) share of its local samples each client trains on (1 unless subsample)."""
        if self.kind != "subsample":
            return np.ones(len(tiers))
        return self.level[tiers]

    def compression_level(self, tiers: np.ndarray) -> np.ndarray:
        """(n,) prune share or bits per client; 0 (unused) for kinds that do not compress."""
        if self.kind not in ("prune", "quant", "quants"):
            return np.zeros(len(tiers))
        return self.level[tiers]

    def upload_bytes(
        self, tiers: np.ndarray, entries: np.ndarray, sparse_rows: np.ndarray, n_tensors: int
    ) -> np.ndarray:
        """(n,) bytes each client uploads: ``entries`` (n,) values (its dense weights at its width
        and the embedding rows it touched), ``sparse_rows`` (n,) row ids sent with them."""
        entries = np.asarray(entries, dtype=np.float64)
        index = np.asarray(sparse_rows, dtype=np.float64) * INDEX_BYTES
        level = self.compression_level(np.asarray(tiers))
        if self.kind == "prune":
            return np.round(entries * (1.0 - level)) * FLOAT_BYTES + index + 8
        if self.kind in ("quant", "quants"):
            range_bytes = (2 if self.kind == "quant" else 1) * FLOAT_BYTES * n_tensors
            packed = np.where(level >= 32, entries * FLOAT_BYTES, np.ceil(entries * level / 8) + range_bytes)
            return packed + index
        return entries * FLOAT_BYTES + index
