"""Workers that fall out of sync with the round loop — restarted by Ray with their clients back at
the last checkpoint, or timed out mid-call after changing state — take the run back to its last
checkpoint, and the run then equals one without the failure, bit for bit. The pools here fail
the way an actor does (``actors/worker_pool.RayWorkerPool``); tests/actors/test_fl_engine.py kills a
real worker actor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster import checkpoint
from cluster.fl.experiment import build
from cluster.fl.inprocess import build_cores
from cluster.fl.round_loop import RESYNC_ATTEMPTS, RoundLoop, RoundSchedule, WorkersLost
from cluster.fl.server_core import FederatedServer
from cluster.fl.worker_pool import CorePool, WorkersOutOfSync
from cluster.storage import Storage
from configs import load_config

ROUNDS = 5


def _exp(tmp_path: Path):
    # Ditto: every client keeps a personal model on its device, the state a roll-back would lose.
    return build(load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=200", "data.synthetic.target_interactions=6000",
        "model.kind=gmf", "model.embedding_dim=8", "fl.clients_per_round=40", f"fl.rounds={ROUNDS}",
        "fl.overselect=0", "fl.strategy.kind=ditto", f"data.cache_dir={tmp_path / 'cache'}"]))


class RestartsOnce(CorePool):
    """Worker ``index`` dies after round ``at`` and comes back as Ray brings it back: reloaded
    from the last checkpoint, and refusing to answer for the process it was."""

    def __init__(self, cores, checkpoints: Storage, index: int, at: int):
        super().__init__(cores)
        self.checkpoints, self.index, self.at, self.restarted = checkpoints, index, at, False

    def train(self, round_index, tasks, params):
        if round_index == self.at and not self.restarted:
            self.restarted = True
            fresh = self.cores[self.index].fresh()
            folder = checkpoint.latest(self.checkpoints)
            if folder is not None:
                fresh.restore(folder / "workers", (folder / "workers").list())
            self.cores[self.index] = fresh
            raise WorkersOutOfSync([self.index], "restarted")
        return super().train(round_index, tasks, params)


class TimesOut(CorePool):
    """Worker ``index`` trains in round ``at`` but its answer comes too late: ``times`` times in
    a row, its state advanced and its upload dropped, as a cancelled actor call does."""

    def __init__(self, cores, index: int, at: int, times: int = 1):
        super().__init__(cores)
        self.index, self.at, self.left = index, at, times

    def train(self, round_index, tasks, params):
        outcome = super().train(round_index, tasks, params)
        if round_index == self.at and self.left > 0 and any(t.worker == self.index for t in tasks):
            self.left -= 1
            raise WorkersOutOfSync([self.index], "timed out")
        return outcome


def _loop(exp, pool_of, checkpoints: Storage) -> RoundLoop:
    server = FederatedServer(exp.cfg.fl, exp.ops, exp.fleet, exp.cfg.seed)
    return RoundLoop(server, pool_of(build_cores(exp)), exp.worker_of_user,
                     RoundSchedule(ROUNDS, 2, checkpoint_every=2), checkpoints)


def _same_run(a: RoundLoop, b: RoundLoop) -> None:
    deterministic = lambda history: [{k: v for k, v in r.items() if not k.endswith("_s") or k.startswith("sim_")}  # noqa: E731
                                     for r in history]
    assert deterministic(a.history) == deterministic(b.history)
    for name, value in a.server.params.items():
        assert np.array_equal(b.server.params[name], value), name
    for core_a, core_b in zip(a.pool.cores, b.pool.cores):
        held_a, held_b = {**core_a.users, **core_a.state}, {**core_b.users, **core_b.state}
        assert held_a.keys() == held_b.keys() and held_a
        for table in held_a:
            assert np.array_equal(held_a[table], held_b[table]), table


@pytest.mark.parametrize("at", [1, 3], ids=["before-any-checkpoint", "after-the-round-2-checkpoint"])
def test_a_restarted_worker_takes_the_run_back_to_its_checkpoint_and_the_run_equals_an_unbroken_one(tmp_path, at):
    exp = _exp(tmp_path)
    straight = _loop(exp, CorePool, Storage(tmp_path / "straight"))
    broken = _loop(exp, lambda cores: RestartsOnce(cores, Storage(tmp_path / "broken"), 0, at), Storage(tmp_path / "broken"))
    for _ in range(ROUNDS):
        straight.run_round()
        broken.run_round()
    assert broken.pool.restarted and broken.resyncs == 1 and straight.resyncs == 0
    _same_run(straight, broken)


def test_a_timed_out_call_cannot_change_device_state(tmp_path):
    exp = _exp(tmp_path)
    straight = _loop(exp, CorePool, Storage(tmp_path / "straight"))
    late = _loop(exp, lambda cores: TimesOut(cores, 1, at=3), Storage(tmp_path / "late"))
    for _ in range(ROUNDS):
        straight.run_round()
        late.run_round()
    assert late.resyncs == 1
    _same_run(straight, late)


def test_a_worker_that_keeps_timing_out_stops_the_run_with_the_reason(tmp_path):
    exp = _exp(tmp_path)
    late = _loop(exp, lambda cores: TimesOut(cores, 1, at=0, times=RESYNC_ATTEMPTS + 1), Storage(tmp_path / "late"))
    with pytest.raises(WorkersLost, match="round_timeout_s"):
        late.run_round()
    assert late.resyncs == RESYNC_ATTEMPTS
