"""CEAG wired into the server: the controller's round on a hand case (buffers, dual step,
aggregation weights), the reference table from a run folder, config errors, and the reweighted
HeteroFL average."""

import json

import numpy as np
import pytest

from cluster.data.errors import DataFormatError
from cluster.fairness.ceag import aggregation_weights
from cluster.fairness.ceag_round import CEAGController
from cluster.fairness.reference import reference_accuracy
from cluster.fl.compression import masked_average
from configs import ConfigError, load_config
from configs.schema import CEAGConfig

NAMES = ("low", "mid", "high")


def test_controller_round_by_hand():
    cfg = CEAGConfig(epsilon=0.0, dual_lr=1.0, buffer_size=4,
                         reference_accuracy={"low": 0.9, "mid": 0.8, "high": 0.7})
    controller = CEAGController(cfg, np.array([0.9, 0.8, 0.7]), np.array([1.0, 1.0, 2.0]), NAMES)
    tier_of_user = np.array([0, 1, 2, 2])
    clients, n_samples = np.array([0, 1, 2, 3]), np.array([4, 4, 2, 2])
    # low: 2 of 4 correct (0.5), mid: 4 of 4 (1.0), high: 3 of 4 (0.75)
    correct = np.array([1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1], np.float64)
    step, record = controller.round_step(clients, n_samples, correct, tier_of_user)
    weights = step.weights
    # drops: low 0.4, mid -0.2, high -0.05; population drop with weights 1:1:2 = (0.4 - 0.2 - 0.1)/4 = 0.025
    expected_psi = np.array([0.375, -0.225, -0.075])
    assert [record[f"psi_{t}"] for t in NAMES] == pytest.approx(expected_psi.tolist())
    lambdas = np.maximum(expected_psi, 0.0)
    assert [record[f"lambda_{t}"] for t in NAMES] == pytest.approx(lambdas.tolist())
    assert weights == pytest.approx(aggregation_weights(n_samples, tier_of_user[clients], lambdas))
    assert weights.sum() == pytest.approx(1.0) and weights[0] > 4 / 12, "the low tier gains weight"

    clone = CEAGController(cfg, np.array([0.9, 0.8, 0.7]), np.array([1.0, 1.0, 2.0]), NAMES)
    clone.load_state_dict(controller.state_dict())
    assert clone.round_step(clients, n_samples, correct, tier_of_user)[1] == \
        controller.round_step(clients, n_samples, correct, tier_of_user)[1]
    assert controller.round_step(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), tier_of_user) == (None, {})


def test_tier_that_did_not_report_keeps_its_multiplier():
    cfg = CEAGConfig(dual_lr=1.0, buffer_size=2, reference_accuracy={t: 1.0 for t in NAMES})
    controller = CEAGController(cfg, np.ones(3), np.ones(3), NAMES)
    _, record = controller.round_step(np.array([1, 2]), np.array([2, 2]), np.array([1, 1, 0, 0.0]),
                                      np.array([0, 1, 2]))
    assert record["lambda_low"] == 0.0 and np.isnan(record["psi_low"]), "excluded tier: nothing to measure"
    assert record["lambda_high"] > 0


def test_reference_from_a_run_folder(tmp_path):
    run = tmp_path / "ref"
    run.mkdir()
    cfg = CEAGConfig(reference_run=run)
    with pytest.raises(DataFormatError, match="no summary.json"):
        reference_accuracy(cfg, NAMES)
    (run / "summary.json").write_text(json.dumps({"optimization": "none", "final_train": {"acc_train_low": 0.8}}))
    with pytest.raises(DataFormatError, match="acc_train_mid missing"):
        reference_accuracy(cfg, NAMES)
    train = {f"acc_train_{t}": v for t, v in zip(NAMES, (0.8, 0.7, 0.9))}
    (run / "summary.json").write_text(json.dumps({"optimization": "prune-1:2:4", "final_train": train}))
    with pytest.raises(DataFormatError, match="the run without one"):
        reference_accuracy(cfg, NAMES)
    (run / "summary.json").write_text(json.dumps({"optimization": "none", "final_train": train, "model": "dlrm",
                                                  "tier_mapping": "hetero-high", "seed": 0}))
    assert reference_accuracy(cfg, NAMES).tolist() == [0.8, 0.7, 0.9]
    assert reference_accuracy(cfg, NAMES, {"model": "dlrm", "seed": 0}).tolist() == [0.8, 0.7, 0.9]
    with pytest.raises(DataFormatError, match="tier_mapping 'hetero-high', this run 'random'"):
        reference_accuracy(cfg, NAMES, {"model": "dlrm", "tier_mapping": "random", "seed": 0})


