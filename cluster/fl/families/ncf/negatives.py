"""Training negatives drawn by hashing (seed, round, client, draw index, attempt).

A counter-based draw gives every client the same negatives whichever worker actor trains it
and whatever other clients share its batch, which keeps results identical across worker counts,
and it is vectorised over all clients of a batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser (Steele et al. 2014): a bijective 64-bit mix, wraps on overflow."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class RoundKey:
    """Which run (``seed``) and round (``round_index``) a hashed draw belongs to: the first two parts
    of its key, so two rounds, or two runs, never share their draws."""

    seed: int
    round_index: int


def _key(*parts: np.ndarray | int) -> np.ndarray:
    h = np.zeros((), dtype=np.uint64)
    for part in parts:
        h = splitmix64(np.asarray(part, dtype=np.uint64) ^ h)
    return h


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
    owners = np.repeat(np.asarray(clients, dtype=np.int64), counts)
    draw_index = np.arange(len(owners)) - np.repeat(np.cumsum(counts) - counts, counts)
    if first_draw is not None:
        draw_index += np.repeat(np.asarray(first_draw, dtype=np.int64), counts)
    base = _key(draw.seed, draw.round_index, owners, draw_index)
    items = np.empty(len(owners), dtype=np.int64)
    pending = np.arange(len(owners))
    for attempt in range(max_attempts):
        candidate = (_key(base[pending], attempt) % np.uint64(n_items)).astype(np.int64)
        keys = owners[pending] * n_items + candidate
        hit = np.zeros(len(keys), dtype=bool)
        if len(positive_keys):
            position = np.minimum(np.searchsorted(positive_keys, keys), len(positive_keys) - 1)
            hit = positive_keys[position] == keys
        items[pending[~hit]] = candidate[~hit]
        pending = pending[hit]
        if not len(pending):
            return items.astype(np.int32)
    raise RuntimeError(f"could not draw negatives for {len(pending)} samples in {max_attempts} attempts")
