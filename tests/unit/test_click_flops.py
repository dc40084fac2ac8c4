"""The click models' multiply-add count (``families/click/flops.py``), checked by hand on small
models: every product of the specified model, and a step as three forward passes."""

import numpy as np

from cluster.fl.families.click.flops import forward_per_pair, forward_per_sample, multiply_adds
from cluster.fl.families.click.model import ClickSpec

CATS = (("gender", 2), ("age", 3))


def _spec(kind):
    return ClickSpec(kind, n_items=50, n_genres=3, cats=CATS, dim=4, bottom_hidden=(5,), attention_hidden=(6, 3),
                     top_hidden=(7,))


def test_dlrm_counts_genres_bottom_dots_top_and_pooling():
    spec = _spec("dlrm")  # 6 vectors: 15 dots
    assert forward_per_sample(spec) == 3 * 4 + (2 * 5 + 5 * 4) + 15 * 4 + ((4 + 15) * 7 + 7 * 1)
    assert forward_per_pair(spec) == 4


def test_din_counts_genres_top_and_per_pair_attention():
    spec = _spec("din")  # top input: 2 user codes, pooled, item, genre (4 each) and 2 dense
    assert forward_per_sample(spec) == 3 * 4 + ((5 * 4 + 2) * 7 + 7 * 1)
    assert forward_per_pair(spec) == 4 + 4 + (16 * 6 + 6 * 3 + 3 * 1)  # pooling, h*t, attention


def test_a_step_is_three_forward_passes_per_epoch_and_counts_add_over_clients():
    spec = _spec("din")
    one = multiply_adds(spec, 10, 20)
    assert one == 3 * (10 * forward_per_sample(spec) + 20 * forward_per_pair(spec))
    assert multiply_adds(spec, 10, 20, epochs=2) == 2 * one
    many = multiply_adds(spec, np.array([10, 3]), np.array([20, 0]))
    assert many.tolist() == [one, 3 * 3 * forward_per_sample(spec)]