def test_fairness_config_errors():
    with pytest.raises(ConfigError, match="exactly one of reference_run or reference_accuracy"):
        load_config(None, ["model.kind=dlrm", "fl.fairness={kind: ceag}"])
    with pytest.raises(ConfigError, match="needs measure 'pairwise' and proxy 'loss': an NCF client has no click"):
        load_config(None, ["fl.fairness={kind: ceag, reference_accuracy: {low: 1, mid: 1, high: 1}}"])
    with pytest.raises(ConfigError, match="the pairwise-logistic upload is built for click models"):
        load_config(None, ["fl.fairness={kind: ceag, measure: pairwise, proxy: pairwise_logistic, "
                           "reference_accuracy: {low: 1, mid: 1, high: 1}}"])
    assert load_config(None, ["fl.fairness={kind: ceag, measure: pairwise, reference_accuracy: "
                              "{low: 1, mid: 1, high: 1}}"]).fl.fairness.measure == "pairwise"
    with pytest.raises(ConfigError, match="needs a strategy that serves one global model .*not 'ditto'.*serves \\(and evaluates\\)"):
        load_config(None, ["model.kind=dlrm", "fl.strategy=ditto",
                           "fl.fairness={kind: ceag, reference_accuracy: {low: 1, mid: 1, high: 1}}"])
    # FedProx serves the global model FedAvg would: CEAG composes with it.
    assert load_config(None, ["model.kind=dlrm", "fl.strategy=fedprox",
                              "fl.fairness={kind: ceag, reference_accuracy: {low: 1, mid: 1, high: 1}}"]).fl.fairness.kind == "ceag"
    with pytest.raises(ConfigError, match="must name every tier"):
        load_config(None, ["model.kind=dlrm", "fl.fairness={kind: ceag, reference_accuracy: {low: 1}}"])
    with pytest.raises(ConfigError, match=r"shares in \[0, 1\]"):
        load_config(None, ["model.kind=dlrm", "fl.fairness={kind: ceag, reference_accuracy: {low: 85, mid: .nan, high: 1}}"])
    for level in (".inf", ".nan"):
        with pytest.raises(ConfigError, match="whole bits"):
            load_config(None, ["model.kind=dlrm", f"fl.optimization={{kind: quant, levels: {{low: {level}}}}}"])


def test_reweighted_heterofl_average_keeps_fedavg_scale():
    updates = np.array([[1.0, 2.0], [3.0, 0.0], [5.0, 0.0]])
    masks = np.array([[1, 1], [1, 0], [1, 0]], bool)  # client 0 is wide, 1 and 2 narrow
    samples = np.array([0.5, 0.25, 0.25])
    weights = np.array([0.7, -0.1, 0.4])  # a Lagrangian step: one weight negative
    out = masked_average(updates, masks, weights, samples)
    assert out[0] == pytest.approx(0.7 * 1 - 0.1 * 3 + 0.4 * 5)
    assert out[1] == pytest.approx(0.7 * 2 / 0.5), "the wide channel is normalized by its holders' sample share"
    assert masked_average(updates, masks, samples).tolist() == pytest.approx([2.5, 2.0])


def test_pairwise_reference_reads_the_pairwise_train_rates(tmp_path):
    run = tmp_path / "ref"
    run.mkdir()
    train = {**{f"acc_train_{t}": 0.9 for t in NAMES}, **{f"pair_train_{t}": v for t, v in zip(NAMES, (0.7, 0.75, 0.8))}}
    (run / "summary.json").write_text(json.dumps({"optimization": "none", "final_train": train}))
    assert reference_accuracy(CEAGConfig(reference_run=run, measure="pairwise"), NAMES).tolist() == [0.7, 0.75, 0.8]
    (run / "summary.json").write_text(json.dumps({"optimization": "none", "final_train": {
        f"acc_train_{t}": 0.9 for t in NAMES}}))  # written before the pairwise rates were recorded
    with pytest.raises(DataFormatError, match="pair_train_low missing"):
        reference_accuracy(CEAGConfig(reference_run=run, measure="pairwise"), NAMES)


