"""User-level central differential privacy: each client's whole update clipped to C and weighed
1/m, Gaussian noise σ·C/m on every entry of the global model, Poisson sampling, and the (ε, δ)
that dp-accounting's accountant gives for them. No Ray."""

from pathlib import Path

import dp_accounting
import numpy as np
import pytest

from cluster.fl.aggregation import fedavg
from cluster.fl.experiment import build
from cluster.fl.inprocess import round_loop
from cluster.fl.selection import PoissonSampler
from cluster.fl.types import ClientUpdate
from cluster.privacy.accountant import epsilon, noise_for_epsilon
from cluster.privacy.central_dp import CentralDPLayer, expected_entry_share, split_noise, update_norms
from configs import ConfigError, load_config
from configs.privacy_schema import CentralDP


def _update() -> ClientUpdate:
    """Two clients: a dense tensor each, and item rows (client 0 sends rows 1 and 4, client 1 row 4)."""
    return ClientUpdate(
        clients=np.array([3, 7]),
        n_samples=np.array([10, 1]),
        loss=np.zeros(2),
        dense_deltas={"w": np.array([[3.0, 0.0], [0.0, 0.1]], np.float32)},
        item_ids=np.array([1, 4, 4]),
        row_owner=np.array([0, 0, 1], np.int32),
        item_deltas={"item": np.array([[0.0, 4.0], [0.0, 0.0], [0.0, 0.0]], np.float32)},
    )


def _layer(**settings) -> CentralDPLayer:
    cfg = CentralDP(**{"noise_multiplier": 1.0, **settings})
    return CentralDPLayer(cfg, n_clients=1000, n_eligible=1000, n_select=50, denominator=40, rounds=20, seed=0)


def test_a_clients_norm_covers_its_dense_tensors_and_its_own_rows():
    np.testing.assert_allclose(update_norms(_update()), [5.0, 0.1])


def test_every_client_is_clipped_to_the_bound_and_weighs_the_same_whatever_its_samples():
    layer = _layer(clip_norm=1.0)
    weights = layer.weights(update_norms(_update()))
    np.testing.assert_allclose(weights * update_norms(_update()) * layer.denominator, [1.0, 0.1], rtol=1e-6)
    np.testing.assert_allclose(weights, [1.0 / 5.0 / 40, 1.0 / 40])  # the small update is not scaled up


def test_the_noise_has_std_sigma_c_over_m_on_every_entry_sent_or_not():
    layer = _layer(noise_multiplier=2.0, clip_norm=0.5)
    params = {"w": np.zeros((300, 300), np.float32), "unsent": np.zeros((200, 100), np.float32)}
    noised = layer.noised({"w": np.zeros((300, 300), np.float32)}, params, round_index=3)
    assert set(noised) == set(params), "a tensor no client sent is noised too"
    for name, value in noised.items():
        assert value.std() == pytest.approx(2.0 * 0.5 / 40, rel=0.02), name
        assert abs(value.mean()) < 1e-3
    again = layer.noised({"w": np.zeros((300, 300), np.float32)}, params, round_index=3)
    assert np.array_equal(again["w"], noised["w"]), "a round's noise is its own stream: a resumed run redraws it"


def test_epsilon_is_the_librarys_for_the_poisson_subsampled_gaussian():
    expected = dp_accounting.rdp.RdpAccountant()
    expected.compose(
        dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.GaussianDpEvent(1.0)), 20
    )
    layer = _layer()
    assert layer.sampling_rate == 0.05 and layer.delta == pytest.approx(1e-4)
    assert layer.record(update_norms(_update()), 20)["dp_epsilon"] == pytest.approx(expected.get_epsilon(1e-4), rel=1e-9)
    assert epsilon(0.05, 1.0, 0, 1e-4) == 0.0
    assert epsilon(0.05, 1.0, 10, 1e-4) < epsilon(0.05, 1.0, 20, 1e-4), "every round spends more"


def test_a_target_epsilon_is_met_after_the_planned_rounds_with_the_least_noise():
    sigma = noise_for_epsilon(0.05, 4.0, 20, 1e-5)
    assert epsilon(0.05, sigma, 20, 1e-5) <= 4.0
    assert epsilon(0.05, sigma * 0.97, 20, 1e-5) > 4.0, "a little less noise would overspend"
    assert _layer(noise_multiplier=None, target_epsilon=4.0, delta=1e-5).noise_multiplier == pytest.approx(sigma)


