"""CEAG — constrained excess accuracy gaps (Hashemizadeh et al., "Balancing Act: Constraining
Disparate Impact in Sparse Models", ICLR 2024, Algorithm 1) with device tiers as the groups.

The problem. β_0 is the reference model (trained without the tier-aware optimization: dense,
no dropping, no compression), β_p the optimized one. For each tier t the excess accuracy gap

    ψ_t = [A_t(β_0) − A_t(β_p)] − [A(β_0) − A(β_p)]                                   (CEAG ψ_g)

is how much more tier t lost than the population did; CEAG asks ψ_t ≤ ε for every t, i.e.
min L(β_p) s.t. ψ_t ≤ ε, with Lagrangian L(β_p) + Σ_t λ_t (ψ_t − ε), λ ≥ 0.

Alternating updates, dual first (Algorithm 1):
- dual, on the TRUE gaps (accuracy is not differentiable, but the dual step needs only its
  value): λ_t ← [λ_t + η_λ (ψ_t − ε)]₊, for tiers whose replay buffer is full;
- primal, with the new λ, on the proxy constraints (Cotter et al. 2019) — the excess LOSS gaps
  ψ̃_t = [L_t(β_p) − L_t(β_0)] − [L(β_p) − L(β_0)], which are differentiable: minimise
  L(β_p) + Σ_t λ_t ψ̃_t.

Federated placement (no raw client data leaves a client):
- Clients, while training on the global model β_p they received, also compute on their own
  samples the per-sample correctness of β_p (1 when the prediction matches the label; any
  per-sample value in [0, 1] works, e.g. a leave-one-out hit). They upload only these scalars
  beside the update they already send (ClientUpdate carries the mean loss and sample count):
  no features, item ids, labels or user vectors.
- The reference side is a fixed per-tier table A_t(β_0) measured once on the reference run
  (same seed and tier mapping); β_0 never changes, so re-measuring it each round would only add
  noise. Where workers hold β_0 as well, clients may upload its per-sample correctness on the
  same samples into a second, slot-aligned ReplayBuffers (a paired, lower-variance estimate).
- The aggregator pushes the uploads into per-tier replay buffers in client-id order, computes
  ψ from the buffers, takes the dual step, then forms the primal step as a reweighted FedAvg
  (``aggregation_weights``): the gradient of the Lagrangian is a fixed linear combination of
  the clients' own mean-loss gradients (derivation below), so the primal step needs no extra
  client computation, and clients never see λ. Doing it in the aggregator rather than scaling
  each client's local loss keeps clients oblivious and is exact for one local full-batch step
  (the usual FedAvg approximation for more local steps). L(β_0), L_t(β_0) are constants: they
  only matter for logging ψ̃, never for the update.

Aggregation weights (primal step). In a round with clients c of tiers t(c), n_c samples,
N_t = Σ_{c∈t} n_c, N = Σ_t N_t, mean losses L = (1/N) Σ_i ℓ_i and L_t = (1/N_t) Σ_{i∈t} ℓ_i,
and g_c the gradient of client c's own mean loss (∇L = Σ_c (n_c/N) g_c, ∇L_t = Σ_{c∈t} (n_c/N_t) g_c):

    ∇[L + Σ_t λ_t ψ̃_t] = (1 − Λ) ∇L + Σ_t λ_t ∇L_t,            Λ = Σ_t λ_t
                       = Σ_c g_c · n_c [(1 − Λ)/N + λ_{t(c)}/N_{t(c)}],

so w_c = (n_c/N) · (1 − Λ + λ_{t(c)}/s_{t(c)}) with s_t = N_t/N the tier's share of the round's
samples; Σ_c w_c = 1 (the total step size is unchanged) and λ = 0 gives FedAvg. A tier absent
from the round has no ∇L_t: its term is dropped (λ_t taken as 0 for this round's weights).
When Λ exceeds 1 + λ_t/s_t, tier t's weight is negative: that is the Lagrangian (ψ̃ subtracts
the overall loss), and a large λ on one tier pushes the others' loss up. Sample counts only
enter as ratios, so ClientUpdate.n_samples (positives; the loss also averages the negatives,
at a fixed ratio) gives the same weights as a count of all samples.

Why not cooper (cooper-optim 1.0.0, checked by introspection). Cooper's unit of work is
``ConstrainedOptimizer.roll()``: compute a CMPState (loss and constraint violations as tensors
in one autograd graph over the primal parameters), backpropagate the primal Lagrangian and step
the primal torch optimizers (required: a ConstrainedOptimizer refuses to build without them)
and the dual ones in one process. Here the primal parameters move by clients' local SGD in
worker actors and the aggregator only reweights their deltas: no tensor in the aggregator has
the Lagrangian's gradient, so roll() could run only with a dummy primal parameter and
``contributes_to_primal_update=False``. What is left is its dual half — an ExplicitMultiplier
whose post_step_ is relu, a torch SGD with maximize=True and a dual Lagrangian λᵀ(ψ − ε) whose
gradient is ψ − ε; skipping tiers with partial buffers takes an IndexedMultiplier with sparse
gradients. That is the few lines below, so we keep no dependency: the same update (checked
bit for bit against cooper's AlternatingDualPrimalOptimizer with an IndexedMultiplier, a dummy
primal and float64, over 200 random rounds), with checkpoint state beside the buffers'. λ is a
torch Parameter stepped by a torch optimizer, so a stateful dual optimizer (e.g. cooper's nuPI)
can replace SGD later without changing callers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.fairness.replay import ReplayBuffers


@dataclass(frozen=True)
class CEAGSettings:
    """ε: tolerated excess gap; dual_lr: η_λ; buffer_size: k samples per tier (40 in the paper)."""

    epsilon: float = 0.0
    dual_lr: float = 0.1
    buffer_size: int = 40

    def __post_init__(self) -> None:
        if self.dual_lr <= 0 or self.buffer_size <= 0:
            raise ValueError(f"need dual_lr > 0 and buffer_size > 0, got {self.dual_lr}, {self.buffer_size}")


@dataclass(frozen=True)
class DualReport:
    """One dual step, for round records. gaps: ψ (T,), NaN where not estimated; moved: (T,) bool;
    lambdas: λ after the step (T,)."""

    gaps: np.ndarray
    moved: np.ndarray
    lambdas: np.ndarray


def tier_means(values: np.ndarray, tiers: np.ndarray, n_tiers: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-tier mean of per-sample ``values`` (N,) with tier index ``tiers`` (N,).
    Returns (means (T,), NaN for a tier without samples; counts (T,))."""
    values = np.asarray(values, np.float64)
    counts = np.bincount(tiers, minlength=n_tiers)
    sums = np.bincount(tiers, weights=values, minlength=n_tiers)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan), counts


