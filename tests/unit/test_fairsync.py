import numpy as np
import pytest

from cluster.retrieval.fairsync import (
    DualVector, ExposureTargets, adjusted_scores, dual_subgradient, exposure_satisfaction, slots_per_group,
)


def test_feasibility_is_checked():
    with pytest.raises(ValueError, match="infeasible"):
        ExposureTargets(np.array([6.0, 5.0]), horizon=1, k=10)
    ExposureTargets(np.array([5.0, 5.0]), horizon=1, k=10)


def test_adjusted_scores_and_slot_counting():
    scores = np.array([[1.0, 0.5, 0.2]])
    groups = np.array([0, 1, 1])
    mu = np.array([0.0, -1.0])
    assert adjusted_scores(scores, groups, mu).tolist() == [[1.0, 1.5, 1.2]]
    assert slots_per_group(np.array([[1, 2], [0, 2]]), groups, 2).tolist() == [1.0, 3.0]


def test_subgradient_by_hand():
    targets = ExposureTargets(np.array([20.0, 10.0]), horizon=10, k=5)  # 50 slots, 30 reserved
    n_g = np.array([4.0, 6.0])  # two requests of 5
    projected = dual_subgradient(n_g, 2, targets, np.array([0.0, 0.0]), "projected")
    assert projected.tolist() == [-4 + 2 * 20 / 10, -6 + 2 * 10 / 10]
    full = dual_subgradient(n_g, 2, targets, np.array([0.3, -0.2]), "full")
    assert full.tolist() == [-4 + 4 + 2 * 20 / 10, -6 + 2]  # spare 20 slots x B/T to argmax μ


def test_projected_dual_boosts_a_starved_group_and_stays_nonpositive():
    targets = ExposureTargets(np.array([0.0, 3.0]), horizon=100, k=5)
    dual = DualVector(targets, batch=2, lr=0.1, optimizer="sgd")
    assert not dual.observe(np.array([5.0, 0.0]))  # one request: batch not complete
    assert dual.observe(np.array([5.0, 0.0]))
    # gradient = [-10, 0 + 2*3/100]; SGD μ ← μ − 0.1·g = [1.0, -0.006], projected to μ ≤ 0
    np.testing.assert_allclose(dual.mu, [0.0, -0.006])
    assert dual.version == 1 and dual.requests == 2
    restored = DualVector(targets, batch=2, lr=0.1, optimizer="sgd")
    restored.load_state_dict(dual.state_dict())
    assert np.array_equal(restored.mu, dual.mu) and restored.version == 1


def test_dual_reaches_minimum_exposure_in_a_toy_retrieval():
    """Group 1 is never relevant enough on its own; the dual vector buys it its minimum."""
    rng = np.random.default_rng(0)
    n_items, k, horizon = 40, 4, 400
    groups = (np.arange(n_items) >= 30).astype(int)  # items 30-39 form the small group 1
    targets = ExposureTargets(np.array([0.0, 0.5 * horizon]), horizon, k)  # half a slot per request
    dual = DualVector(targets, batch=10, lr=0.2, optimizer="adam")
    relevance_only = 0
    for _ in range(horizon):
        scores = rng.normal(size=n_items) + np.where(groups == 1, -1.5, 0.0)
        relevance_only += int((groups[np.argsort(-scores)[:k]] == 1).sum())
        top = np.argsort(-adjusted_scores(scores[None], groups, dual.mu)[0])[:k]
        dual.observe(slots_per_group(top, groups, 2))
    met = exposure_satisfaction(dual.exposure, targets, dual.requests)
    assert met["fill"] > 0.95, (met, dual.exposure)
    assert relevance_only < 0.2 * targets.m[1] < dual.exposure[1]  # measured: 16 without μ, 196 with it
    assert dual.mu[1] < 0 and dual.mu[0] == 0


def _continue(dual: DualVector, rng: np.random.Generator, requests: int) -> np.ndarray:
    """μ after ``requests`` more requests whose served slots favour group 0."""
    for _ in range(requests):
        dual.observe(rng.multinomial(5, [0.7, 0.2, 0.1]).astype(float))
    return dual.mu


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_restored_dual_continues_as_if_never_stopped(optimizer):
    """Adam's moments are part of the state: a restore that kept only μ would take different
    steps afterwards (a fresh Adam's first step is ±lr whatever the gradient's size)."""
    targets = ExposureTargets(np.array([0.0, 150.0, 150.0]), horizon=100, k=5)  # 1 and 2 starve
    straight = DualVector(targets, batch=4, lr=0.05, optimizer=optimizer)
    _continue(straight, np.random.default_rng(1), 40)
    restored = DualVector(targets, batch=4, lr=0.05, optimizer=optimizer)
    restored.load_state_dict(straight.state_dict())
    assert np.array_equal(restored.mu, straight.mu) and restored.version == straight.version == 10
    expected = _continue(straight, np.random.default_rng(2), 40)
    np.testing.assert_array_equal(_continue(restored, np.random.default_rng(2), 40), expected)
    assert (expected < 0).any(), "μ never moved: the comparison would prove nothing"