def test_bits_counted_per_client_not_per_sample():
    cfg = CEAGConfig(dual_lr=1.0, buffer_size=4, epsilon=0.0, reference_accuracy={t: 1.0 for t in NAMES})
    controller = CEAGController(cfg, np.ones(3), np.ones(3), NAMES)
    # client 0 (low) reported 4 pair bits from 2 samples, client 1 (mid) 4 bits from 3 samples
    _, record = controller.round_step(np.array([0, 1]), np.array([2, 3]), np.array([0, 0, 0, 0, 1, 1, 1, 1.0]),
                                      np.array([0, 1, 2]), 0, np.array([4, 4]))
    assert record["psi_low"] == pytest.approx(0.5) and record["psi_mid"] == pytest.approx(-0.5)
    assert record["lambda_low"] == pytest.approx(0.5) and record["lambda_mid"] == 0.0


def test_pairwise_proxy_step_weights_the_uploaded_gradients_by_pairs():
    cfg = CEAGConfig(dual_lr=1.0, buffer_size=4, epsilon=0.0, measure="pairwise", proxy="pairwise_logistic",
                     reference_accuracy={t: 1.0 for t in NAMES})
    controller = CEAGController(cfg, np.ones(3), np.ones(3), NAMES)
    step, record = controller.round_step(np.array([0, 1]), np.array([2, 3]), np.array([0, 0, 0, 0, 1, 1, 1, 1.0]),
                                         np.array([0, 1, 2]), 0, np.array([4, 4]))
    assert step.weights is None, "the BCE part stays plain FedAvg"
    # λ = (0.5, 0, 0); 4 pairs per tier, 8 in all: k = 4 (λ_t / 4 − 0.5 / 8)
    assert step.proxy_coefficients.tolist() == pytest.approx([0.25, -0.25])
    assert record["lambda_low"] == pytest.approx(0.5)


def test_pairwise_proxy_needs_the_pairwise_measure():
    with pytest.raises(ValueError, match="differentiable form of measure 'pairwise'"):
        CEAGConfig(proxy="pairwise_logistic", reference_accuracy={t: 1.0 for t in NAMES})


def test_a_tier_without_pairs_this_round_takes_no_dual_step():
    """Its clients were in the round but reported no pair: its ψ is last round's, and stepping
    on it again would wind λ up."""
    cfg = CEAGConfig(dual_lr=1.0, buffer_size=4, epsilon=0.0, measure="pairwise",
                     reference_accuracy={t: 1.0 for t in NAMES})
    controller = CEAGController(cfg, np.ones(3), np.ones(3), NAMES)
    tier_of_user = np.array([0, 1, 2])
    _, first = controller.round_step(np.array([0, 1]), np.array([2, 3]), np.array([0, 0, 0, 0, 1, 1, 1, 1.0]),
                                     tier_of_user, 0, np.array([4, 4]))
    assert first["lambda_low"] == pytest.approx(0.5)
    # the low client is back with samples of one label only: no pair, no bit
    _, second = controller.round_step(np.array([0, 1]), np.array([2, 3]), np.array([1, 1, 1, 1.0]),
                                      tier_of_user, 1, np.array([0, 4]))
    assert second["lambda_low"] == pytest.approx(0.5), "a tier that reported no pair keeps its λ"


def test_the_pairwise_population_rate_weighs_tiers_by_their_pairs():
    """A = Σ_t w_t A_t is a mean over pairs, as the buffers' bits and the proxy coefficients are:
    a tier with many samples but few pairs must not dominate it."""
    from cluster.fl.families.click.setup import pairs_per_client
    from cluster.fl.server_core import FleetView

    labels = np.array([1, 0, 0, 1, 1, 0, 1, 0, 1], np.float32)  # client 1 has no sample
    indptr = np.array([0, 3, 3, 5, 9])
    assert pairs_per_client(labels, indptr).tolist() == [2, 0, 0, 4]
    fleet = FleetView(None, np.array([0, 1, 2, 2]), np.array([3, 0, 2, 4]), train_pairs=np.array([2, 0, 0, 4]))
    assert fleet.measure_counts("pairwise").tolist() == [2, 0, 0, 4]
    assert fleet.measure_counts("accuracy").tolist() == [3, 0, 2, 4]
    assert FleetView(None, np.zeros(2, int), np.array([5, 6])).measure_counts("pairwise").tolist() == [5, 6]
