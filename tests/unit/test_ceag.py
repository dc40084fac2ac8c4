"""CEAG maths with device tiers as groups: excess gaps by hand, the projected dual step, replay
buffers, and the FedAvg weights of the primal step against autograd. No Ray."""

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from cluster.fairness.ceag import (
    CEAGSettings,
    TierMultipliers,
    aggregation_weights,
    buffered_gaps,
    dual_update,
    excess_gaps,
    pairwise_proxy_coefficients,
    primal_lagrangian,
    proxy_loss_gaps,
    tier_excess_gaps,
    tier_means,
)
from cluster.fairness.replay import ReplayBuffers
from cluster.fl.aggregation import fedavg
from cluster.fl.families.ncf.model import NCFSpec
from cluster.fl.types import ClientUpdate

# ---- excess gaps -------------------------------------------------------------------------------

def test_excess_gaps_over_samples_by_hand():
    # Tier 0: 4 samples, ref right on all 4, opt on 2  → A_0: 1.0 vs 0.5, gap 0.5.
    # Tier 1: 2 samples, ref right on 1, opt on 1      → A_1: 0.5 vs 0.5, gap 0.
    # All 6: ref 5/6, opt 3/6 → overall gap 2/6.  ψ = (0.5 − 1/3, 0 − 1/3) = (1/6, −1/3).
    tiers = np.array([0, 0, 0, 0, 1, 1])
    ref = np.array([1, 1, 1, 1, 1, 0])
    opt = np.array([1, 0, 1, 0, 0, 1])
    np.testing.assert_allclose(excess_gaps(opt, ref, tiers, 2), [1 / 6, -1 / 3])


def test_sample_weighted_gaps_average_to_zero_and_equal_tier_level():
    rng = np.random.default_rng(0)
    tiers = rng.integers(0, 3, 200)
    ref, opt = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    gaps = excess_gaps(opt, ref, tiers, 3)
    counts = np.bincount(tiers, minlength=3)
    assert abs(np.dot(counts, gaps)) < 1e-12  # the population's excess over itself is zero
    acc_opt, _ = tier_means(opt, tiers, 3)
    acc_ref, _ = tier_means(ref, tiers, 3)
    np.testing.assert_allclose(tier_excess_gaps(acc_opt, acc_ref, counts), gaps)


def test_uniform_drop_gives_zero_gaps_and_missing_tier_is_nan():
    # Every tier loses 0.1: no tier loses more than the population.
    np.testing.assert_allclose(tier_excess_gaps([0.5, 0.6, 0.7], [0.6, 0.7, 0.8], [1, 5, 2]), 0.0, atol=1e-12)
    # Tier 2 unobserved: left out of A on both sides. Tiers 0/1 lose 0.2/0.0, weights 1:3 →
    # overall 0.05, ψ = (0.15, −0.05, NaN).
    gaps = tier_excess_gaps([0.4, 0.7, np.nan], [0.6, 0.7, 0.9], [1, 3, 4])
    np.testing.assert_allclose(gaps[:2], [0.15, -0.05])
    assert np.isnan(gaps[2])
    assert np.isnan(excess_gaps(np.array([1, 0]), np.array([1, 1]), np.array([0, 0]), 2)[1])


def test_proxy_loss_gaps_by_hand():
    # Tier losses opt (0.9, 0.5), ref (0.6, 0.5), 1:3 samples: differences (0.3, 0); overall
    # 0.075; ψ̃ = (0.225, −0.075). Sign: a tier whose loss rose more is positive, like ψ.
    np.testing.assert_allclose(proxy_loss_gaps(np.array([0.9, 0.5]), np.array([0.6, 0.5]), np.array([1, 3])),
                               [0.225, -0.075])


# ---- replay buffers ----------------------------------------------------------------------------

