"""Where the retriever's vectors come from: fl_sim's Parquet export (read back, with clear errors
for bad files), GMF query vectors, held-out request streams, and the synthetic generator."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cluster.data.errors import DataFormatError
from cluster.data.splits import leave_one_out
from cluster.data.types import Interactions
from cluster.fl.families.ncf.model import NCFSpec, retrieval_queries
from cluster.fl.families.ncf.net import init_global, score_candidates
from cluster.retrieval.run_catalog import heldout_requests, load_run_catalog
from cluster.retrieval.synthetic_embeddings import synthetic_catalog
from configs.schema import RetrievalConfig, SyntheticEmbeddingsConfig
from cluster.fl.families.ncf.results import item_embeddings_table, user_queries_table, with_identity


def test_gmf_query_vectors_rank_items_exactly_as_the_model_scores_them():
    spec = NCFSpec("gmf", 8, (), n_items=30)
    params = {k: v.numpy() for k, v in init_global(spec, torch.Generator().manual_seed(0)).items()}
    params["out.weight"] = np.random.default_rng(2).normal(size=8).astype(np.float32)  # not all ones
    params["out.bias"] = np.array([0.3], np.float32)
    users = {"user_gmf": np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)}
    queries = retrieval_queries(spec, params, users)
    candidates = torch.arange(30).repeat(4, 1)
    logits = score_candidates(spec, {k: torch.from_numpy(v) for k, v in params.items()},
                              {k: torch.from_numpy(v) for k, v in users.items()}, candidates).numpy()
    assert np.allclose(queries @ params["item_gmf"].T + params["out.bias"], logits, atol=1e-5)
    with pytest.raises(ValueError, match="inner-product model"):
        retrieval_queries(NCFSpec("neumf", 8, (16, 8), n_items=30), params, users)


def _export(folder, n_items=6, dim=4, n_users=3):
    rng = np.random.default_rng(0)
    params = {"item_gmf": rng.normal(size=(n_items, dim)).astype(np.float32)}
    groups = ["Action", "Comedy", "Comedy", "Drama", "Action", "Comedy"]
    items = with_identity(item_embeddings_table(params["item_gmf"], np.arange(n_items) + 100, groups,
                                                np.array([5, 0, 9, 3, 3, 7])), "h", 0)
    users = with_identity(user_queries_table(np.arange(n_users), rng.normal(size=(n_users, dim)), np.arange(n_users) + 10,
                                             ["low"] * n_users), "h", 0)
    pq.write_table(items, folder / "item_embeddings.parquet")
    pq.write_table(users, folder / "user_queries.parquet")
    return params


def test_an_fl_sim_export_reads_back_with_each_grouping(tmp_path):
    params = _export(tmp_path)
    genre = load_run_catalog(tmp_path, RetrievalConfig(group_by="genre"))
    assert genre.group_names == ["Action", "Comedy", "Drama"] and genre.item_groups.tolist() == [0, 1, 1, 2, 0, 1]
    assert np.array_equal(genre.item_vectors, params["item_gmf"]) and genre.item_ids.tolist() == list(range(100, 106))
    assert genre.user_ids.tolist() == [10, 11, 12]
    popularity = load_run_catalog(tmp_path, RetrievalConfig(group_by="popularity", popularity_buckets=2))
    assert popularity.item_groups.tolist() == [1, 0, 1, 0, 0, 1]  # 0, 3, 3 are the least interacted-with half
    column = load_run_catalog(tmp_path, RetrievalConfig(group_by="column", group_column="item_id"))
    assert column.n_groups == 6


@pytest.mark.parametrize("damage,needle", [
    (lambda d: (d / "user_queries.parquet").unlink(), "user_queries.parquet: missing"),
    (lambda d: (d / "item_embeddings.parquet").write_text("not parquet"), "not a readable Parquet file"),
    (lambda d: pq.write_table(pa.table({"item_id": [1]}), d / "item_embeddings.parquet"), "missing column(s) ['vector']"),
])
def test_bad_exports_name_the_file_and_the_problem(tmp_path, damage, needle):
    _export(tmp_path)
    damage(tmp_path)
    with pytest.raises(DataFormatError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_run_catalog(tmp_path, RetrievalConfig())


def test_unknown_group_column_is_named(tmp_path):
    _export(tmp_path)
    with pytest.raises(DataFormatError, match="no column 'studio'"):
        load_run_catalog(tmp_path, RetrievalConfig(group_by="column", group_column="studio"))


def test_heldout_requests_exclude_each_users_training_items(tmp_path):
    _export(tmp_path)
    catalog = load_run_catalog(tmp_path, RetrievalConfig())
    inter = Interactions(np.array([0, 0, 0, 1, 1, 2], np.int32), np.array([1, 2, 3, 4, 5, 0], np.int32),
                         np.ones(6, np.float32), np.arange(6, dtype=np.int64), 3, 6)
    loo = leave_one_out(inter, 2, np.random.default_rng(0))
    requests = heldout_requests(loo, np.array([10, 11, 12]), catalog, np.random.default_rng(0))
    assert sorted(requests.users.tolist()) == [0, 1]  # user 2 has one interaction: not held out
    for t in range(len(requests)):
        expected = {0: ([1, 2], 3), 1: ([4], 5)}[int(requests.users[t])]
        assert requests.seen(t, t + 1)[0].tolist() == expected[0] and requests.heldout[t] == expected[1]


def test_synthetic_disliked_group_gets_few_top_slots_and_generation_is_seeded():
    cfg = SyntheticEmbeddingsConfig(n_items=2000, n_users=300, dim=16, n_groups=4, disliked_group=1)
    catalog, requests = synthetic_catalog(cfg, np.random.default_rng(3))
    again, _ = synthetic_catalog(cfg, np.random.default_rng(3))
    assert np.array_equal(catalog.item_vectors, again.item_vectors)
    top = np.argsort(-(catalog.user_vectors @ catalog.item_vectors.T), axis=1)[:, :10]
    share = np.bincount(catalog.item_groups[top].ravel(), minlength=4) / top.size
    assert share[1] < 0.05 < share.min(where=np.arange(4) != 1, initial=1.0)
    assert len(requests) == 300 and (requests.heldout >= 0).all()


def test_synthetic_items_drawn_block_by_block_are_the_items_drawn_at_once(monkeypatch):
    """The memory-lean draw (no disliked group) gives the float32 items, and everything drawn
    after them, that one float64 draw of every row would."""
    import cluster.retrieval.synthetic_embeddings as synthetic

    cfg = SyntheticEmbeddingsConfig(n_items=5000, n_users=40, dim=8, n_groups=4, disliked_group=None)
    monkeypatch.setattr(synthetic, "_ITEM_BLOCK", 777)
    blocks, stream = synthetic_catalog(cfg, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    centroids = rng.normal(size=(4, 8)) * cfg.group_spread / np.sqrt(8)
    groups = rng.integers(0, 4, 5000)
    whole = (centroids[groups] + rng.normal(size=(5000, 8)) / np.sqrt(8)).astype(np.float32)
    np.testing.assert_array_equal(blocks.item_vectors, whole)
    np.testing.assert_array_equal(blocks.item_groups, groups)
    mixture = rng.dirichlet(np.full(4, 0.3), 40)  # the generator goes on where the items left it
    users = mixture @ centroids * np.sqrt(8) + rng.normal(size=(40, 8)) * 0.3
    queries = (users + rng.normal(size=users.shape) * cfg.query_noise).astype(np.float32)
    np.testing.assert_array_equal(blocks.user_vectors, queries)
    assert len(stream.users) == 40
