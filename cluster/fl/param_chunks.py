"""The global model as a few byte chunks and back, bit for bit.

An actor call carries an argument inside the call message only while it is small (Ray: 100 KiB);
anything larger goes through the object store, whose create, seal, pin and fetch per call cost
several times what copying a small model does. Cut into chunks below that size, a small model
travels inside the call itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Each array starts on a 64-byte boundary of the joined buffer, so its view is aligned for any dtype.
_ALIGN = 64


@dataclass(frozen=True)
class ParamsLayout:
    """Where each array lies in the joined buffer: (name, dtype, shape, byte offset), in dict order."""

    entries: tuple[tuple[str, str, tuple[int, ...], int], ...]
    nbytes: int


def packable(params: dict[str, np.ndarray]) -> bool:
    """Arrays of plain values only: an object array has no bytes of its own to copy."""
    return all(isinstance(v, np.ndarray) and not v.dtype.hasobject for v in params.values())


def params_nbytes(params: dict[str, np.ndarray]) -> int:
    return sum(v.nbytes for v in params.values())


def split_params(params: dict[str, np.ndarray], chunk_bytes: int) -> tuple[ParamsLayout, list[np.ndarray]]:
    """``params`` as one buffer cut into uint8 chunks of at most ``chunk_bytes``."""
    entries, offset = [], 0
    for name, value in params.items():
        entries.append((name, value.dtype.str, tuple(value.shape), offset))
        offset += -(-value.nbytes // _ALIGN) * _ALIGN
    buffer = np.zeros(offset, np.uint8)
    for (_, _, _, start), value in zip(entries, params.values()):
        buffer[start : start + value.nbytes] = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
    chunks = [buffer[i : i + chunk_bytes] for i in range(0, max(offset, 1), chunk_bytes)]
    return ParamsLayout(tuple(entries), offset), chunks


def join_params(layout: ParamsLayout, chunks: tuple[np.ndarray, ...] | list[np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays ``split_params`` cut, read-only as they would arrive from the object store."""
    # One fresh buffer (also for one chunk): the arrays' offsets are aligned only in a buffer numpy allocated.
    buffer = np.concatenate(chunks)
    params = {}
    for name, dtype, shape, offset in layout.entries:
        count = int(np.prod(shape, dtype=np.int64))
        value = np.frombuffer(buffer, np.dtype(dtype), count, offset).reshape(shape)
        value.flags.writeable = False
        params[name] = value
    return params
