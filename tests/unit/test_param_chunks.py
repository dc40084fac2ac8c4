"""The global model cut into chunks small enough to travel inside an actor call, and joined back
bit for bit: every dtype and shape, aligned views, read-only as object-store arrays are."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.fl.param_chunks import join_params, packable, params_nbytes, split_params


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "item_gmf": rng.normal(size=(1682, 16)).astype(np.float32),
        "out.weight": rng.normal(size=16).astype(np.float32),
        "out.bias": np.array([0.25], np.float32),
        "scale": np.array(3.5),
        "counts": np.arange(7, dtype=np.int64)[::2],  # not contiguous
        "empty": np.zeros((0, 4), np.float32),
    }


@pytest.mark.parametrize("chunk_bytes", [1000, 90 * 1024, 10**7])
def test_joined_chunks_equal_the_model_bit_for_bit(chunk_bytes):
    model = _model()
    layout, chunks = split_params(model, chunk_bytes)
    assert all(c.nbytes <= chunk_bytes for c in chunks)
    joined = join_params(layout, [c.copy() for c in chunks])
    assert list(joined) == list(model)
    for name, value in model.items():
        assert joined[name].dtype == value.dtype and joined[name].shape == value.shape
        assert joined[name].tobytes() == value.tobytes()
        assert not joined[name].flags.writeable
        assert joined[name].ctypes.data % joined[name].dtype.alignment == 0


def test_a_model_no_larger_than_one_chunk_is_one_chunk():
    model = {"w": np.ones(10, np.float32)}
    layout, chunks = split_params(model, 1024)
    assert len(chunks) == 1 and params_nbytes(model) == 40
    assert join_params(layout, chunks)["w"].tolist() == [1.0] * 10


def test_object_arrays_are_not_packable():
    assert packable(_model())
    assert not packable({"names": np.array(["a", None], dtype=object)})
