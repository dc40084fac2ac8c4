"""``RayWorkerPool`` over real actors, with the answers a worker can give made to order: an upload,
a refusal because Ray restarted it (its clients' state is the last checkpoint's), or death. The
round loop must hear "out of sync" for the restarted one and "failed" for the dead one, whichever
order the answers come in."""

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