def test_the_poisson_sampler_draws_each_client_independently_at_rate_k_over_n():
    sampler = PoissonSampler(np.arange(2000), np.random.default_rng(0))
    sizes = [len(sampler.draw(100)) for _ in range(200)]
    assert np.mean(sizes) == pytest.approx(100, rel=0.03) and np.std(sizes) > 5, "the cohort's size varies"
    state = sampler.state_dict()
    first = sampler.draw(100)
    sampler.load_state_dict(state)
    assert np.array_equal(sampler.draw(100), first)


def _cfg(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=200", "data.synthetic.target_interactions=6000",
        "model.kind=gmf", "model.embedding_dim=8", "fl.clients_per_round=40", "fl.rounds=4", "fl.overselect=0",
        f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


def test_a_private_run_reports_its_epsilon_every_round_and_moves_every_row(tmp_path: Path):
    loop = round_loop(build(_cfg(tmp_path, "fl.privacy={kind: central_dp, target_epsilon: 8, clip_norm: 0.5}")))
    before = {n: v.copy() for n, v in loop.server.params.items()}
    history = [loop.run_round() for _ in range(4)]
    spent = [r["dp_epsilon"] for r in history]
    assert spent == sorted(spent) and spent[-1] == pytest.approx(8.0, rel=0.05)
    assert all(0.0 <= r["dp_clipped"] <= 1.0 for r in history)
    moved = np.abs(loop.server.params["item_gmf"] - before["item_gmf"]).sum(axis=1) > 0
    assert moved.all(), "noise reaches every item row, so the rows a round touched do not show"


@pytest.mark.parametrize("extra, reason", [
    (("fl.strategy=cali3f",), "does not combine with fl.strategy 'cali3f'"),
    (("fl.strategy=scaffold",), "does not combine with fl.strategy 'scaffold'"),
    (("fl.fairness={kind: ceag, measure: pairwise, reference_accuracy: {low: 0.9, mid: 0.9, high: 0.9}}",),
     "does not combine with fl.fairness"),
    ((), "exactly one of noise_multiplier or target_epsilon"),
])
def test_what_the_guarantee_does_not_cover_is_refused_with_the_reason(tmp_path: Path, extra, reason):
    with pytest.raises(ConfigError, match=reason):
        _cfg(tmp_path, "fl.privacy=central_dp", *(["fl.privacy.noise_multiplier=1"] if extra else []), *extra)


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox", "ditto"])
@pytest.mark.parametrize("model", ["gmf", "neumf", "dlrm", "din"])
def test_every_family_and_every_strategy_serving_a_global_model_runs_private(tmp_path: Path, strategy, model):
    click = ["fl.client_lr=1.0", "model.top_hidden=[16]", "model.history_len=10", "fl.upload=dense"]
    cfg = _cfg(tmp_path, f"model.kind={model}", f"fl.strategy={strategy}", "fl.rounds=2", "model.mlp_layers=[8,4]",
               "fl.privacy={kind: central_dp, noise_multiplier: 1.0}", *(click if model in ("dlrm", "din") else []))
    loop = round_loop(build(cfg))
    history = [loop.run_round() for _ in range(2)]
    assert 0 < history[0]["dp_epsilon"] < history[1]["dp_epsilon"]
    assert all(np.isfinite(v).all() for v in loop.server.params.values())


class _HalfWidthOps:
    """A one-tensor model whose half-width sub-model holds the first two of four entries."""

    def held_entries(self, width):
        return {"w": np.arange(4) < int(4 * width)}

    def average(self, merged, weights):
        return fedavg(merged, 0, weights, self.held_entries)


def test_under_channel_each_entry_is_divided_by_its_expected_share_of_holders_not_the_realised_one():
    share = expected_entry_share(_HalfWidthOps(), np.array([0.5, 1.0]), np.array([0.75, 0.25]))
    np.testing.assert_allclose(share["w"], [1.0, 1.0, 0.25, 0.25])
    cfg = CentralDP(noise_multiplier=1e-9, clip_norm=100.0)
    layer = CentralDPLayer(cfg, 1000, 1000, 4, 4, 5, 0, entry_share=share)
    # Four clients, the narrow ones (width 1/2) zero outside their slice: this round only one of
    # the wide entries' expected holder shows up, and its entry is still scaled by the constant.
    merged = ClientUpdate(
        clients=np.arange(4), n_samples=np.ones(4, np.int64), loss=np.zeros(4),
        dense_deltas={"w": np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 2, 2]], np.float32)},
        fractions=np.array([0.5, 0.5, 0.5, 1.0], np.float32),
    )
    average, _ = layer.aggregate(_HalfWidthOps(), merged, {"w": np.zeros(4, np.float32)}, 0)
    np.testing.assert_allclose(average["w"], [1.0, 1.0, 2.0, 2.0], atol=1e-6)


