"""The one round loop in process (no Ray): a worker that does not answer loses only its own
clients' updates, counted per tier; evaluation follows its cadence; a run resumed from an
in-process checkpoint ends bit-identical to one that was never stopped, also across selection
epochs; a damaged worker checkpoint is an error that names its file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster.checkpoint import CheckpointError
from cluster.fl.experiment import build
from cluster.fl.inprocess import round_loop
from cluster.fl.selection import EpochSampler
from cluster.fl.worker_pool import CorePool, TrainOutcome
from cluster.storage import Storage, StorageError
from configs import load_config
from tests.unit.resume_fixtures import straight_and_resumed


def _cfg(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=200", "data.synthetic.target_interactions=6000",
        "model.kind=gmf", "model.embedding_dim=8", "fl.clients_per_round=40", "fl.rounds=4", "fl.overselect=0",
        f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


class OneWorkerLost(CorePool):
    """Worker ``lost`` never answers training, as an actor that died mid-round would."""

    def __init__(self, cores: list, lost: int):
        super().__init__(cores)
        self.lost = lost

    def train(self, round_index, tasks, params):
        alive = [t for t in tasks if t.worker != self.lost]
        failed = [t.clients for t in tasks if t.worker == self.lost]
        answered = super().train(round_index, alive, params)
        return TrainOutcome(answered.results, np.concatenate(failed) if failed else np.zeros(0, np.int64))


def test_a_lost_worker_costs_only_its_own_clients(tmp_path: Path):
    exp = build(_cfg(tmp_path))
    loop = round_loop(exp)
    lost = 0  # the low tier's worker (one worker per tier)
    loop.pool = OneWorkerLost(loop.pool.cores, lost)
    record = loop.run_round()
    low = exp.fleet.tiers.names[0]
    assert record[f"failed_{low}"] == record[f"selected_{low}"] > 0
    assert record[f"aggregated_{low}"] == 0
    assert record["aggregated"] == record["selected"] - record["failed"]
    assert record["client_updates"] == record["aggregated"]


@pytest.mark.parametrize("eval_every,evaluated", [(None, []), (3, [3, 4]), (2, [2, 4])])
def test_evaluation_follows_its_cadence_and_the_last_round(tmp_path: Path, eval_every, evaluated):
    loop = round_loop(build(_cfg(tmp_path)), eval_every)
    history = [loop.run_round() for _ in range(4)]
    assert [r["round"] for r in history if "hr10" in r] == evaluated


CLICK = ("model.kind=dlrm", "model.top_hidden=[16]", "fl.client_lr=1.0", "fl.server_optimizer=adagrad",
         "fl.server_lr=0.1")


@pytest.mark.parametrize("extra", [
    # Ditto: each client's personal model must come back too (GMF: and its private user vector)
    ("fl.strategy.kind=ditto",),
    # AdaGrad's accumulators are server state
    CLICK,
    # CEAG: its multipliers and replay buffers, under a compressing optimization
    (*CLICK, "fl.optimization=prune-1:4:16",
     "fl.fairness={kind: ceag, reference_accuracy: {low: 0.9, mid: 0.9, high: 0.9}, buffer_size: 50}"),
    # FedAdam's two moments, and FedYogi's, are server state
    ("fl.server_optimizer=adam", "fl.server_lr=0.05"),
    (*CLICK, "fl.server_optimizer=yogi"),
    # SCAFFOLD: the server's control variate and every client's, on its device
    ("fl.strategy=scaffold", "fl.local_epochs=2", "fl.server_optimizer=adam", "fl.server_lr=0.05"),
    (*CLICK, "fl.strategy=scaffold", "fl.local_epochs=2"),
    # Central DP: the Poisson sampler's state, the noise of each round and the ε it reports
    ("fl.privacy={kind: central_dp, noise_multiplier: 0.8, clip_norm: 0.5}",),
    (*CLICK, "fl.privacy={kind: central_dp, target_epsilon: 8}", "fl.upload=dense"),
    # Secure aggregation with dropouts and distributed DP: each round's noise as its survivors added it
    ("fl.upload=dense", "fl.secure_aggregation={kind: secagg, neighbours: 4, dropout: {low: 0.3}}",
     "fl.privacy={kind: distributed_dp, noise_multiplier: 1.0}"),
    # Adaptive clipping: the clip norm each round moved to
    ("fl.privacy={kind: central_dp, noise_multiplier: 0.8, clip_norm: 3.0, adaptive_clipping: {learning_rate: 1.0}}",),
    # Local DP: how often each device has released its update
    ("fl.upload=dense", "fl.privacy={kind: local_dp, noise_multiplier: 3.0}", "fl.clients_per_round=100"),
], ids=["ditto-gmf", "dlrm-adagrad", "dlrm-ceag-prune", "gmf-adam", "dlrm-yogi", "gmf-scaffold-adam", "dlrm-scaffold",
        "gmf-dp", "dlrm-dp-target", "gmf-secagg-distributed-dp", "gmf-dp-adaptive-clip", "gmf-local-dp"])
def test_in_process_resume_from_a_checkpoint_equals_an_unbroken_run(tmp_path: Path, extra: tuple):
    cfg = _cfg(tmp_path, *extra)
    straight = round_loop(build(cfg), eval_every=2)
    for _ in range(4):
        straight.run_round()

    first = round_loop(build(cfg), eval_every=2)
    first.checkpoints, first.checkpoint_every = Storage(tmp_path / "ckpt"), 2
    for _ in range(3):  # round 3 is not checkpointed: the resumed run must redo it
        first.run_round()
    resumed = round_loop(build(cfg), eval_every=2)
    resumed.checkpoints = Storage(tmp_path / "ckpt")
    assert resumed.restore() == 2
    for _ in range(2):
        resumed.run_round()
    deterministic = [{k: v for k, v in r.items() if not k.endswith("_s") or k.startswith("sim_")}
                     for r in straight.history]
    # A private run's train_loss is NaN (the loss stays on the phones): compared as equal strings.
    assert repr([{k: r[k] for k in d} for r, d in zip(resumed.history, deterministic)]) == repr(deterministic)
    for name, value in straight.server.params.items():
        assert np.array_equal(resumed.server.params[name], value), name
    for name, value in straight.pool.cores[0].state.items():  # Ditto's personal parts, SCAFFOLD's variates
        assert np.array_equal(resumed.pool.cores[0].state[name], value), name


def test_a_resume_between_selection_epochs_draws_the_clients_an_unbroken_run_draws(tmp_path: Path):
    """100 of 240 clients a round: a selection epoch ends in rounds 3 and 5, so the checkpoint
    after round 4 lies between two reshuffles and the resumed run must carry the sampler's
    order, position and random state to draw round 5's new permutation as the unbroken run did."""
    exp = build(_cfg(tmp_path, "fl.clients_per_round=100", "fl.rounds=6"))
    straight, resumed = straight_and_resumed(exp, tmp_path / "ckpt", rounds=6, break_after=4)
    assert len(straight.server.sampler.eligible) == 240
    assert straight.server.sampler.epoch == resumed.server.sampler.epoch == 2
    at_checkpoint = EpochSampler(np.arange(240), np.random.default_rng(0))
    for _ in range(4):
        at_checkpoint.draw(100)
    assert at_checkpoint.epoch == 1, "the checkpoint no longer lies between two reshuffles"
    assert np.array_equal(resumed.server.sampler.order, straight.server.sampler.order)
    deterministic = [{k: v for k, v in r.items() if not k.endswith("_s") or k.startswith("sim_")}
                     for r in straight.history]
    # A private run's train_loss is NaN (the loss stays on the phones): compared as equal strings.
    assert repr([{k: r[k] for k in d} for r, d in zip(resumed.history, deterministic)]) == repr(deterministic)
    for name, value in straight.server.params.items():
        assert np.array_equal(resumed.server.params[name], value), name


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(b"garbage"), "not a readable .npz"),
    # a readable file without this model's tables (another model's, or a truncated rewrite)
    (lambda path: np.savez(path, clients=np.arange(3), round_index=np.int64(1)), "checkpoint arrays missing"),
], ids=["unreadable", "foreign"])
def test_a_damaged_worker_checkpoint_is_an_error_naming_its_file(tmp_path: Path, damage, message):
    exp = build(_cfg(tmp_path))
    loop = round_loop(exp)
    loop.checkpoints = Storage(tmp_path / "ckpt")
    loop.run_round()
    damaged = tmp_path / "ckpt" / "round-000001" / "workers" / "worker-1.npz"
    assert damaged.exists(), "GMF keeps private user vectors: each worker writes a file"
    damage(damaged)
    again = round_loop(exp)
    again.checkpoints = Storage(tmp_path / "ckpt")
    # Both are what the CLI reports as one line instead of a traceback.
    with pytest.raises((CheckpointError, StorageError), match=message) as caught:
        again.restore()
    assert str(damaged) in str(caught.value)