def _minus_weighted_mean(diff, weights):
    """diff_t − Σ_s w_s diff_s / Σ_s w_s: a tier's difference in excess of the population's,
    the population's being the sample-weighted mean of the tiers'. Plain arithmetic, so numpy
    arrays and torch tensors (autograd) both work."""
    return diff - (weights * diff).sum() / weights.sum()


def tier_excess_gaps(acc_opt: np.ndarray, acc_ref: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ψ_t (CEAG ψ_g) from per-tier accuracies acc_opt, acc_ref (T,) and tier weights (T,), the
    number (or share) of samples each tier has in the population A is taken over: then
    A = Σ_t w_t A_t / Σ_t w_t is exactly the accuracy over all samples. A tier with NaN accuracy
    or zero weight is left out of A on both sides and gets ψ_t = NaN."""
    acc_opt, acc_ref = np.asarray(acc_opt, np.float64), np.asarray(acc_ref, np.float64)
    weights = np.asarray(weights, np.float64)
    seen = np.isfinite(acc_opt) & np.isfinite(acc_ref) & (weights > 0)
    if not seen.any():
        return np.full(len(acc_opt), np.nan)
    gaps = np.full(len(acc_opt), np.nan)
    gaps[seen] = _minus_weighted_mean(acc_ref[seen] - acc_opt[seen], weights[seen])
    return gaps


def excess_gaps(correct_opt: np.ndarray, correct_ref: np.ndarray, tiers: np.ndarray, n_tiers: int) -> np.ndarray:
    """ψ (T,) from per-sample correctness of the optimized and the reference model on the same
    samples (N,) with their tiers (N,); A_t and A are plain means over the samples."""
    acc_opt, counts = tier_means(correct_opt, tiers, n_tiers)
    acc_ref, _ = tier_means(correct_ref, tiers, n_tiers)
    return tier_excess_gaps(acc_opt, acc_ref, counts)


def buffered_gaps(buffers: ReplayBuffers, acc_ref: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ψ (T,) from the optimized model's replay buffers and the reference table A_t(β_0) (T,)
    (or a slot-aligned reference buffer's ``means()``). Only full buffers are estimates; the
    others are NaN and stay out of the overall A. ``weights``: the tiers' sample counts or
    shares in the population the reference table was measured on — pooling the buffers with
    equal weight would bias A whenever tiers differ in size."""
    acc_opt = np.where(buffers.full(), buffers.means(), np.nan)
    return tier_excess_gaps(acc_opt, acc_ref, weights)


def proxy_loss_gaps(loss_opt, loss_ref, weights):
    """ψ̃_t = [L_t(β_p) − L_t(β_0)] − [L(β_p) − L(β_0)] (proxy constraints, Cotter et al. 2019)
    from per-tier mean losses (T,) and tier sample counts (T,), L = Σ_t N_t L_t / N. numpy or
    torch (differentiable in loss_opt); every tier needs a finite loss (weight 0 drops it from L)."""
    return _minus_weighted_mean(loss_opt - loss_ref, weights)


def primal_lagrangian(loss_opt, loss_ref, weights, lambdas):
    """L(β_p) + Σ_t λ_t ψ̃_t, the objective of the primal step (ε is constant there and left
    out). Same inputs as ``proxy_loss_gaps`` plus λ (T,)."""
    overall = (weights * loss_opt).sum() / weights.sum()
    return overall + (lambdas * proxy_loss_gaps(loss_opt, loss_ref, weights)).sum()


def aggregation_weights(n_samples: np.ndarray, client_tier: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """Per-client FedAvg weights w (C,) whose Σ_c w_c Δ_c is the step on L + Σ_t λ_t ψ̃_t:
    w_c = n_c [(1 − Λ)/N + λ_{t(c)}/N_{t(c)}], Λ over tiers present this round (derivation in
    the module docstring). n_samples, client_tier: (C,); lambdas: (T,). Σ w = 1; may be < 0.

    Until FedAvg takes weights, ``fedavg(dataclasses.replace(merged, n_samples=w), spec)``
    applies them: it divides by Σ n_samples, which is 1 here."""
    terms = _tier_terms(n_samples, client_tier, lambdas)
    if terms is None:
        return np.zeros(len(n_samples))
    n, total, own, lam_sum = terms
    return n * ((1.0 - lam_sum) / total + own)


def pairwise_proxy_coefficients(pair_counts: np.ndarray, client_tier: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """Per-client coefficients k (C,) on the clients' pairwise-logistic gradients h_c whose
    Σ_c k_c h_c is ∇ Σ_t λ_t ψ̃_t for the pairwise proxy ψ̃_t = P_t − P, with P_c a client's mean
    logistic loss over its m_c (click, non-click) pairs, P_t = Σ_{c∈t} m_c P_c / M_t its tier's
    over the round's pairs and P = Σ_c m_c P_c / M everyone's (P(β_0) is a constant, left out):
    k_c = m_c (λ_{t(c)}/M_{t(c)} − Λ/M), Λ over tiers with pairs this round. Σ k = 0, so the
    term moves no mass between the average and the correction; a client without pairs gets 0."""
    terms = _tier_terms(pair_counts, client_tier, lambdas)
    if terms is None:
        return np.zeros(len(pair_counts))
    m, total, own, lam_sum = terms
    return m * (own - lam_sum / total)


def _tier_terms(counts, client_tier, lambdas):
    """What both primal steps share, from per-client counts (C,): (counts as float64, their
    total N, each client's λ_{t(c)}/N_{t(c)}, Λ), with λ of tiers absent this round taken as 0;
    None when the round has no count."""
    counts = np.asarray(counts, np.float64)
    tier = np.asarray(client_tier, np.int64)
    lambdas = np.asarray(lambdas, np.float64)
    total = counts.sum()
    if total <= 0:
        return None
    per_tier = np.bincount(tier, weights=counts, minlength=len(lambdas))
    present = per_tier > 0
    lam = np.where(present, lambdas, 0.0)
    own = np.divide(lam, per_tier, out=np.zeros_like(lam), where=present)
    return counts, total, own[tier], lam.sum()


class TierMultipliers:
    """λ (T,) ≥ 0, one Lagrange multiplier per tier, moved by projected gradient ascent.

    The dual Lagrangian's gradient in λ_t is ψ_t − ε, so one SGD step with maximize=True and a
    projection onto λ ≥ 0 is λ ← [λ + η_λ (ψ − ε)]₊ (Algorithm 1, dual step). float64, so long
    runs do not drift with rounding."""

    def __init__(self, n_tiers: int, lr: float, epsilon: float | np.ndarray = 0.0) -> None:
        if n_tiers <= 0 or lr <= 0:
            raise ValueError(f"need n_tiers > 0 and lr > 0, got {n_tiers}, {lr}")
        import torch  # here, not at the top: only an aggregator running CEAG pays for the import

        self.epsilon = np.broadcast_to(np.asarray(epsilon, np.float64), (n_tiers,)).copy()
        self.param = torch.nn.Parameter(torch.zeros(n_tiers, dtype=torch.float64))
        self.optimizer = torch.optim.SGD([self.param], lr=lr, maximize=True)
        self.steps = 0

    @classmethod
    def from_settings(cls, n_tiers: int, settings: CEAGSettings) -> TierMultipliers:
        return cls(n_tiers, settings.dual_lr, settings.epsilon)

    @property
    def value(self) -> np.ndarray:
        """λ (T,), a copy."""
        return self.param.detach().numpy().copy()

    def step(self, gaps: np.ndarray, ready: np.ndarray) -> np.ndarray:
        """One projected ascent step on tiers that are ``ready`` (T,) bool (full buffers) and
        have a finite gap; the others keep their λ exactly. Returns the mask of tiers moved."""
        gaps = np.asarray(gaps, np.float64)
        moved = np.asarray(ready, bool) & np.isfinite(gaps)
        grad = np.where(moved, gaps - self.epsilon, 0.0)
        import torch

        before = self.param.detach().clone()
        self.optimizer.zero_grad(set_to_none=True)
        self.param.grad = torch.from_numpy(grad)
        self.optimizer.step()
        with torch.no_grad():
            self.param.clamp_(min=0.0)
            # A zero gradient leaves plain SGD still, but not a stateful optimizer (momentum):
            # frozen tiers are restored explicitly.
            keep = torch.from_numpy(~moved)
            self.param[keep] = before[keep]
        self.steps += 1
        return moved

    def state_dict(self) -> dict:
        return {
            "lambdas": self.value,
            "epsilon": self.epsilon.copy(),
            "steps": self.steps,
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        lambdas = np.asarray(state["lambdas"], np.float64)
        if lambdas.shape != tuple(self.param.shape):
            raise ValueError(f"checkpoint has {lambdas.shape} multipliers, expected {tuple(self.param.shape)}")
        import torch

        with torch.no_grad():
            self.param.copy_(torch.from_numpy(lambdas))
        self.epsilon = np.asarray(state["epsilon"], np.float64).copy()
        self.steps = int(state["steps"])
        self.optimizer.load_state_dict(state["optimizer"])


def dual_update(
    multipliers: TierMultipliers, buffers: ReplayBuffers, acc_ref: np.ndarray, weights: np.ndarray
) -> DualReport:
    """The aggregator's dual step for one round, after this round's correctness values were
    pushed into ``buffers``: ψ from full buffers and the reference table, then λ."""
    gaps = buffered_gaps(buffers, acc_ref, weights)
    moved = multipliers.step(gaps, buffers.full())
    return DualReport(gaps=gaps, moved=moved, lambdas=multipliers.value)
