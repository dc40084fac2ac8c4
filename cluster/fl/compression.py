"""RF²'s tier-aware update compressors (Maeng et al. 2022, Table 1), as pure functions over
one client's flat update vector, each with the bytes it would upload.

- random pruning: each entry is zeroed with probability ``rate`` (random, not Top-K); the mask
  comes from a seed both sides know, so only the kept values travel;
- Quant: stochastic rounding to 2^n evenly spaced points between the vector's min and max
  (unbiased: E[q(x)] = x), n bits per entry plus the two endpoints;
- QuantS: one sign bit and n − 1 bits of magnitude on 2^(n−1) points between 0 and max|x|, so an
  exact zero stays exactly zero;
- masked (HeteroFL-style) averaging for channel-sliced models: each entry is averaged only over
  the clients whose sub-model contains it.

n = 32 means "no quantization" (the update is sent as float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOAT_BYTES = 4


@dataclass(frozen=True)
class Compressed:
    """values: (n,) float32 as the server reconstructs them; upload_bytes: what was sent."""

    values: np.ndarray
    upload_bytes: int


def prune_random(update: np.ndarray, rate: float, rng: np.random.Generator, rescale: bool = False) -> Compressed:
    """RF²'s random pruning: each entry is zeroed independently with probability ``rate``. A fixed
    count of round(rate·n) per tensor would zero a one-entry tensor (a bias) on every client at
    rate ≥ 0.5, so the tier never trains it. ``rescale`` multiplies the kept entries by
    1/(1−rate), which makes the pruned update unbiased, E[out] = update, for every tensor size (RF²
    prunes without it: default off)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"pruning rate must be in [0, 1), got {rate}")
    flat = np.asarray(update, dtype=np.float32).ravel()
    kept = rng.random(flat.size) >= rate
    out = np.where(kept, flat, np.float32(0.0))
    if rescale:
        out *= np.float32(1.0 / (1.0 - rate))
    return Compressed(out.reshape(np.shape(update)), int(kept.sum()) * FLOAT_BYTES + 8)  # + the mask's seed


def _stochastic_round(scaled: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """floor(x) + Bernoulli(frac(x)): unbiased rounding to integers."""
    low = np.floor(scaled)
    return low + (rng.random(scaled.shape) < (scaled - low))


def quantize(update: np.ndarray, bits: int, rng: np.random.Generator) -> Compressed:
    """Quant: 2^bits levels evenly spaced on [min, max], stochastic rounding."""
    flat = np.asarray(update, dtype=np.float32)
    if bits >= 32:
        return Compressed(flat.copy(), flat.size * FLOAT_BYTES)
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got {bits}")
    if flat.size == 0:
        return Compressed(flat.copy(), 2 * FLOAT_BYTES)
    lo, hi = float(flat.min()), float(flat.max())
    if hi == lo:
        return Compressed(flat.copy(), _packed_bytes(flat.size, bits) + 2 * FLOAT_BYTES)
    step = (hi - lo) / (2**bits - 1)
    levels = _stochastic_round((flat.astype(np.float64) - lo) / step, rng)
    values = (lo + np.clip(levels, 0, 2**bits - 1) * step).astype(np.float32)
    return Compressed(values, _packed_bytes(flat.size, bits) + 2 * FLOAT_BYTES)


def quantize_signed(update: np.ndarray, bits: int, rng: np.random.Generator) -> Compressed:
    """QuantS: sign bit + (bits−1)-bit magnitude on [0, max|x|]; zeros stay exactly zero."""
    flat = np.asarray(update, dtype=np.float32)
    if bits >= 32:
        return Compressed(flat.copy(), flat.size * FLOAT_BYTES)
    if bits < 2:
        raise ValueError(f"QuantS needs at least 2 bits (sign + magnitude), got {bits}")
    top = float(np.abs(flat).max()) if flat.size else 0.0
    if top == 0.0:
        return Compressed(flat.copy(), _packed_bytes(flat.size, bits) + FLOAT_BYTES)
    step = top / (2 ** (bits - 1) - 1)
    levels = _stochastic_round(np.abs(flat.astype(np.float64)) / step, rng)
    values = (np.sign(flat) * np.clip(levels, 0, 2 ** (bits - 1) - 1) * step).astype(np.float32)
    return Compressed(values, _packed_bytes(flat.size, bits) + FLOAT_BYTES)


def compress_values(
    values: np.ndarray, kind: str, level: float, rng: np.random.Generator, rescale: bool = False
) -> np.ndarray:
    """``values`` (any shape) as the server reconstructs them after ``kind`` ('prune', 'quant',
    'quants') at ``level`` (prune share or bits), over all entries as one tensor."""
    flat = np.asarray(values).ravel()
    if kind == "prune":
        out = prune_random(flat, level, rng, rescale=rescale)
    elif kind == "quant":
        out = quantize(flat, int(level), rng)
    elif kind == "quants":
        out = quantize_signed(flat, int(level), rng)
    else:
        raise ValueError(f"unknown compression {kind!r}")
    return out.values.reshape(np.shape(values))


def is_neutral(kind: str, level: float) -> bool:
    """Whether ``level`` leaves a ``kind`` upload exact (prune nothing, 32 bits)."""
    return (kind == "prune" and level == 0.0) or (kind in ("quant", "quants") and level >= 32)


def _packed_bytes(n_entries: int, bits: int) -> int:
    return -(-n_entries * bits // 8)


def masked_average(
    updates: np.ndarray, masks: np.ndarray, weights: np.ndarray, norm_weights: np.ndarray | None = None
) -> np.ndarray:
    """HeteroFL-style average of ``updates`` (C, ...) where ``masks`` (C, ...) marks the entries
    each client's sub-model holds: Σ_c w_c m_c Δ_c / Σ_c v_c m_c per entry, 0 where no client
    trained the entry (a dense average would shrink the wide channels toward zero). v =
    ``norm_weights``, default w; a reweighting whose w may be negative (CEAG's Lagrangian step)
    passes the positive sample weights here, so the per-entry scale stays that of FedAvg."""
    shape = (-1, *([1] * (updates.ndim - 1)))
    weights = np.asarray(weights, dtype=np.float64).reshape(shape)
    norm = weights if norm_weights is None else np.asarray(norm_weights, dtype=np.float64).reshape(shape)
    masks = np.asarray(masks, dtype=np.float64)
    numerator = (weights * masks * updates).sum(axis=0)
    denominator = (norm * masks).sum(axis=0)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0).astype(np.float32)


def channel_mask(shape: tuple[int, ...], fraction: float, sliced_axes: tuple[int, ...]) -> np.ndarray:
    """Bool mask of a weight of ``shape`` for a sub-model keeping the first ceil(fraction·size)
    channels along each axis in ``sliced_axes`` (the hidden dimensions that are narrowed)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"width fraction must be in (0, 1], got {fraction}")
    mask = np.ones(shape, dtype=bool)
    for axis in sliced_axes:
        keep = int(np.ceil(round(fraction * shape[axis], 5)))  # as click.channel_widths
        index = [slice(None)] * len(shape)
        index[axis] = slice(keep, None)
        mask[tuple(index)] = False
    return mask
