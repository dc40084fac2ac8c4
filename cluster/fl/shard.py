"""The clients one worker holds, for every model family, their file in the run's storage, and
which worker holds each client: each tier gets its own workers, and a tier's clients are dealt
round-robin among them.

A shard is the clients' ids, each client's training examples as a CSR, its held-out examples,
the private tables the phones start with, and the family's own arrays. What an example is
belongs to the family: an NCF example is a positive item id, a click example is a row of the
shard's feature table (kept in ``data``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cluster.arrays import select_clients
from cluster.storage import Storage, StorageError

_PREFIXES = ("test.", "private0.", "data.")


@dataclass(frozen=True)
class ClientShard:
    """clients (C,) ascending global ids; client c's training examples are
    ``train[train_indptr[c]:train_indptr[c+1]]``; ``test``: the held-out examples by name;
    ``private0[table]`` (C, d): the private tables each phone starts with (NCF's user vectors;
    empty for a click model); ``data``: the family's other arrays."""

    clients: np.ndarray
    train_indptr: np.ndarray
    train: np.ndarray
    test: dict[str, np.ndarray] = field(default_factory=dict)
    private0: dict[str, np.ndarray] = field(default_factory=dict)
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def examples_of(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CSR (indptr (k + 1,), examples) of the clients at shard ``positions`` (k,)."""
        return select_clients(self.train_indptr, self.train, positions)

    def owners(self) -> np.ndarray:
        """The global client id of every training example."""
        return np.repeat(self.clients, np.diff(self.train_indptr))

    def save(self, storage: Storage, name: str) -> None:
        """One .npz per worker in the run's storage, so a worker restarted on any node reloads its clients."""
        named = {
            f"{prefix}{key}": value
            for prefix, group in zip(_PREFIXES, (self.test, self.private0, self.data))
            for key, value in group.items()
        }
        storage.write_npz(name, clients=self.clients, train_indptr=self.train_indptr, train=self.train, **named)

    @classmethod
    def load(cls, storage: Storage, name: str) -> "ClientShard":
        arrays = storage.read_npz(name)
        missing = sorted({"clients", "train_indptr", "train"} - set(arrays))
        if missing:
            raise StorageError(f"{storage.describe(name)}: not a client shard (lacks {missing})")
        groups = [
            {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
            for prefix in _PREFIXES
        ]
        return cls(arrays["clients"], arrays["train_indptr"], arrays["train"], *groups)


def assign_workers(tier_of_user: np.ndarray, n_tiers: int, workers_per_tier: int) -> np.ndarray:
    """(n_users,) worker index; worker ``t * workers_per_tier + i`` is ``clients-<tier t>-<i>``."""
    worker = np.empty(len(tier_of_user), dtype=np.int64)
    for tier in range(n_tiers):
        members = np.flatnonzero(tier_of_user == tier)
        worker[members] = tier * workers_per_tier + np.arange(len(members)) % workers_per_tier
    return worker


def save_shards(shards: Iterable[ClientShard], names: Sequence[str], folder: Storage, progress: bool = False) -> None:
    """Each worker's shard as ``folder/<name>.npz``, in worker order. ``shards`` may be a
    generator: each is saved and let go before the next is built, so the driver never holds them all."""
    from tqdm import tqdm

    for name, shard in zip(names, tqdm(shards, total=len(names), desc="shards", disable=not progress)):
        shard.save(folder, f"{name}.npz")
