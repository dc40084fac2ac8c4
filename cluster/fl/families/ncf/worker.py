"""What a client-worker actor does for an NCF model (GMF / MLP / NeuMF): train any subset of
its clients in one batched call, each with the private user vector it keeps on the device, and
rank each held-out client's candidates. The private vectors never leave this object.

A strategy's device half may run further passes over the same clients (``NCFLocalPass``): at
another dense part, or a personal step with the shared tables held fixed."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np
import torch

from cluster.arrays import sorted_unique
from cluster.fl.families.ncf.training import ClientPositives, NCFOptions, train_local
from cluster.fl.recipe import LocalRecipe
from cluster.fl.rank_metrics import rank_metrics
from cluster.fl.families.ncf.negatives import RoundKey, hashed_negatives
from cluster.fl.families.ncf.upload import compress_ncf_upload, widen_ncf_upload
from cluster.fl.types import ClientSettings, ClientUpdate, ClusterView
from cluster.fl.shard import ClientShard
from cluster.fl.device import DeviceHalf
from cluster.fl.worker_core import WorkerCore, held_positions
from cluster.fl.families.ncf.model import NCFSpec, retrieval_queries
from cluster.fl.families.ncf.net import initial_params, score_candidates

EVAL_CHUNK = 4096
# Train positives drawn and scored per block: a multiple of EVAL_CHUNK, so every scored chunk is
# the one a single pass over all positives scores (the block size never moves a result).
PAIR_BLOCK = 64 * EVAL_CHUNK
# The round index whose hashed negatives the train-split pair measure uses: one no run reaches.
TRAIN_PAIRS_ROUND = 2**31 - 1


class NCFLocalPass:
    """One round's local training of some NCF clients (``LocalPass``): every pass starts from the
    round's global model and the clients' user vectors at the round's start; the vectors they keep
    are those of the last pass that trained them."""

    def __init__(
        self,
        core: NCFWorkerCore,
        params: dict[str, np.ndarray],
        clients: np.ndarray,
        round_index: int,
        rows: np.ndarray,
    ):
        """``rows``: the clients' positions in the core's shard."""
        self.core, self.params = core, params
        indptr, positives = core.shard.examples_of(rows)
        self.data = ClientPositives(clients, indptr, positives, core._positive_keys)
        self.key = RoundKey(core.seed, round_index)
        self.start = {t: v[rows] for t, v in core.users.items()}
        self.users = self.start

    def _train(self, recipe: LocalRecipe, users: dict, options: NCFOptions) -> tuple[ClientUpdate, dict]:
        return train_local(self.core.spec, recipe, self.params, users, self.data, self.key, options)

    def first(self, fractions: Optional[np.ndarray], correction: Optional[dict]) -> ClientUpdate:
        """The clients' pass at the global model, each at its tier's width."""
        result, self.users = self._train(
            self.core.recipe, self.start, NCFOptions(fractions=fractions, correction=correction)
        )
        return result

    def pass_at(self, dense: dict[str, np.ndarray]) -> ClientUpdate:
        result, self.users = self._train(self.core.recipe, self.start, NCFOptions(client_dense=dense))
        return replace(result, user_deltas={t: self.users[t] - self.start[t] for t in self.start})

    def personal_step(self, personal: dict[str, np.ndarray], lam: float) -> dict[str, np.ndarray]:
        # The item rows and the user vector it is used with (the latter just trained) stay fixed.
        frozen = replace(self.core.recipe, lr_item=0.0, lr_user=0.0)
        stepped, _ = self._train(frozen, self.users, NCFOptions(client_dense=personal, prox_lambda=lam))
        return {name: personal[name] + delta for name, delta in stepped.dense_deltas.items()}


class NCFWorkerCore(WorkerCore):
    """An NCF family's worker: leave-one-out clients, each with a private user vector."""

    def __init__(
        self, shard: ClientShard, spec: NCFSpec, recipe: LocalRecipe, seed: int, device: Optional[DeviceHalf] = None
    ):
        """shard: examples are positive item ids; test: ``clients`` (T,) ⊂ clients with their
        ``candidates`` (T, K), the held-out item first; private0: the starting user vectors."""
        self._test_rows = held_positions(shard.clients, shard.test["clients"])
        self._positive_keys = sorted_unique(shard.owners() * spec.n_items + shard.train)  # negatives avoid these
        super().__init__(shard, spec, recipe, seed, device)

    def initial_params(self) -> dict[str, np.ndarray]:
        return initial_params(self.spec, self.seed)

    def train(
        self,
        round_index: int,
        clients: np.ndarray,
        params: dict[str, np.ndarray],
        settings: Optional[ClientSettings] = None,
    ) -> ClientUpdate:
        clients = np.asarray(clients, dtype=np.int64)
        rows = self._rows(clients)
        local = NCFLocalPass(self, params, clients, round_index, rows)
        width = None if settings is None else settings.width
        result = local.first(width, self.device.correction(self, rows, settings))
        result = self.device.after_local(self, local, rows, settings, result)
        for table, vectors in local.users.items():
            self.users[table][rows] = vectors
        if settings is not None:
            result = widen_ncf_upload(result, settings.upload, self.spec.n_items, self.seed, round_index)
        if settings is not None and settings.levels is not None:
            result = compress_ncf_upload(
                result, settings.kind, settings.levels, self.seed, round_index, settings.rescale_pruned
            )
        return result

    def clustering_vectors(self, params: Optional[dict] = None) -> np.ndarray:
        """The private user vectors: on the device, so the global ``params`` are not needed."""
        users = np.concatenate([self.users[t] for t in self.spec.user_tables], axis=1)
        if not np.isfinite(users).all():
            raise FloatingPointError(
                "user vectors diverged (NaN or inf), so they cannot be clustered; "
                "lower the learning rates (fl.client_lr, fl.item_lr_scale, fl.user_lr_scale)"
            )
        return users

    def evaluate(
        self, params: dict[str, np.ndarray], split: str = "test", clusters: Optional[ClusterView] = None, k: int = 10
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(test_clients, HR@k, NDCG@k) of this worker's held-out clients under ``params`` and
        each client's own private vector (and its personal or cluster dense part); for split
        'train', (client, pairs ordered correctly, pairs) per client (``train_pairs``)."""
        if split == "train":
            return self.train_pairs(params, clusters)
        if split != "test":
            raise ValueError(f"NCF models evaluate splits 'test' (leave-one-out) and 'train', not {split!r}")
        torch_params = {n: torch.from_numpy(v) for n, v in params.items()}
        hits, ndcgs = [], []
        with torch.no_grad():
            for lo in range(0, len(self._test_rows), EVAL_CHUNK):
                rows = self._test_rows[lo : lo + EVAL_CHUNK]
                users = {t: torch.from_numpy(v[rows]) for t, v in self.users.items()}
                candidates = torch.from_numpy(self.shard.test["candidates"][lo : lo + EVAL_CHUNK].astype(np.int64))
                own = self._served_dense(rows, clusters)
                own_t = None if own is None else {n: torch.from_numpy(np.ascontiguousarray(v)) for n, v in own.items()}
                scores = score_candidates(self.spec, torch_params, users, candidates, own_t).numpy()
                hit, ndcg = rank_metrics(scores, k)
                hits.append(hit)
                ndcgs.append(ndcg)
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
        return self.shard.test["clients"], cat(hits), cat(ndcgs)

    def train_pairs(
        self, params: dict[str, np.ndarray], clusters: Optional[ClusterView] = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CEAG's pairwise measure on the train data, as the clients report it in training: each
        positive against its r sampled negatives (r = ``negatives_per_positive``), a pair ordered
        correctly where the positive scores strictly higher, under the model serving the client.
        The negatives come from a stream no training round draws, fixed by the seed.

        Returns, per client with train positives, (client, pairs ordered correctly, pairs): counts
        per client, not a bit per pair, because the aggregator gathers every worker's answer and
        a million clients have ~100M pairs. The pairs are drawn and scored ``PAIR_BLOCK``
        positives at a time, so the worker's own memory does not grow with them either."""
        torch_params = {n: torch.from_numpy(v) for n, v in params.items()}
        correct = np.zeros(self.n_clients, np.int64)
        for lo in range(0, len(self.shard.train), PAIR_BLOCK):
            rows, hits = self._pair_hits(torch_params, clusters, lo, min(lo + PAIR_BLOCK, len(self.shard.train)))
            correct[rows] += hits
        n_pos = np.diff(self.shard.train_indptr)
        rows = np.flatnonzero(n_pos > 0)
        return self.shard.clients[rows], correct[rows], n_pos[rows] * self.recipe.negatives_per_positive

    def _pair_hits(
        self, torch_params: dict, clusters: Optional[ClusterView], lo: int, hi: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The train positives ``lo``..``hi`` (flat CSR positions), scored ``EVAL_CHUNK`` at a
        time: (the client rows they belong to, ascending, and for each how many of those
        positives' sampled negatives score strictly below their positive)."""
        per_positive = self.recipe.negatives_per_positive
        indptr = self.shard.train_indptr
        row = np.searchsorted(indptr, np.arange(lo, hi), side="right") - 1  # each positive's client row
        first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        rows, n_pos = row[first], np.diff(np.r_[first, len(row)])
        # A client cut by the block's start keeps its draw indices: its negatives are the ones
        # one pass over all its positives draws.
        first_draw = np.zeros(len(rows), np.int64)
        first_draw[0] = (lo - indptr[rows[0]]) * per_positive
        negatives = hashed_negatives(
            RoundKey(self.seed, TRAIN_PAIRS_ROUND),
            self.shard.clients[rows],
            n_pos * per_positive,
            self._positive_keys,
            self.spec.n_items,
            first_draw=first_draw,
        ).astype(np.int64)
        candidates = np.concatenate([self.shard.train[lo:hi][:, None], negatives.reshape(-1, per_positive)], axis=1)
        hits = []
        with torch.no_grad():
            for start in range(0, hi - lo, EVAL_CHUNK):
                at = row[start : start + EVAL_CHUNK]
                users = {t: torch.from_numpy(v[at]) for t, v in self.users.items()}
                own = self._served_dense(at, clusters)
                own_t = None if own is None else {n: torch.from_numpy(np.ascontiguousarray(v)) for n, v in own.items()}
                scores = score_candidates(
                    self.spec, torch_params, users, torch.from_numpy(candidates[start : start + EVAL_CHUNK]), own_t
                ).numpy()
                hits.append((scores[:, :1] > scores[:, 1:]).sum(axis=1))
        return rows, np.add.reduceat(np.concatenate(hits), first)

    def retrieval_queries(
        self, params: dict[str, np.ndarray], clusters: Optional[ClusterView] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(clients, query vectors) for the retriever: what each phone would send with a request."""
        own = self._served_dense(np.arange(self.n_clients), clusters)
        return self.shard.clients, retrieval_queries(self.spec, params, self.users, own)
