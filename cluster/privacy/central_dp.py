"""User-level central differential privacy for one global model (DP-FedAvg, McMahan et al. 2018):
every kept client's whole update — its dense tensors and the embedding rows it sent — is clipped
to L2 norm C and weighs 1 / m, m = ``fl.clients_per_round``, whatever its sample count; Gaussian
noise of std σ·C / m is added to every entry of every tensor of the global model, sent or not
(the set of rows a round touched would otherwise show).

Sampling: each eligible client is selected independently with probability q = (clients the round
selects) / (eligible clients) (``PoissonSampler``), which is what the accountant assumes. The
virtual clock then keeps the fastest and drops stragglers by latency alone, independently of
their data: a client's chance to be heard stays at most q, so the bound holds with q."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from cluster.fl.types import ClientUpdate
from cluster.privacy.accountant import epsilon, plan_budget
from cluster.rng import stream
from configs.privacy_schema import CentralDP


def expected_entry_share(ops, widths: np.ndarray, tier_share: np.ndarray) -> dict[str, np.ndarray]:
    """Per dense entry, the expected share of a round's clients whose sub-model holds it (RF²'s
    Channel): Σ_t share_t · held_t, from each tier's width (T,) and its share of the eligible
    clients (T,). Public constants, so dividing a noised sum by them is post-processing, where
    the realised count of holders would tell who took part."""
    share: dict[str, np.ndarray] = {}
    for width, weight in zip(widths, tier_share):
        if weight == 0:
            continue
        for name, held in ops.held_entries(float(width)).items():
            share[name] = share.get(name, 0.0) + weight * held.astype(np.float64)
    return share


def split_noise(noise_multiplier: float, count_noise: float) -> float:
    """The update's noise multiplier z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2) that, with the clipped count's
    noise σ_b, costs what one Gaussian of multiplier z does (Andrew et al. 2021, Theorem 1)."""
    if 2 * count_noise <= noise_multiplier:
        raise ValueError(
            f"adaptive clipping's count noise σ_b = {count_noise:g} must exceed half the noise multiplier "
            f"({noise_multiplier:g} / 2): raise count_noise_multiplier"
        )
    return float((noise_multiplier**-2 - (2 * count_noise) ** -2) ** -0.5)


def update_norms(merged: ClientUpdate) -> np.ndarray:
    """(C,) each client's L2 norm over everything it uploaded to the model: its dense deltas and
    its sparsely sent embedding rows."""
    squares = np.zeros(len(merged.clients), np.float64)
    for value in merged.dense_deltas.values():
        squares += np.square(value.reshape(len(value), -1), dtype=np.float64).sum(axis=1)
    for rows in merged.item_deltas.values():
        per_row = np.square(rows, dtype=np.float64).sum(axis=1)
        squares += np.bincount(merged.row_owner, weights=per_row, minlength=len(merged.clients))
    return np.sqrt(squares)


class CentralDPLayer:
    """``n_eligible`` clients may be drawn; a round selects ``n_select`` of them in expectation and
    keeps ``denominator`` (``fl.clients_per_round``) in the average's denominator."""

    def __init__(
        self,
        cfg: CentralDP,
        n_clients: int,
        n_eligible: int,
        n_select: int,
        denominator: int,
        rounds: int,
        seed: int,
        entry_share: Optional[dict[str, np.ndarray]] = None,
    ):
        """``entry_share``: under Channel, each dense entry's expected share of holders
        (``expected_entry_share``); None when every client trains the whole model."""
        self.clip_norm = cfg.clip_norm
        budget = plan_budget(cfg, n_clients, n_eligible, n_select, rounds)
        self.sampling_rate, self.delta, self.noise_multiplier = (
            budget.sampling_rate,
            budget.delta,
            budget.noise_multiplier,
        )
        self.denominator = denominator
        self.seed = seed
        self.entry_share = entry_share
        self.adaptive = cfg.adaptive_clipping
        self.update_noise_multiplier = self.noise_multiplier
        if self.adaptive is not None:
            self.count_noise = self.adaptive.count_noise_multiplier or denominator / 20.0
            self.update_noise_multiplier = split_noise(self.noise_multiplier, self.count_noise)

    def aggregate(
        self, ops, merged: ClientUpdate, params: dict[str, np.ndarray], round_index: int
    ) -> tuple[dict[str, np.ndarray], dict]:
        """The round's private average of ``merged`` (the family's ``ops`` sum the clipped
        updates), noised, and its record fields; each client's norm is taken once."""
        norms = update_norms(merged)
        # A narrowed client's entries outside its slice are zeros: summed as they are, the
        # realised count of holders never enters.
        summed = ops.average(replace(merged, fractions=None), self.weights(norms))
        average = self.noised(summed, params, round_index)
        if self.entry_share is not None:
            average = {name: self._per_holder(name, value) for name, value in average.items()}
        record = self.record(norms, round_index + 1)
        if self.adaptive is not None:
            self.clip_norm = self.next_clip_norm(norms, round_index)
            record["dp_next_clip_norm"] = self.clip_norm
        return average, record

    def next_clip_norm(self, norms: np.ndarray, round_index: int) -> float:
        """C after this round: the noised share b̃ of clients whose update was within C moves it
        geometrically toward the target quantile (Andrew et al. 2021, Algorithm 1)."""
        assert self.adaptive is not None
        within = float((norms <= self.clip_norm).sum())
        noised = within + stream(self.seed, "dp-clip-count", round_index).normal(0.0, self.count_noise)
        share = noised / self.denominator
        return float(self.clip_norm * np.exp(-self.adaptive.learning_rate * (share - self.adaptive.target_quantile)))

    def state_dict(self) -> dict:
        return {"clip_norm": self.clip_norm}

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state is not None:
            self.clip_norm = float(state["clip_norm"])

    def _per_holder(self, name: str, value: np.ndarray) -> np.ndarray:
        """A dense entry's noised mean over all clients, rescaled to a mean over those expected
        to hold it; an entry no tier holds stays unchanged."""
        share = self.entry_share.get(name) if self.entry_share is not None else None
        if share is None:
            return value
        return np.divide(value, share, out=np.zeros_like(value), where=share > 0).astype(np.float32)

    def weights(self, norms: np.ndarray) -> np.ndarray:
        """(C,) each client's weight in the sum, from its update's norm (C,): its clip factor
        min(1, C / norm) over m."""
        factor = np.minimum(1.0, self.clip_norm / np.maximum(norms, 1e-12))
        return factor / self.denominator

    def noised(
        self, average: dict[str, np.ndarray], params: dict[str, np.ndarray], round_index: int
    ) -> dict[str, np.ndarray]:
        """``average`` with N(0, (σ·C / m)²) added to every entry of every tensor in ``params``
        (a tensor no client sent gets the noise alone), from the round's own stream."""
        rng = stream(self.seed, "dp-noise", round_index)
        std = self.update_noise_multiplier * self.clip_norm / self.denominator
        noised = {}
        for name in sorted(params):
            base = average.get(name)
            if base is None:
                base = np.zeros_like(params[name])
            noised[name] = (base + rng.normal(0.0, std, size=base.shape)).astype(np.float32)
        return noised

    def record(self, norms: np.ndarray, rounds_done: int) -> dict:
        """The round's record fields: ε after ``rounds_done`` rounds at the run's δ, the share of
        the round's clients (their update norms (C,)) whose update was clipped, and the
        mechanism's settings."""
        return {
            "dp_epsilon": epsilon(self.sampling_rate, self.noise_multiplier, rounds_done, self.delta),
            "dp_delta": self.delta,
            "dp_clipped": float((norms > self.clip_norm).mean()) if len(norms) else 0.0,
            "dp_noise_multiplier": self.noise_multiplier,
            "dp_sampling_rate": self.sampling_rate,
            "dp_clip_norm": self.clip_norm,
        }
