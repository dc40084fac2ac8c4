"""What travels with the pool's calls to its client workers.

A round is one call per worker, ``train(call, *model)``: ``call`` (``TrainCall``) is small and
travels inside the call message, and a small global model follows it as byte chunks that do too
(``cluster/fl/param_chunks.py``), with no object-store round trip per worker. A large model goes
to the object store once and every worker reads that one copy, where a copy inside each call
would cost more. The other calls' arguments (``shared``) follow the same rule.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Optional

import numpy as np
import ray

from cluster.fl.param_chunks import ParamsLayout, join_params, packable, params_nbytes, split_params
from cluster.fl.worker_pool import TrainTask

# Ray carries an argument of up to 100 KiB inside the call message; a chunk leaves room for its framing.
CHUNK_BYTES = 90 * 1024
# Past this, copies of the model inside every worker's call cost more than one object-store copy
# (measured with three workers: equal near 300 KB, inline 2.5x dearer at 1 MB).
INLINE_BYTES = 256 * 1024


@dataclass(frozen=True)
class TrainCall:
    """One worker's share of round ``round_index`` (``task``), the incarnation the pool expects
    (``expect``) and where the model's arrays lie in its chunks (``layout``; None: the model
    follows whole)."""

    round_index: int
    task: TrainTask
    expect: Optional[str]
    layout: Optional[ParamsLayout]

    def params(self, model: tuple) -> dict[str, np.ndarray]:
        """The global model from the arguments that followed the call."""
        return model[0] if self.layout is None else join_params(self.layout, model)


def model_args(params: dict[str, np.ndarray]) -> tuple[Optional[ParamsLayout], list]:
    """The layout and the arguments that carry ``params`` to every worker of one round."""
    if packable(params) and params_nbytes(params) <= INLINE_BYTES:
        return split_params(params, CHUNK_BYTES)
    return None, [ray.put(params)]


def shared(value):
    """``value`` for the same call to every worker: itself when it travels inside each call
    message, else one object-store copy that every worker reads."""
    return value if _serialized_bytes(value) <= CHUNK_BYTES else ray.put(value)


def _serialized_bytes(value) -> int:
    """Its pickled size, without copying its arrays (they are counted, not written)."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception:  # what only Ray's cloudpickle can write: let Ray decide, once
        return CHUNK_BYTES + 1
    return len(head) + sum(b.raw().nbytes for b in buffers)
