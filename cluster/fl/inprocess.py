"""The round loop (``round_loop.py``) over the worker cores in this process, with no Ray at all.

Results equal an actor run of the same config bit for bit (clients train the same whichever
worker holds them, uploads are merged in client-id order), so experiment grids run whole cells as
single Ray tasks — the parallel unit is the cell, not the client. Evaluation is the loop's own
(``RoundLoop.evaluate``), as on actors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fl.experiment import Experiment
from cluster.fl.round_loop import RoundLoop, RoundSchedule
from cluster.fl.worker_core import WorkerCore
from cluster.fl.worker_pool import CorePool


@dataclass
class InProcessRun:
    history: list[dict]
    params: dict[str, np.ndarray]
    test: dict[str, float]
    train: dict[str, float]
    sim_time_s: float


def build_cores(exp: Experiment) -> list[WorkerCore]:
    """The worker cores of an experiment, as its actors would hold them."""
    setup = exp.worker_setup()
    return [setup.core(shard) for shard in exp.shards()]


def round_loop(exp: Experiment, eval_every: Optional[int] = None) -> RoundLoop:
    """The experiment's loop over fresh in-process cores. ``eval_every``: evaluate every that many
    rounds and at the last one; None: only when asked."""
    cfg = exp.cfg
    server = exp.server_setup().server()
    return RoundLoop(server, CorePool(build_cores(exp)), exp.worker_of_user, RoundSchedule(cfg.fl.rounds, eval_every))


def trained_loop(exp: Experiment, eval_every: Optional[int] = None) -> RoundLoop:
    """The loop after the ``fl.rounds`` rounds of an experiment (``history`` holds one record per
    round; ``evaluate`` asks its cores). ``eval_every``: as ``round_loop``'s, where the family
    evaluates during grids at all; a family that does not is evaluated only when asked."""
    loop = round_loop(exp, eval_every if exp.family.evaluates_during_grids else None)
    for _ in range(exp.cfg.fl.rounds):
        loop.run_round()
    return loop


def cores_of(loop: RoundLoop) -> list[WorkerCore]:
    """The worker cores an in-process loop drives."""
    assert isinstance(loop.pool, CorePool), "an in-process loop drives the cores in this process"
    return loop.pool.cores


def run_in_process(exp: Experiment, eval_every: Optional[int] = None) -> InProcessRun:
    """All rounds of an experiment, then the served models' test and train measures per tier."""
    loop = trained_loop(exp, eval_every)
    return InProcessRun(
        loop.history, loop.server.params, loop.evaluate("test"), loop.evaluate("train"), loop.server.sim_time_s
    )
