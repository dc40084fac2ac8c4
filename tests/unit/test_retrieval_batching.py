"""Adaptive batching of the retriever's requests: no wait at low load, batches that grow with it."""

import asyncio

import pytest

from cluster.retrieval.batching import Batcher


def test_a_lone_request_starts_its_batch_at_once():
    started = []

    async def handle(items):
        started.append(asyncio.get_running_loop().time())
        return [i * 2 for i in items]

    async def main():
        batcher = Batcher(handle, max_batch=64, max_in_flight=1)
        loop = asyncio.get_running_loop()
        answers, waits = [], []
        for i in range(5):  # one at a time: concurrency 1
            asked = loop.time()
            answers.append(await batcher.submit(i))
            waits.append(started[-1] - asked)
        return batcher, answers, waits

    batcher, answers, waits = asyncio.run(main())
    assert answers == [0, 2, 4, 6, 8] and batcher.batches == 5
    assert max(waits) < 0.001, f"a lone request waited {max(waits) * 1e3:.2f} ms for company"


def test_requests_that_arrive_while_a_batch_runs_leave_together_in_order():
    sizes = []

    async def handle(items):
        sizes.append(len(items))
        await asyncio.sleep(0.01)  # the fan-out
        return [f"answer-{i}" for i in items]

    async def main():
        batcher = Batcher(handle, max_batch=4, max_in_flight=1)
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(11)))
        return batcher, answers

    batcher, answers = asyncio.run(main())
    assert answers == [f"answer-{i}" for i in range(11)]
    # The first starts alone at once; the ten that came while it ran leave in batches of at most 4.
    assert sizes == [1, 4, 4, 2] and batcher.items == 11


def test_at_most_max_in_flight_batches_run_and_a_failure_reaches_every_caller_of_its_batch():
    running, most = 0, 0

    async def handle(items):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.005)
        running -= 1
        if "bad" in items:
            raise RuntimeError("no retrieval shard answered")
        return items

    async def main():
        batcher = Batcher(handle, max_batch=2, max_in_flight=2)
        return await asyncio.gather(*(batcher.submit(i) for i in ["a", "b", "c", "bad", "d", "e"]),
                                    return_exceptions=True)

    answers = asyncio.run(main())
    assert most == 2
    assert answers[:2] == ["a", "b"] and answers[4:] == ["d", "e"]
    assert all(isinstance(a, RuntimeError) for a in answers[2:4]), answers


def test_batcher_refuses_empty_limits():
    with pytest.raises(ValueError):
        Batcher(lambda items: items, max_batch=0)