def test_ring_buffer_overwrites_oldest_and_reports_full():
    buf = ReplayBuffers(n_tiers=2, size=3)
    buf.push(np.array([1.0, 2.0, 10.0]), np.array([0, 0, 1]))
    assert buf.full().tolist() == [False, False]
    np.testing.assert_allclose(buf.means(), [1.5, 10.0])
    buf.push(np.array([3.0, 4.0, 5.0]), np.array([0, 0, 0]))  # 1 and 2 are overwritten
    assert buf.full().tolist() == [True, False]
    np.testing.assert_array_equal(buf.ordered(0), [3.0, 4.0, 5.0])
    np.testing.assert_allclose(buf.means()[0], 4.0)
    buf.push(np.array([6.0]), np.array([0]))
    np.testing.assert_array_equal(buf.ordered(0), [4.0, 5.0, 6.0])
    # A push longer than the ring keeps only its newest values, in order.
    buf.push(np.arange(7.0), np.zeros(7, int))
    np.testing.assert_array_equal(buf.ordered(0), [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(buf.ordered(1), [10.0])
    assert np.isnan(ReplayBuffers(2, 3).means()).all()


def test_ring_buffer_matches_a_deque_on_random_pushes():
    from collections import deque

    rng = np.random.default_rng(1)
    buf, ref = ReplayBuffers(3, 5), [deque(maxlen=5) for _ in range(3)]
    for _ in range(40):
        n = int(rng.integers(0, 9))
        values, tiers = rng.random(n), rng.integers(0, 3, n)
        buf.push(values, tiers)
        for v, t in zip(values, tiers):
            ref[t].append(v)
        for t in range(3):
            np.testing.assert_array_equal(buf.ordered(t), list(ref[t]))
    with pytest.raises(ValueError):
        buf.push(np.ones(2), np.array([0, 3]))


def test_buffered_gaps_use_only_full_buffers_with_population_weights():
    buf = ReplayBuffers(3, 2)
    buf.push(np.array([1, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 2]))  # tier 2 not full
    # acc_opt (0.5, 1.0, —), ref (0.9, 0.9, 0.9), weights 3:1 → drops (0.4, −0.1), overall 0.275.
    gaps = buffered_gaps(buf, np.array([0.9, 0.9, 0.9]), np.array([3.0, 1.0, 6.0]))
    np.testing.assert_allclose(gaps[:2], [0.125, -0.375])
    assert np.isnan(gaps[2])


# ---- dual step ---------------------------------------------------------------------------------

def test_dual_step_is_projected_gradient_ascent():
    lam = TierMultipliers(3, lr=0.5, epsilon=0.1)
    lam.step(np.array([0.3, 0.1, -0.5]), np.ones(3, bool))
    # λ = [0 + 0.5·(ψ − 0.1)]₊ = [0.1, 0, −0.3]₊
    np.testing.assert_allclose(lam.value, [0.1, 0.0, 0.0])
    lam.step(np.array([0.5, 0.3, 0.1]), np.ones(3, bool))
    np.testing.assert_allclose(lam.value, [0.3, 0.1, 0.0])
    # A large negative gap projects onto 0, never below.
    lam.step(np.array([-10.0, 0.0, 0.0]), np.ones(3, bool))
    np.testing.assert_allclose(lam.value, [0.0, 0.05, 0.0])
    assert (lam.value >= 0).all()


def test_tier_without_full_buffer_or_gap_does_not_move():
    lam = TierMultipliers(3, lr=1.0)
    lam.step(np.array([0.2, 0.2, 0.2]), np.ones(3, bool))
    moved = lam.step(np.array([0.4, 0.4, np.nan]), np.array([True, False, True]))
    assert moved.tolist() == [True, False, False]
    np.testing.assert_allclose(lam.value, [0.6, 0.2, 0.2])


def test_frozen_tier_stays_put_even_with_a_stateful_optimizer():
    lam = TierMultipliers(2, lr=1.0)
    lam.optimizer = torch.optim.SGD([lam.param], lr=1.0, momentum=0.9, maximize=True)
    lam.step(np.array([0.5, 0.5]), np.ones(2, bool))
    lam.step(np.array([0.5, 0.5]), np.array([True, False]))  # momentum alone would move tier 1
    assert lam.value[1] == pytest.approx(0.5)


def test_dual_update_moves_only_after_the_buffer_fills():
    settings = CEAGSettings(epsilon=0.0, dual_lr=1.0, buffer_size=4)
    lam, buf = TierMultipliers.from_settings(2, settings), ReplayBuffers(2, settings.buffer_size)
    ref, weights = np.array([0.8, 0.8]), np.array([1.0, 1.0])
    buf.push(np.array([1, 1, 1, 1, 0, 0]), np.array([0, 0, 0, 0, 1, 1]))
    report = dual_update(lam, buf, ref, weights)
    # Tier 1 is not full and keeps λ; tier 0, the only estimate, is its own population: ψ = 0.
    assert report.moved.tolist() == [True, False]
    assert np.isnan(report.gaps[1]) and report.gaps[0] == pytest.approx(0.0)
    np.testing.assert_allclose(report.lambdas, [0.0, 0.0])
    buf.push(np.array([0, 0]), np.array([1, 1]))
    report = dual_update(lam, buf, ref, weights)
    # acc (1, 0): drops (−0.2, 0.8), overall 0.3 → ψ = (−0.5, 0.5); λ = (0, 0.5)
    np.testing.assert_allclose(report.gaps, [-0.5, 0.5])
    np.testing.assert_allclose(report.lambdas, [0.0, 0.5])
    with pytest.raises(ValueError):
        CEAGSettings(buffer_size=0)


def test_state_round_trip_through_pickle():
    lam, buf = TierMultipliers(3, lr=0.3, epsilon=0.05), ReplayBuffers(3, 4)
    rng = np.random.default_rng(2)
    for _ in range(5):
        buf.push(rng.integers(0, 2, 9), rng.integers(0, 3, 9))
        dual_update(lam, buf, np.full(3, 0.7), np.array([1.0, 2.0, 3.0]))
    saved = pickle.loads(pickle.dumps({"lam": lam.state_dict(), "buf": buf.state_dict()}))
    lam2, buf2 = TierMultipliers(3, lr=0.3), ReplayBuffers(3, 4)
    lam2.load_state_dict(saved["lam"])
    buf2.load_state_dict(saved["buf"])
    np.testing.assert_array_equal(lam2.value, lam.value)
    np.testing.assert_array_equal(lam2.epsilon, lam.epsilon)
    assert lam2.steps == lam.steps == 5
    # Both continue identically.
    values, tiers = rng.integers(0, 2, 9), rng.integers(0, 3, 9)
    for m, b in ((lam, buf), (lam2, buf2)):
        b.push(values, tiers)
        dual_update(m, b, np.full(3, 0.7), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(lam2.value, lam.value)
    np.testing.assert_array_equal(buf2.ordered(1), buf.ordered(1))
    with pytest.raises(ValueError):
        TierMultipliers(2, lr=0.3).load_state_dict(saved["lam"])
    with pytest.raises(ValueError):
        ReplayBuffers(3, 5).load_state_dict(saved["buf"])


# ---- primal step: aggregation weights vs autograd ---------------------------------------------

def _tiny_federation(seed=3):
    """7 clients over 3 tiers of a linear model ŷ = x·θ with squared loss; per-sample (x, y)."""
    rng = np.random.default_rng(seed)
    sizes = np.array([3, 5, 2, 4, 6, 1, 3])
    client_tier = np.array([0, 0, 1, 1, 1, 2, 2])
    data = [(torch.tensor(rng.normal(size=(n, 4))), torch.tensor(rng.normal(size=n))) for n in sizes]
    return sizes, client_tier, data, torch.tensor(rng.normal(size=4))


def _client_mean_loss(theta, x, y):
    return ((x @ theta - y) ** 2).mean()


def _lagrangian_grad(theta0, data, sizes, client_tier, lambdas, loss_ref):
    theta = theta0.clone().requires_grad_(True)
    per_sample = torch.cat([(x @ theta - y) ** 2 for x, y in data])
    tiers = torch.from_numpy(np.repeat(client_tier, sizes))
    n_tiers = len(lambdas)
    counts = torch.bincount(tiers, minlength=n_tiers).double()
    tier_loss = torch.zeros(n_tiers, dtype=torch.float64).index_add(0, tiers, per_sample) / counts.clamp(min=1)
    lagrangian = primal_lagrangian(tier_loss, loss_ref, counts, torch.as_tensor(lambdas))
    (grad,) = torch.autograd.grad(lagrangian, theta)
    return grad


@pytest.mark.parametrize("lambdas", [[0.0, 0.0, 0.0], [0.3, 0.0, 1.2], [2.0, 0.5, 0.7]])
def test_aggregation_weights_equal_autograd_of_the_lagrangian(lambdas):
    sizes, client_tier, data, theta0 = _tiny_federation()
    lambdas = np.array(lambdas)
    loss_ref = torch.tensor([0.4, 1.3, 0.9], dtype=torch.float64)  # constants: no effect on ∇
    expected = _lagrangian_grad(theta0, data, sizes, client_tier, lambdas, loss_ref)
    client_grads = torch.stack([_grad_of_client(theta0, x, y) for x, y in data])
    w = aggregation_weights(sizes, client_tier, lambdas)
    assert w.sum() == pytest.approx(1.0)
    torch.testing.assert_close(torch.from_numpy(w) @ client_grads, expected)
    if not lambdas.any():  # λ = 0 is plain FedAvg
        np.testing.assert_allclose(w, sizes / sizes.sum())
    # Weights depend on sample counts only through ratios (positives vs all samples).
    np.testing.assert_allclose(aggregation_weights(5 * sizes, client_tier, lambdas), w)


def _grad_of_client(theta0, x, y):
    theta = theta0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_client_mean_loss(theta, x, y), theta)
    return grad


def _client_pair_loss(theta, x, y):
    """Mean softplus(s_j − s_i) over a client's pairs (y_i > 0 ≥ y_j) of scores s = x·θ, and the pair count."""
    s = x @ theta
    clicked = y > 0
    return torch.nn.functional.softplus(s[~clicked][None, :] - s[clicked][:, None]).mean(), int(clicked.sum() * (~clicked).sum())


@pytest.mark.parametrize("lambdas", [[0.0, 0.0, 0.0], [0.3, 0.0, 1.2], [2.0, 0.5, 0.0]])
def test_pairwise_proxy_coefficients_equal_autograd_of_the_pair_gaps(lambdas):
    sizes, client_tier, data, theta0 = _tiny_federation(seed=8)
    keep = [k for k, (_, y) in enumerate(data) if 0 < int((y > 0).sum()) < len(y)]  # clients with pairs
    client_tier, data = client_tier[keep], [data[k] for k in keep]
    lambdas = np.array(lambdas)
    theta = theta0.clone().requires_grad_(True)
    losses, pairs = zip(*[_client_pair_loss(theta, x, y) for x, y in data])
    losses, pairs = torch.stack(losses), torch.tensor(pairs, dtype=torch.float64)
    tiers = torch.from_numpy(client_tier)
    per_tier = torch.zeros(3, dtype=torch.float64).index_add(0, tiers, pairs)
    tier_loss = torch.zeros(3, dtype=torch.float64).index_add(0, tiers, pairs * losses) / per_tier.clamp(min=1)
    overall = (pairs * losses).sum() / pairs.sum()
    present = per_tier > 0
    gaps = torch.where(present, tier_loss - overall, torch.zeros(3, dtype=torch.float64))
    (expected,) = torch.autograd.grad((torch.as_tensor(lambdas) * gaps).sum(), theta)
    grads = []
    for x, y in data:
        t = theta0.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(_client_pair_loss(t, x, y)[0], t)[0])
    k = pairwise_proxy_coefficients(pairs.numpy(), client_tier, lambdas)
    assert k.sum() == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(torch.from_numpy(k) @ torch.stack(grads), expected)
    assert pairwise_proxy_coefficients(np.zeros(2), np.array([0, 1]), lambdas).tolist() == [0.0, 0.0]


def test_aggregation_weights_drop_a_tier_absent_this_round():
    sizes, client_tier, data, theta0 = _tiny_federation()
    keep = client_tier != 2
    sizes, client_tier, data = sizes[keep], client_tier[keep], [d for d, k in zip(data, keep) if k]
    lambdas = np.array([0.3, 0.2, 5.0])
    w = aggregation_weights(sizes, client_tier, lambdas)
    np.testing.assert_allclose(w, aggregation_weights(sizes, client_tier, np.array([0.3, 0.2, 0.0])))
    grads = torch.stack([_grad_of_client(theta0, x, y) for x, y in data])
    expected = _lagrangian_grad(theta0, data, sizes, client_tier, np.array([0.3, 0.2]),
                                torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(torch.from_numpy(w) @ grads, expected)
    assert aggregation_weights(np.zeros(2), np.array([0, 1]), lambdas).tolist() == [0.0, 0.0]


def test_weights_applied_through_todays_fedavg():
    # fedavg normalises by Σ n_samples; with Σ w = 1 it applies w unchanged (float32).
    spec = NCFSpec("gmf", dim=2, mlp_layers=(), n_items=3)
    rng = np.random.default_rng(4)
    merged = ClientUpdate(
        clients=np.arange(3), n_samples=np.array([2, 3, 5]), loss=np.zeros(3, np.float32),
        touched_rows=np.array([1, 1, 1]), item_ids=np.array([0, 2, 2]), row_owner=np.array([0, 1, 2], np.int32),
        item_deltas={"item_gmf": rng.normal(size=(3, 2)).astype(np.float32)},
        dense_deltas={n: rng.normal(size=(3, *s)).astype(np.float32) for n, s in spec.dense_shapes().items()},
    )
    w = aggregation_weights(merged.n_samples, np.array([0, 1, 1]), np.array([1.5, 0.0]))
    assert (w < 0).any()  # Λ = 1.5 > 1 + λ_1/s_1 = 1: tier 1 is pushed against
    delta = fedavg(dataclasses.replace(merged, n_samples=w), spec.n_items)
    np.testing.assert_allclose(delta["out.weight"], w @ merged.dense_deltas["out.weight"], rtol=1e-5, atol=1e-6)
    rows = merged.item_deltas["item_gmf"] * w[:, None]
    np.testing.assert_allclose(delta["item_gmf"], [rows[0], [0, 0], rows[1] + rows[2]], rtol=1e-5, atol=1e-6)
