"""Local differential privacy: each device clips its whole update to C and adds Gaussian noise of
std σ·C to every entry before the update leaves the phone, so no one — the server included —
holds an unnoised update. Its sample count and loss stay on the phone (the noise does not cover
them): the server averages the noised updates with equal weights.

A user's guarantee is the Gaussian mechanism composed over the rounds its device took part in,
with no amplification by sampling (the server sees who uploads); a run reports the worst user's ε,
that of the most-selected device."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cluster.fl.types import ClientUpdate
from cluster.privacy.accountant import local_epsilon
from cluster.privacy.central_dp import update_norms
from cluster.rng import stream
from configs.privacy_schema import LocalDP


@dataclass(frozen=True)
class LocalNoise:
    """What every device is told: clip to ``clip_norm``, add N(0, ``noise_std``²) per entry."""

    round_index: int
    clip_norm: float
    noise_std: float

    def apply(self, update: ClientUpdate, params: dict[str, np.ndarray], seed: int) -> ClientUpdate:
        """``update`` as its devices release it: each client's own noise stream, whichever worker holds it."""
        factor = np.minimum(1.0, self.clip_norm / np.maximum(update_norms(update), 1e-12))
        dense = {}
        for name, value in update.dense_deltas.items():
            scaled = value * factor.reshape(-1, *([1] * (value.ndim - 1)))
            noise = [self._noise(seed, int(c), name, value.shape[1:]) for c in update.clients]
            dense[name] = (scaled + np.stack(noise).reshape(value.shape)).astype(np.float32)
        rows = {}
        owners, counts = np.unique(update.row_owner, return_counts=True)  # rows are grouped by owner
        for name, value in update.item_deltas.items():
            noise = [
                self._noise(seed, int(update.clients[o]), name, (int(n), value.shape[1]))
                for o, n in zip(owners, counts)
            ]
            stacked = np.concatenate(noise) if noise else np.zeros_like(value)
            rows[name] = (value * factor[update.row_owner, None] + stacked).astype(np.float32)
        return replace(
            update,
            dense_deltas=dense,
            item_deltas=rows,
            n_samples=np.ones(len(update.clients), np.int64),
            loss=np.full(len(update.clients), np.nan, np.float32),
            touched_rows=None,
        )

    def _noise(self, seed: int, client: int, name: str, shape: tuple) -> np.ndarray:
        return stream(seed, f"local-dp-{name}", self.round_index, client).normal(0.0, self.noise_std, size=shape)


class LocalDPAccount:
    """How often each of ``n_clients`` devices released its update, and the worst user's ε."""

    def __init__(self, cfg: LocalDP, n_clients: int):
        self.clip_norm = cfg.clip_norm
        self.noise_multiplier = cfg.noise_multiplier
        self.delta = cfg.delta if cfg.delta is not None else 1.0 / (10 * n_clients)
        self.releases = np.zeros(n_clients, np.int64)

    def noise(self, round_index: int) -> LocalNoise:
        return LocalNoise(round_index, self.clip_norm, self.noise_multiplier * self.clip_norm)

    def spend(self, clients: np.ndarray) -> dict:
        self.releases[clients] += 1
        worst = int(self.releases.max()) if len(self.releases) else 0
        return {
            "dp_epsilon": local_epsilon(self.noise_multiplier, worst, self.delta),
            "dp_delta": self.delta,
            "dp_noise_multiplier": self.noise_multiplier,
            "dp_max_releases": worst,
        }

    def state_dict(self) -> dict:
        return {"releases": self.releases.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.releases = np.asarray(state["releases"], np.int64).copy()
