"""Ray's own floor under a fan-out of the fair sharded search: the same calls, with payloads of the
same sizes, to actors that answer at once. One fan-out at batch 1 is one call per shard (the
query and μ out, the hits back), all waited for together, then one call to the dual-vector actor
(the slots per group out, μ back); what the fan-out costs beyond this floor is search, merging
and the dual's bookkeeping."""

from __future__ import annotations

import time

import numpy as np


class _Answers:
    """An actor that answers every call with one fixed reply."""

    def __init__(self, reply):
        self.reply = reply

    def answer(self, _request):
        return self.reply


def fanout_floor(n_shards: int, query: bytes, hits_reply: bytes, n_groups: int, fanouts: int = 300,
                 warmup: int = 30) -> dict:
    """p50 and p99 in ms of ``fanouts`` timed fan-outs over ``n_shards`` + 1 answering actors."""
    import ray

    remote = ray.remote(num_cpus=0)(_Answers)
    shards = [remote.remote(hits_reply) for _ in range(n_shards)]
    dual = remote.remote(([0.0] * n_groups, 0))
    try:
        calls = [s.answer.options(enable_task_events=False) for s in shards]
        report = dual.answer.options(enable_task_events=False)
        counts = [0.0] * n_groups
        latencies = []
        for i in range(warmup + fanouts):
            started = time.perf_counter()
            ray.get([call.remote(query) for call in calls])
            ray.get(report.remote(counts))
            if i >= warmup:
                latencies.append((time.perf_counter() - started) * 1e3)
        return {"p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
                "fanouts": fanouts}
    finally:
        for handle in [*shards, dual]:
            ray.kill(handle)
