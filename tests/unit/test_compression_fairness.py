import numpy as np
import pytest

from cluster.fairness.measures import mdac, relative_change
from cluster.fl.compression import channel_mask, masked_average, prune_random, quantize, quantize_signed


def test_pruning_keeps_each_entry_with_probability_one_minus_rate_and_bytes_count_the_kept():
    update = np.arange(1, 20_001, dtype=np.float32)
    for rate in (0.75, 0.875, 0.9375, 0.0):
        out = prune_random(update, rate, np.random.default_rng(0))
        kept = out.values != 0
        assert np.array_equal(out.values[kept], update[kept])
        # Binomial(n, 1 − rate): within 5 standard deviations of its mean
        assert abs(kept.sum() - (1 - rate) * update.size) <= 5 * np.sqrt(update.size * rate * (1 - rate))
        assert out.upload_bytes == int(kept.sum()) * 4 + 8
    with pytest.raises(ValueError):
        prune_random(update, 1.0, np.random.default_rng(0))


@pytest.mark.parametrize("size", [1, 3, 8, 24])
def test_pruning_trains_small_tensors_and_rescaling_is_unbiased_for_every_size(size):
    """A one-entry bias must be kept on some clients (it was zeroed on every one when a fixed
    count round(rate·n) was pruned), and the rescaled mean must be the update itself."""
    rate, draws = 0.9375, 20_000
    update = np.linspace(0.5, 1.5, size).astype(np.float32)
    rng = np.random.default_rng(size)
    plain = np.array([prune_random(update, rate, rng).values for _ in range(draws)])
    kept_share = (plain != 0).mean(axis=0)
    np.testing.assert_allclose(kept_share, 1 - rate, atol=5 * np.sqrt(rate * (1 - rate) / draws))
    rescaled = np.array([prune_random(update, rate, rng, rescale=True).values for _ in range(draws)])
    standard_error = update * np.sqrt(rate / (1 - rate) / draws)  # of a mean of x·Bernoulli(1−r)/(1−r)
    assert (np.abs(rescaled.mean(axis=0) - update) <= 5 * standard_error).all()


def test_rescaled_pruning_is_unbiased():
    update = np.linspace(-1, 1, 64).astype(np.float32)
    rng = np.random.default_rng(1)
    mean = np.mean([prune_random(update, 0.75, rng, rescale=True).values for _ in range(4000)], axis=0)
    np.testing.assert_allclose(mean, update, atol=0.12)  # ~4.4 standard errors of a 4000-draw mean


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quant_levels_and_unbiasedness(bits):
    update = np.random.default_rng(2).normal(size=300).astype(np.float32)
    out = quantize(update, bits, np.random.default_rng(3))
    step = (update.max() - update.min()) / (2**bits - 1)
    levels = (out.values - update.min()) / step
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    assert len(np.unique(out.values)) <= 2**bits
    assert np.abs(out.values - update).max() <= step + 1e-5
    rng = np.random.default_rng(4)
    mean = np.mean([quantize(update, bits, rng).values for _ in range(3000)], axis=0)
    np.testing.assert_allclose(mean, update, atol=step * 0.12 + 1e-4)
    assert out.upload_bytes == -(-300 * bits // 8) + 8


def test_quants_keeps_zeros_exact_and_is_unbiased():
    update = np.array([0.0, 0.3, -0.7, 0.0, 1.0, -0.05], dtype=np.float32)
    rng = np.random.default_rng(5)
    outs = np.array([quantize_signed(update, 2, rng).values for _ in range(4000)])
    assert (outs[:, [0, 3]] == 0).all(), "QuantS keeps zeros exactly zero"
    assert set(np.unique(np.abs(outs)).tolist()) <= {0.0, 1.0}, "2 bits: magnitude 0 or max|x|"
    np.testing.assert_allclose(outs.mean(axis=0), update, atol=0.04)
    assert (np.sign(outs[outs != 0]) == np.sign(np.broadcast_to(update, outs.shape)[outs != 0])).all()
    # Plain Quant's 4 levels on [-0.7, 1.0] do not include 0, so it always moves the zeros.
    plain = quantize(update, 2, np.random.default_rng(6)).values
    assert (plain[[0, 3]] != 0).all()


def test_32_bits_is_lossless():
    update = np.random.default_rng(7).normal(size=10).astype(np.float32)
    assert np.array_equal(quantize(update, 32, np.random.default_rng(0)).values, update)
    assert np.array_equal(quantize_signed(update, 32, np.random.default_rng(0)).values, update)


def test_channel_sliced_average_by_hand():
    mask_quarter = channel_mask((4, 4), 0.25, sliced_axes=(1,))
    assert mask_quarter.sum(axis=0).tolist() == [4, 0, 0, 0]
    full = channel_mask((4, 4), 1.0, sliced_axes=(1,))
    updates = np.stack([np.full((4, 4), 8.0), np.full((4, 4), 2.0)])
    avg = masked_average(updates, np.stack([mask_quarter, full]), weights=np.array([1.0, 3.0]))
    # channel 0 trained by both: (1*8 + 3*2) / 4; channels 1-3 only by the full-width client: 2
    assert avg[:, 0].tolist() == [3.5] * 4 and (avg[:, 1:] == 2.0).all()
    nobody = masked_average(updates, np.zeros((2, 4, 4), bool), np.ones(2))
    assert (nobody == 0).all()
    assert channel_mask((3, 10), 0.125, (0, 1)).sum() == 1 * 2


def test_relative_change_and_mdac():
    reference = {"low": 0.80, "mid": 0.70, "high": 0.60}
    optimized = {"low": 0.60, "mid": 0.70, "high": 0.63}
    change = relative_change(optimized, reference)
    assert change == pytest.approx({"low": -0.25, "mid": 0.0, "high": 0.05})
    assert mdac(change) == pytest.approx(0.30)
    assert mdac({"only": 0.1}) == 0.0
    with pytest.raises(KeyError):
        relative_change({"low": 0.5}, reference)
