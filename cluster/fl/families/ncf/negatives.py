"""Training negatives drawn by hashing (seed, round, client, draw index, attempt).

A counter-based draw gives every client the same negatives whichever worker actor trains it
and whatever other clients share its batch, which keeps results identical across worker counts,
and it is vectorised over all clients of a batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_GOLDEN_INT, _MIX1_INT, _MIX2_INT, _MASK = int(_GOLDEN), int(_MIX1), int(_MIX2), (1 << 64) - 1
# Attempts tried at once by the draws that hit a positive.
RETRY_BLOCK = 4

# (draw rows, candidate items) -> which candidates are the row's client's positives; a draw row
# indexes the ``clients`` the negatives are drawn for.
PositiveTest = Callable[[np.ndarray, np.ndarray], np.ndarray]


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser (Steele et al. 2014): a bijective 64-bit mix, wraps on overflow."""
    z = np.array(x, dtype=np.uint64)
    return _mix(z, np.empty_like(z)) if z.ndim else splitmix64(z.reshape(1))[0]


def _mix(z: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """``splitmix64`` of ``z`` in place, ``scratch`` its shape and dtype: this runs over every draw
    several times a round, and fresh arrays per step would cost more than the arithmetic."""
    # Array arithmetic on unsigned integers wraps silently (only numpy scalars warn).
    z += _GOLDEN
    for shift, multiplier in ((_S30, _MIX1), (_S27, _MIX2)):
        np.right_shift(z, shift, out=scratch)
        z ^= scratch
        z *= multiplier
    np.right_shift(z, _S31, out=scratch)
    z ^= scratch
    return z


@dataclass(frozen=True)
class RoundKey:
    """Which run (``seed``) and round (``round_index``) a hashed draw belongs to: the first two parts
    of its key, so two rounds, or two runs, never share their draws."""

    seed: int
    round_index: int


def sorted_key_test(clients: np.ndarray, positive_keys: np.ndarray, n_items: int) -> PositiveTest:
    """The positive test of ``clients`` against the sorted array ``positive_keys`` of
    ``client * n_items + item``."""
    clients = np.asarray(clients, dtype=np.int64)

    def is_positive(rows: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        if not len(positive_keys):
            return np.zeros(len(rows), dtype=bool)
        keys = clients[rows] * n_items + candidate
        position = np.minimum(np.searchsorted(positive_keys, keys), len(positive_keys) - 1)
        return positive_keys[position] == keys

    return is_positive


def hashed_negatives(
    draw: RoundKey,
    clients: np.ndarray,
    counts: np.ndarray,
    positive_keys: np.ndarray,
    n_items: int,
    max_attempts: int = 64,
    first_draw: np.ndarray | None = None,
) -> np.ndarray:
    """``counts[c]`` items per client ``clients[c]`` (concatenated in client order), none of them
    a positive: ``client * n_items + item`` never in the sorted array ``positive_keys``; ``draw``
    names the run and round they are drawn for.
    ``first_draw[c]``: the draw index of client c's first item (default 0), so a client's draws
    can be made a part at a time and still be the ones one call for all of them makes."""
    test = sorted_key_test(clients, positive_keys, n_items)
    return drawn_negatives(draw, clients, counts, test, n_items, max_attempts, first_draw)


def drawn_negatives(
    draw: RoundKey,
    clients: np.ndarray,
    counts: np.ndarray,
    is_positive: PositiveTest,
    n_items: int,
    max_attempts: int = 64,
    first_draw: np.ndarray | None = None,
) -> np.ndarray:
    """``hashed_negatives`` with the positives given as a test (``PositiveTest``) instead of
    sorted keys: the same items whichever test answers, as long as it answers the same."""
    counts = np.asarray(counts, dtype=np.int64)
    rows = np.repeat(np.arange(len(counts)), counts)
    draw_index = np.arange(len(rows), dtype=np.int64)
    draw_index -= np.repeat(np.cumsum(counts) - counts, counts)
    if first_draw is not None:
        draw_index += np.repeat(np.asarray(first_draw, dtype=np.int64), counts)
    # The key is (seed, round, client, draw index), then the attempt: its prefix up to the client
    # is hashed once per client, and the draw's key, where every attempt starts, once per draw.
    per_client = splitmix64(np.asarray(clients, dtype=np.int64).view(np.uint64) ^ np.uint64(_key_prefix(draw)))
    scratch = np.empty(len(rows), dtype=np.uint64)
    stem = np.take(per_client, rows)
    stem ^= draw_index.view(np.uint64)
    _mix(_mix(stem, scratch), scratch)
    candidate = _below(_mix(stem.copy(), scratch), n_items, scratch).view(np.int64)  # the same value, signed
    items = candidate.astype(np.int32)
    pending = np.flatnonzero(is_positive(rows, candidate))
    # The few draws that hit a positive try the next attempts a block at a time, all at once:
    # each keeps its first attempt that misses, as trying them one by one would.
    attempt = 1
    while len(pending) and attempt < max_attempts:
        block = np.arange(attempt, min(attempt + RETRY_BLOCK, max_attempts), dtype=np.uint64)
        hashed = splitmix64(stem[pending][:, None] ^ block).reshape(-1)  # draw after draw, attempts in order
        retry = _below(hashed, n_items, np.empty_like(hashed)).view(np.int64)
        misses = np.flatnonzero(~is_positive(np.repeat(rows[pending], len(block)), retry))
        missed = misses // len(block)  # which pending draw each miss is of
        first_miss = np.empty(len(misses), dtype=bool)  # misses come sorted, a draw's first first
        first_miss[:1] = True
        np.not_equal(missed[1:], missed[:-1], out=first_miss[1:])
        items[pending[missed[first_miss]]] = retry[misses[first_miss]]
        found = np.zeros(len(pending), dtype=bool)
        found[missed[first_miss]] = True
        pending = pending[~found]
        attempt += len(block)
    if len(pending):
        raise RuntimeError(f"could not draw negatives for {len(pending)} samples in {max_attempts} attempts")
    return items


def _below(z: np.ndarray, n: int, scratch: np.ndarray) -> np.ndarray:
    """``z % n`` in place, as z − (z // n)·n: numpy divides unsigned integers by a scalar
    several times faster than it takes their remainder."""
    np.floor_divide(z, np.uint64(n), out=scratch)
    scratch *= np.uint64(n)
    z -= scratch
    return z


def _key_prefix(draw: RoundKey) -> int:
    """The hash of the key's first parts, h = splitmix64(round ^ splitmix64(seed)), in Python
    integers: two values a call, where numpy scalars would cost more than the arrays."""
    h = 0
    for part in (draw.seed, draw.round_index):
        z = ((part ^ h) + _GOLDEN_INT) & _MASK
        z = ((z ^ (z >> 30)) * _MIX1_INT) & _MASK
        z = ((z ^ (z >> 27)) * _MIX2_INT) & _MASK
        h = z ^ (z >> 31)
    return h
