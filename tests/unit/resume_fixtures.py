"""Run an in-process experiment straight through, and again broken at a checkpoint and resumed,
so a test can compare the two runs' states."""

from __future__ import annotations

from pathlib import Path

from cluster.fl.inprocess import build_cores, round_loop
from cluster.fl.round_loop import RoundLoop, RoundSchedule
from cluster.fl.server_core import FederatedServer
from cluster.fl.worker_pool import CorePool
from cluster.storage import Storage


def straight_and_resumed(exp, folder: Path, rounds: int, break_after: int) -> tuple[RoundLoop, RoundLoop]:
    """(a loop that ran ``rounds`` rounds, one that ran ``break_after``, was rebuilt from its
    checkpoints in ``folder`` with fresh workers, and ran the rest)."""
    straight = round_loop(exp)
    for _ in range(rounds):
        straight.run_round()

    def loop(checkpoints: Storage) -> RoundLoop:
        server = FederatedServer(exp.cfg.fl, exp.ops, exp.fleet, exp.cfg.seed)
        return RoundLoop(server, CorePool(build_cores(exp)), exp.worker_of_user, RoundSchedule(rounds, None), checkpoints)

    checkpoints = Storage(folder)
    first = loop(checkpoints)
    for _ in range(break_after):
        first.run_round()
    resumed = loop(checkpoints)
    assert resumed.restore() == break_after
    for _ in range(rounds - break_after):
        resumed.run_round()
    return straight, resumed
