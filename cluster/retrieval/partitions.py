"""Item partitions for retrieval shards, stored as .npz files in the storage, which a shard
restarted on any node reloads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.storage import Storage


@dataclass(frozen=True)
class Partition:
    """item_ids (M,), vectors (M, d) float32, groups (M,) int64."""

    item_ids: np.ndarray
    vectors: np.ndarray
    groups: np.ndarray

    def save(self, storage: Storage, name: str) -> None:
        storage.write_npz(name, item_ids=self.item_ids, vectors=self.vectors, groups=self.groups)

    @classmethod
    def load(cls, storage: Storage, name: str) -> "Partition":
        f = storage.read_npz(name)
        return cls(f["item_ids"], f["vectors"].astype(np.float32), f["groups"].astype(np.int64))


def partition_items(
    item_ids: np.ndarray, vectors: np.ndarray, groups: np.ndarray, n_shards: int, rng: np.random.Generator
) -> list[Partition]:
    """A random, near-equal split, so every shard holds items of every group."""
    if n_shards < 1 or n_shards > len(item_ids):
        raise ValueError(f"n_shards must be in [1, {len(item_ids)}], got {n_shards}")
    parts = np.array_split(rng.permutation(len(item_ids)), n_shards)
    return [Partition(item_ids[p], vectors[p].astype(np.float32), groups[p].astype(np.int64)) for p in parts]
