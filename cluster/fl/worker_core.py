"""What one client-worker actor does, as a plain class: it holds many simulated clients — their
training data, held-out candidates and private user vectors — and trains or evaluates any
subset of them in one batched call. The private vectors never leave this object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from cluster.atomic import write_npz
from cluster.fl.local_training import LocalRecipe, LocalResult, train_local
from cluster.fl.metrics import rank_metrics
from cluster.models.ncf import NCFSpec, retrieval_queries, score_candidates

EVAL_CHUNK = 4096


@dataclass(frozen=True)
class ClientShard:
    """The clients of one worker. clients: (C,) ascending global ids; their positives are
    ``items[indptr[c]:indptr[c+1]]``; test_clients (T,) ⊂ clients with test_candidates (T, K)
    (test item first); users0[table]: (C, d) starting private vectors."""

    clients: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    test_clients: np.ndarray
    test_candidates: np.ndarray
    users0: dict[str, np.ndarray]

    def save(self, path: Path) -> None:
        """One .npz per worker, so a restarted worker reloads its clients from disk."""
        arrays = {f"users0.{t}": v for t, v in self.users0.items()}
        write_npz(path, clients=self.clients, indptr=self.indptr, items=self.items,
                      test_clients=self.test_clients, test_candidates=self.test_candidates, **arrays)

    @classmethod
    def load(cls, path: Path) -> "ClientShard":
        with np.load(path) as f:
            users0 = {k.split(".", 1)[1]: f[k] for k in f.files if k.startswith("users0.")}
            return cls(f["clients"], f["indptr"], f["items"], f["test_clients"], f["test_candidates"], users0)


def held_positions(held: np.ndarray, clients: np.ndarray) -> np.ndarray:
    """Positions of ``clients`` in a worker's ascending ``held`` ids; KeyError naming any it lacks."""
    positions = np.minimum(np.searchsorted(held, clients), len(held) - 1)
    if len(clients) and not np.array_equal(held[positions], clients):
        missing = np.setdiff1d(clients, held)
        raise KeyError(f"clients {missing[:5].tolist()} are not held by this worker")
    return positions


class ClientWorkerCore:
    def __init__(self, shard: ClientShard, spec: NCFSpec, recipe: LocalRecipe, seed: int):
        self.shard = shard
        self.spec = spec
        self.recipe = recipe
        self.seed = seed
        self.users = {t: v.copy() for t, v in shard.users0.items()}
        self._test_rows = self._rows(shard.test_clients)
        owners = np.repeat(shard.clients, np.diff(shard.indptr))
        self._positive_keys = np.unique(owners * spec.n_items + shard.items)  # negatives avoid these

    def _rows(self, clients: np.ndarray) -> np.ndarray:
        return held_positions(self.shard.clients, clients)

    @property
    def n_clients(self) -> int:
        return len(self.shard.clients)

    def train(self, round_index: int, clients: np.ndarray, params: dict[str, np.ndarray]) -> LocalResult:
        clients = np.asarray(clients, dtype=np.int64)
        rows = self._rows(clients)
        starts, ends = self.shard.indptr[rows], self.shard.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.r_[0, np.cumsum(lengths)]
        pos = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        users = {t: v[rows] for t, v in self.users.items()}
        result, new_users = train_local(
            self.spec, self.recipe, params, users, clients, indptr, self.shard.items[pos], self.seed, round_index,
            positive_keys=self._positive_keys,
        )
        for table, vectors in new_users.items():
            self.users[table][rows] = vectors
        return result

    def evaluate(self, params: dict[str, np.ndarray], k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(test_clients, HR@k, NDCG@k) of this worker's held-out clients under ``params`` and
        each client's own private vector."""
        torch_params = {n: torch.from_numpy(v) for n, v in params.items()}
        hits, ndcgs = [], []
        with torch.no_grad():
            for lo in range(0, len(self._test_rows), EVAL_CHUNK):
                rows = self._test_rows[lo : lo + EVAL_CHUNK]
                users = {t: torch.from_numpy(v[rows]) for t, v in self.users.items()}
                candidates = torch.from_numpy(self.shard.test_candidates[lo : lo + EVAL_CHUNK].astype(np.int64))
                scores = score_candidates(self.spec, torch_params, users, candidates).numpy()
                hit, ndcg = rank_metrics(scores, k)
                hits.append(hit)
                ndcgs.append(ndcg)
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
        return self.shard.test_clients, cat(hits), cat(ndcgs)

    def retrieval_queries(self, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(clients, query vectors) for the retriever: what each phone would send with a request."""
        return self.shard.clients, retrieval_queries(self.spec, params, self.users)

    def save(self, path: Path, round_index: int) -> None:
        """The clients' private vectors, as a phone would keep them on its own storage."""
        write_npz(path, clients=self.shard.clients, round_index=np.int64(round_index), **self.users)

    def restore(self, paths: list[Path]) -> Optional[int]:
        """Load this worker's clients' vectors from any saved files (whatever worker wrote them);
        returns the round they were saved at, or None when there is nothing to load."""
        saved_round = None
        for path in paths:
            with np.load(path) as saved:
                clients = saved["clients"]
                mine = np.isin(clients, self.shard.clients)
                rows = self._rows(clients[mine])
                for table in self.users:
                    self.users[table][rows] = saved[table][mine]
                saved_round = int(saved["round_index"])
        return saved_round
