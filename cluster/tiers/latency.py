"""Simulated per-round latency of a client from its tier's profile.

Each profile gives Gaussian (mean, std) compute seconds per training sample and download /
upload bandwidth; every client draws its own values every round, as in the phone measurement
study RF² builds on. Draws are floored at a fraction of the mean so a wide Gaussian never gives
zero or negative time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from configs.schema import TiersConfig

_BITS_PER_BYTE = 8.0
_BITS_PER_MEGABIT = 1e6


@dataclass(frozen=True)
class TierTable:
    """Tier profiles as arrays, one entry per tier (index = tier id)."""

    names: tuple[str, ...]
    shares: np.ndarray
    compute_mean: np.ndarray
    compute_std: np.ndarray
    download_mean: np.ndarray
    download_std: np.ndarray
    upload_mean: np.ndarray
    upload_std: np.ndarray
    floor_fraction: float

    @classmethod
    def from_config(cls, cfg: TiersConfig) -> "TierTable":
        p = cfg.profiles
        arr = lambda values: np.asarray(values, dtype=np.float64)  # noqa: E731
        return cls(
            names=tuple(t.name for t in p),
            shares=arr([t.share for t in p]) / sum(t.share for t in p),
            compute_mean=arr([t.compute_s_per_sample.mean for t in p]),
            compute_std=arr([t.compute_s_per_sample.std for t in p]),
            download_mean=arr([t.download_mbps.mean for t in p]),
            download_std=arr([t.download_mbps.std for t in p]),
            upload_mean=arr([t.upload_mbps.mean for t in p]),
            upload_std=arr([t.upload_mbps.std for t in p]),
            floor_fraction=cfg.latency_floor_fraction,
        )

    @property
    def n_tiers(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass(frozen=True)
class LatencyBreakdown:
    """Seconds per client for one round; every array is (n_clients,)."""

    compute_s: np.ndarray
    download_s: np.ndarray
    upload_s: np.ndarray

    @property
    def total_s(self) -> np.ndarray:
        return self.compute_s + self.download_s + self.upload_s


def _draw(mean: np.ndarray, std: np.ndarray, floor_fraction: float, rng: np.random.Generator) -> np.ndarray:
    return np.maximum(rng.normal(mean, std), floor_fraction * mean)


@dataclass(frozen=True)
class RoundWork:
    """What each client does in one round: ``n_samples`` (n,) training samples, ``local_epochs``
    passes over them, ``model_bytes`` downloaded and ``upload_bytes`` uploaded (per client, or one
    value for all; upload already after compression). ``model_fraction`` scales both the work and
    the model a client receives, e.g. the share of parameters a narrower (channel-pruned) model
    keeps; ``compute_fraction``, when given, scales the work instead (a narrow model's FLOPs
    shrink faster than its bytes: embeddings stay whole)."""

    n_samples: np.ndarray
    model_bytes: np.ndarray | float
    upload_bytes: np.ndarray | float
    local_epochs: int = 1
    model_fraction: np.ndarray | float = 1.0
    compute_fraction: np.ndarray | float | None = None


def sample_round_latency(
    table: TierTable, tiers: np.ndarray, work: RoundWork, rng: np.random.Generator
) -> LatencyBreakdown:
    """Round latency of clients ``tiers`` (n,) doing ``work``.

    compute  = samples · epochs · (s per sample) · model_fraction (or compute_fraction)
    download = model_bytes · model_fraction / download bandwidth
    upload   = upload_bytes / upload bandwidth
    """
    tiers = np.asarray(tiers)
    n_samples = np.asarray(work.n_samples, dtype=np.float64)
    if tiers.shape != n_samples.shape:
        raise ValueError(f"tiers {tiers.shape} and n_samples {n_samples.shape} must have the same shape")
    if len(tiers) and (tiers.min() < 0 or tiers.max() >= table.n_tiers):
        raise ValueError(f"tier ids must be in [0, {table.n_tiers}), got {tiers.min()}..{tiers.max()}")
    floor = table.floor_fraction
    per_sample = _draw(table.compute_mean[tiers], table.compute_std[tiers], floor, rng)
    down_mbps = _draw(table.download_mean[tiers], table.download_std[tiers], floor, rng)
    up_mbps = _draw(table.upload_mean[tiers], table.upload_std[tiers], floor, rng)
    fraction = np.broadcast_to(np.asarray(work.model_fraction, dtype=np.float64), tiers.shape)
    computed = work.model_fraction if work.compute_fraction is None else work.compute_fraction
    work_share = np.broadcast_to(np.asarray(computed, dtype=np.float64), tiers.shape)
    upload = np.broadcast_to(np.asarray(work.upload_bytes, dtype=np.float64), tiers.shape)
    download = np.broadcast_to(np.asarray(work.model_bytes, dtype=np.float64), tiers.shape)
    return LatencyBreakdown(
        compute_s=n_samples * work.local_epochs * per_sample * work_share,
        download_s=download * fraction * _BITS_PER_BYTE / (down_mbps * _BITS_PER_MEGABIT),
        upload_s=upload * _BITS_PER_BYTE / (up_mbps * _BITS_PER_MEGABIT),
    )
