"""The data vocabulary shared by loaders, splits, tier mapping and the FL engine."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Interactions:
    """Rating events over dense ids ``0..n_users-1`` and ``0..n_items-1``.

    users, items: (n,) int32; ratings: (n,) float32; timestamps: (n,) int64 (seconds).
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    n_users: int
    n_items: int

    def __post_init__(self) -> None:
        n = len(self.users)
        for name in ("items", "ratings", "timestamps"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions.{name} has {len(getattr(self, name))} rows, users has {n}")
        if n and (self.users.max() >= self.n_users or self.items.max() >= self.n_items):
            raise ValueError("Interactions ids exceed n_users / n_items")

    def __len__(self) -> int:
        return len(self.users)

    def take(self, index: np.ndarray) -> "Interactions":
        """Rows selected by an integer index or a boolean mask; the id spaces are kept."""
        return Interactions(
            users=self.users[index],
            items=self.items[index],
            ratings=self.ratings[index],
            timestamps=self.timestamps[index],
            n_users=self.n_users,
            n_items=self.n_items,
        )

    def user_order(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr (n_users+1,), order (n,)): rows of user u are ``order[indptr[u]:indptr[u+1]]``,
        sorted by timestamp (ties keep file order) so the last one is the user's latest."""
        order = np.lexsort((self.timestamps, self.users))  # lexsort is stable: ties keep file order
        counts = np.bincount(self.users, minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, order

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items)


@dataclass(frozen=True)
class CategoricalFeatures:
    """Categorical columns as integer codes into a vocabulary: codes[name] is (n_rows,) int32."""

    codes: dict[str, np.ndarray] = field(default_factory=dict)
    vocab: dict[str, list[str]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return list(self.codes)


@dataclass(frozen=True)
class ItemFeatures:
    """genres: (n_items, n_genres) bool multi-hot; group: (n_items,) int32 into group_names;
    titles: (n_items,) object (str)."""

    genres: np.ndarray
    genre_names: list[str]
    group: np.ndarray
    group_names: list[str]
    titles: np.ndarray


@dataclass(frozen=True)
class Dataset:
    """A loaded data set: interactions on dense ids plus the maps back to the source ids.

    user_ids, item_ids: (n_users,), (n_items,) int64, the original id of each dense id.
    """

    name: str
    interactions: Interactions
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_features: CategoricalFeatures
    item_features: ItemFeatures

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.interactions.n_items

    def summary(self) -> dict:
        counts = np.bincount(self.interactions.users, minlength=self.n_users)
        return {
            "dataset": self.name,
            "users": int(self.n_users),
            "items": int(self.n_items),
            "interactions": int(len(self.interactions)),
            "density": float(len(self.interactions) / max(1, self.n_users * self.n_items)),
            "interactions_per_user_median": float(np.median(counts)) if len(counts) else 0.0,
            "interactions_per_user_max": int(counts.max()) if len(counts) else 0,
            "user_features": self.user_features.names(),
            "item_groups": len(self.item_features.group_names),
        }
