"""``RayWorkerPool`` over real actors, with the answers a worker can give made to order: an upload,
a refusal because Ray restarted it (its clients' state is the last checkpoint's), or death. The
round loop must hear "out of sync" for the restarted one and "failed" for the dead one, whichever
order the answers come in. A model or step argument arrives whole whether it travelled inside the
call or through the object store."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from actors.worker_pool import RayWorkerPool
from cluster.fl.worker_pool import TrainTask, WorkerRestarted, WorkersOutOfSync

pytestmark = pytest.mark.usefixtures("ray_session")


class ScriptedWorker:
    def __init__(self, answer: str):
        self.answer = answer

    def ready(self) -> dict:
        return {"incarnation": "same"}

    def train(self, call, *model):
        if self.answer == "restarted":
            raise WorkerRestarted("scripted")
        if self.answer == "dies":
            raise SystemExit(1)  # the actor process ends mid-call
        return np.asarray(call.task.clients) * 10


class EchoWorker:
    """Answers with what it received: the model a round's call carried, a step's arguments."""

    def ready(self) -> dict:
        return {"incarnation": "same"}

    def train(self, call, *model):
        return call.params(model)

    def device_step(self, step, *args, expect=None):
        return step, args


def _pool(*answers: str) -> RayWorkerPool:
    worker = ray.remote(ScriptedWorker).options(max_restarts=0, max_task_retries=0)
    return RayWorkerPool([worker.remote(a) for a in answers], timeout_s=60)


def _tasks(n: int) -> list[TrainTask]:
    return [TrainTask(i, np.array([i])) for i in range(n)]


def test_uploads_come_back_folded_in_worker_order():
    outcome = _pool("upload", "upload").train(0, _tasks(2), {}, fold=lambda upload: int(upload[0]) + 1)
    assert outcome.results == [1, 11] and len(outcome.failed) == 0


@pytest.mark.parametrize("answers", [("restarted", "upload"), ("upload", "restarted"), ("dies", "restarted")])
def test_a_restarted_worker_is_out_of_sync_whatever_answers_around_it(answers):
    with pytest.raises(WorkersOutOfSync) as raised:
        _pool(*answers).train(0, _tasks(2), {}, fold=lambda upload: upload)
    assert raised.value.workers == [answers.index("restarted")]


def test_a_dead_worker_fails_its_clients_and_the_others_still_count():
    outcome = _pool("dies", "upload").train(0, _tasks(2), {})
    assert outcome.failed.tolist() == [0] and [r.tolist() for r in outcome.results] == [[10]]


@pytest.mark.parametrize("rows", [10, 1682, 50_000])  # one chunk, several chunks, the object store
def test_the_model_arrives_bit_for_bit_however_it_travels(rows):
    model = {"item": np.random.default_rng(rows).normal(size=(rows, 16)).astype(np.float32), "bias": np.ones(1)}
    workers = [ray.remote(EchoWorker).remote() for _ in range(2)]
    outcome = RayWorkerPool(workers, timeout_s=60).train(3, _tasks(2), model)
    for received in outcome.results:
        assert list(received) == list(model)
        assert all(received[k].tobytes() == v.tobytes() and received[k].dtype == v.dtype for k, v in model.items())


def test_step_arguments_arrive_whole_inside_the_call_or_through_the_object_store():
    small, large = np.arange(10), np.arange(200_000)
    workers = [ray.remote(EchoWorker).remote() for _ in range(2)]
    for step, (a, b, c) in RayWorkerPool(workers, timeout_s=60).device_step("step", small, large, {"lam": 0.5}):
        assert step == "step" and np.array_equal(a, small) and np.array_equal(b, large) and c == {"lam": 0.5}
