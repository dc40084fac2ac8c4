"""The million-client memory goal (at most 4 GiB per process; ``jobs/bench_memory.py --check``
measures it in minutes) at CI size: what evaluating the fleet makes the aggregator gather and a
worker allocate, per client and per train positive, against budgets that keep both far below
the goal at 1M clients and 25M interactions (``configs/synthetic_1m.yaml``).

The actors are thin shells over what runs here: ``ClientWorker.evaluate`` is a worker core's
``evaluate``, ``Aggregator.evaluate`` is ``RoundLoop.evaluate`` over the answers the workers
send. numpy registers its buffers with ``tracemalloc``, so its peak counts every array."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from cluster.fl.experiment import build
from cluster.fl.families.ncf import worker as ncf_worker
from cluster.fl.inprocess import round_loop
from configs import load_config

# The 1M world's shape per client: 25 interactions each, 10 users per item.
N_USERS = 4000
# What one evaluation may cost the aggregator per client of the fleet: the answers it gathers
# (they cross the object store into its memory) and its own peak while ordering and summarizing
# them. 64 + 128 B is 0.2 GB at 1M clients, beside Ray's ~0.3 GB; a bit per (positive,
# negative) train pair instead is ~5 KB per client, 5 GB at 1M.
ANSWER_BYTES_PER_CLIENT = 64
GATHER_PEAK_BYTES_PER_CLIENT = 128
# A worker scoring its clients' train pairs one chunk of positives at a time: its peak may grow
# by a few integers per positive it holds (8M positives per worker at 1M: 0.5 GB), not by the
# (positive, negatives) rows and draws of them all.
WORKER_PEAK_BYTES_PER_POSITIVE = 64
WORKER_PEAK_CONSTANT_BYTES = 4 * 2**20


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    cfg = load_config("configs/demo.yaml", [
        f"data.synthetic.n_users={N_USERS}", f"data.synthetic.n_items={N_USERS // 10}",
        f"data.synthetic.target_interactions={25 * N_USERS}", f"data.cache_dir={cache}",
    ])
    return round_loop(build(cfg))


def traced_peak(call) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class _Answered:
    """A pool whose workers already answered: the loop's own work is all that is measured."""

    def __init__(self, answers: list):
        self.answers = answers

    def evaluate(self, params, split, clusters) -> list:
        return self.answers


@pytest.mark.parametrize("split", ["test", "train"])
def test_the_aggregator_gathers_an_evaluation_per_client(loop, split: str):
    cores, params = loop.pool.cores, loop.server.params
    answers = [core.evaluate(params, split) for core in cores]
    n_clients = sum(core.n_clients for core in cores)
    answer_bytes = sum(array.nbytes for answer in answers for array in answer)
    assert answer_bytes <= ANSWER_BYTES_PER_CLIENT * n_clients, f"{answer_bytes / n_clients:.0f} B per client"

    workers, loop.pool = loop.pool, _Answered(answers)
    try:
        peak = traced_peak(lambda: loop.evaluate(split))
    finally:
        loop.pool = workers
    assert peak <= GATHER_PEAK_BYTES_PER_CLIENT * n_clients, f"{peak / n_clients:.0f} B per client"


def test_a_worker_scores_its_train_pairs_in_bounded_blocks(loop, monkeypatch):
    core = max(loop.pool.cores, key=lambda c: len(c.shard.train))
    expected = core.evaluate(loop.server.params, "train")
    # The smallest block: what the worker holds beyond it is what grows with its clients.
    monkeypatch.setattr(ncf_worker, "PAIR_BLOCK", ncf_worker.EVAL_CHUNK)
    answer = []
    peak = traced_peak(lambda: answer.extend(core.evaluate(loop.server.params, "train")))
    positives = len(core.shard.train)
    assert positives > 4 * ncf_worker.EVAL_CHUNK  # several blocks, clients cut between them
    assert peak <= WORKER_PEAK_BYTES_PER_POSITIVE * positives + WORKER_PEAK_CONSTANT_BYTES, \
        f"{peak / positives:.0f} B per positive"
    for got, want in zip(answer, expected):  # the block size never moves a result
        assert np.array_equal(got, want)


def test_train_counts_per_client_give_each_pair_bit_its_weight(loop):
    """The per-client counts summarize to the mean of the pair bits themselves, bit for bit."""
    from cluster.fairness.ranking import bit_rate_by_tier

    clients, correct, pairs = (np.array([3, 5, 8]), np.array([2, 0, 7]), np.array([4, 4, 8]))
    bits = np.concatenate([np.r_[np.ones(c), np.zeros(p - c)] for c, p in zip(correct, pairs)])
    tier_of_user = np.zeros(10, np.int64)
    tier_of_user[[5, 8]] = [1, 2]
    names = ("low", "mid", "high")
    expected = bit_rate_by_tier(np.repeat(clients, pairs), bits, tier_of_user, names, "pair_train")
    assert loop.server.ops.summarize(clients, correct, pairs, tier_of_user, names, "train") == expected