def test_channel_under_central_dp_runs_and_spends_its_budget(tmp_path: Path):
    cfg = _cfg(tmp_path, "model.kind=neumf", "model.mlp_layers=[8,4]", "fl.optimization=channel-1:2:4", "fl.rounds=2",
               "fl.privacy={kind: central_dp, noise_multiplier: 1.0}")
    loop = round_loop(build(cfg))
    assert loop.server.privacy.entry_share is not None
    history = [loop.run_round() for _ in range(2)]
    assert 0 < history[0]["dp_epsilon"] < history[1]["dp_epsilon"]
    assert all(np.isfinite(v).all() for v in loop.server.params.values())


def test_a_poisson_cohort_keeps_its_share_of_the_fastest_not_a_fixed_n(tmp_path: Path):
    """Keeping a fixed n of a cohort that happens to be larger would drop its slowest (the low
    tier's) phones: an over-selection a private run never asked for."""
    private = "fl.privacy={kind: central_dp, noise_multiplier: 1.0}"
    loop = round_loop(build(_cfg(tmp_path, private, "fl.rounds=6")))
    history = [loop.run_round() for _ in range(6)]
    assert len({r["selected"] for r in history}) > 1, "the cohort's size varies"
    assert all(r["dropped"] == 0 and r["aggregated"] == r["selected"] for r in history)
    over = round_loop(build(_cfg(tmp_path, private, "fl.rounds=6", "fl.overselect=0.25")))
    for record in (over.run_round() for _ in range(6)):
        assert record["aggregated"] == int(np.ceil(record["selected"] / 1.25 - 1e-9))


def test_adaptive_clipping_moves_c_toward_the_target_quantile_and_splits_the_noise_to_cost_sigma():
    layer = _layer(adaptive_clipping={"target_quantile": 0.5, "learning_rate": 0.5, "count_noise_multiplier": 1.0},
                   clip_norm=10.0)
    norms = np.linspace(0.5, 1.5, 40)  # median 1.0
    for round_index in range(60):
        layer.clip_norm = layer.next_clip_norm(norms, round_index)
    assert layer.clip_norm == pytest.approx(1.0, abs=0.1)
    # z_Δ⁻² + (2σ_b)⁻² = z⁻²: the two Gaussians together cost one of multiplier z.
    z_update = split_noise(1.0, 2.0)
    assert z_update ** -2 + (2 * 2.0) ** -2 == pytest.approx(1.0)
    assert z_update > 1.0
    with pytest.raises(ValueError, match="must exceed half the noise multiplier"):
        split_noise(1.0, 0.4)


def test_an_adaptive_run_records_its_clip_norm_and_resumes_it(tmp_path: Path):
    private = "fl.privacy={kind: central_dp, noise_multiplier: 1.0, clip_norm: 5.0, adaptive_clipping: {}}"
    loop = round_loop(build(_cfg(tmp_path, private)))
    history = [loop.run_round() for _ in range(4)]
    norms = [r["dp_clip_norm"] for r in history]
    assert norms[0] == 5.0 and norms[-1] < 5.0, "every update is under 5: C comes down toward the median"
    assert loop.server.state_dict()["central_dp"]["clip_norm"] == history[-1]["dp_next_clip_norm"]
    with pytest.raises(ConfigError, match="adaptive_clipping is central DP's"):
        _cfg(tmp_path, "fl.upload=dense", "fl.secure_aggregation=secagg",
             "fl.privacy={kind: distributed_dp, noise_multiplier: 1, adaptive_clipping: {}}")
