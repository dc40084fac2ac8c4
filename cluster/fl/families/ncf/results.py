"""An NCF run's own result tables, each with an explicit pyarrow schema and the run's config hash
and seed in every row: per-client HR/NDCG (clients.parquet), the trained item vectors the retriever
serves (item_embeddings.parquet) and, for an inner-product model, each user's query vector
(user_queries.parquet)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cluster.fl.families.base import RunTables
from cluster.world import World


def _vectors(vectors: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.astype(np.float32).reshape(-1), pa.float32()), vectors.shape[1]
    )


def with_identity(table: pa.Table, config_hash: str, seed: int) -> pa.Table:
    """``table`` with the run's config hash and seed in every row (joins across runs need them)."""
    n = table.num_rows
    table = table.append_column("config_hash", pa.array([config_hash] * n, pa.string()))
    return table.append_column("seed", pa.array([seed] * n, pa.int64()))


def clients_table(
    clients: np.ndarray, hit: np.ndarray, ndcg: np.ndarray, user_ids: np.ndarray, tiers: list[str]
) -> pa.Table:
    """One row per evaluated client: its dataset id, its tier's name, HR@10 and NDCG@10."""
    return pa.table(
        {
            "client": pa.array(clients, pa.int64()),
            "user_id": pa.array(user_ids[clients], pa.int64()),
            "tier": pa.array(tiers, pa.string()),
            "hr10": pa.array(hit, pa.float64()),
            "ndcg10": pa.array(ndcg, pa.float64()),
        }
    )


def item_embeddings_table(
    vectors: np.ndarray, item_ids: np.ndarray, groups: list[str], train_interactions: np.ndarray
) -> pa.Table:
    """The trained item vectors (tables concatenated, e.g. GMF then MLP for NeuMF) for retrieval;
    group = first listed genre (or synthetic group); train_interactions for popularity groups."""
    return pa.table(
        {
            "item": pa.array(np.arange(len(item_ids)), pa.int32()),
            "item_id": pa.array(item_ids, pa.int64()),
            "group": pa.array(groups, pa.string()),
            "vector": _vectors(vectors),
            "train_interactions": pa.array(train_interactions, pa.int64()),
        }
    )


def user_queries_table(clients: np.ndarray, vectors: np.ndarray, user_ids: np.ndarray, tiers: list[str]) -> pa.Table:
    """Each user's retrieval query (GMF: u ⊙ w, so ⟨query, item vector⟩ ranks as the model does).
    Written for offline evaluation; in service a phone sends its own query with each request."""
    return pa.table(
        {
            "user": pa.array(clients, pa.int32()),
            "user_id": pa.array(user_ids[clients], pa.int64()),
            "tier": pa.array(tiers, pa.string()),
            "vector": _vectors(vectors),
        }
    )


def ncf_result_tables(item_tables: tuple[str, ...], world: World, run: RunTables) -> dict[str, pa.Table]:
    """clients.parquet and item_embeddings.parquet, and user_queries.parquet when the run has
    query vectors (each worker's, put in client-id order)."""
    dataset, population = world.dataset, world.population
    names = np.asarray(population.tiers.names, dtype=object)

    def tiers_of(clients: np.ndarray) -> list[str]:
        return names[population.tier_of_user[clients]].tolist()

    clients, hit, ndcg = run.client_metrics
    items = dataset.item_features
    tables = {
        "clients.parquet": clients_table(clients, hit, ndcg, dataset.user_ids, tiers_of(clients)),
        "item_embeddings.parquet": item_embeddings_table(
            np.concatenate([run.params[t] for t in item_tables], axis=1),
            dataset.item_ids,
            np.asarray(items.group_names, dtype=object)[items.group].tolist(),
            world.leave_one_out.train.item_counts(),
        ),
    }
    if run.queries:
        users = np.concatenate([c for c, _ in run.queries])
        order = np.argsort(users, kind="stable")
        vectors = np.concatenate([v for _, v in run.queries])[order]
        tables["user_queries.parquet"] = user_queries_table(
            users[order], vectors, dataset.user_ids, tiers_of(users[order])
        )
    return {name: with_identity(table, run.config_hash, run.seed) for name, table in tables.items()}
