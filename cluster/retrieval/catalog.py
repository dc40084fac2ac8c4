"""What the retriever serves and what it is evaluated on: item vectors with their groups, user
query vectors, and the request stream (held-out item and already-seen items per request)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Catalog:
    """item_ids (M,) int64 external ids; item_vectors (M, d) float32; item_groups (M,) int64 into
    group_names; user_ids (U,) int64; user_vectors (U, d) float32 (inner product = relevance)."""

    item_ids: np.ndarray
    item_vectors: np.ndarray
    item_groups: np.ndarray
    group_names: list[str]
    user_ids: np.ndarray
    user_vectors: np.ndarray

    def __post_init__(self) -> None:
        m, d = self.item_vectors.shape
        if len(self.item_ids) != m or len(self.item_groups) != m:
            raise ValueError(
                f"catalog: {m} item vectors but {len(self.item_ids)} ids and {len(self.item_groups)} groups"
            )
        if self.user_vectors.ndim != 2 or self.user_vectors.shape[1] != d:
            raise ValueError(f"catalog: user vectors {self.user_vectors.shape} do not match item dim {d}")
        if m and (self.item_groups.min() < 0 or self.item_groups.max() >= len(self.group_names)):
            raise ValueError("catalog: an item group is outside group_names")

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    @property
    def dim(self) -> int:
        return self.item_vectors.shape[1]


@dataclass(frozen=True)
class RequestStream:
    """T requests in arrival order: users (T,) rows into Catalog.user_vectors; heldout (T,) the
    item row each user went on to choose; seen_indptr (T+1,), seen_items: the item rows a user
    already had (excluded from its list, as a production retriever would)."""

    users: np.ndarray
    heldout: np.ndarray
    seen_indptr: np.ndarray
    seen_items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def seen(self, lo: int, hi: int) -> list[np.ndarray]:
        return [self.seen_items[self.seen_indptr[t] : self.seen_indptr[t + 1]] for t in range(lo, hi)]


def popularity_groups(counts: np.ndarray, n_buckets: int) -> tuple[np.ndarray, list[str]]:
    """Equal-size buckets by interaction count, least popular first; ties by item row, so the
    split is deterministic."""
    order = np.lexsort((np.arange(len(counts)), counts))
    groups = np.empty(len(counts), dtype=np.int64)
    for bucket, rows in enumerate(np.array_split(order, n_buckets)):
        groups[rows] = bucket
    names = [f"popularity-{b + 1}of{n_buckets}" for b in range(n_buckets)]
    return groups, names


def encode_groups(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """String or integer labels → codes and sorted names."""
    names, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return codes.astype(np.int64), [str(n) for n in names]
