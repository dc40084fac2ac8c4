"""A shard's built index stored beside its partition: loaded, it answers exactly what the built
one answers; it is found again only for the same partition and settings; a file that cannot be
read is built again and replaced."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.retrieval.index_store import load_or_build, stored_index_name
from cluster.retrieval.local_shards import LocalShards
from cluster.retrieval.partitions import Partition, partition_items
from cluster.retrieval.shard_index import IndexSettings, ShardIndex
from cluster.storage import Storage

N_ITEMS, DIM, N_GROUPS, K = 3000, 16, 4, 10
SETTINGS = {
    "ivf": IndexSettings(kind="ivf", nlist=8, nprobe=3),
    "ivf_rq": IndexSettings(kind="ivf_rq", nlist=8, nprobe=3, rq_m=8, overfetch=8),
    "ivf_adjusted": IndexSettings(kind="ivf", nlist=8, nprobe=3, fetch_by="adjusted"),
    "hnsw": IndexSettings(kind="hnsw", hnsw_m=8, ef_search=40),
}


def _partition(seed: int = 3, n: int = N_ITEMS) -> Partition:
    rng = np.random.default_rng(seed)
    return Partition(np.arange(n, dtype=np.int64) + 100, rng.normal(size=(n, DIM)).astype(np.float32),
                     rng.integers(0, N_GROUPS, n).astype(np.int64))


def _answers(index: ShardIndex, mu: np.ndarray):
    index.set_mu(mu)
    queries = np.random.default_rng(9).normal(size=(20, DIM)).astype(np.float32)
    exclude = [np.arange(100, 130) + q for q in range(20)]
    return [index.search(queries, K), index.search(queries, K, exclude)]


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_a_loaded_index_answers_bit_for_bit_what_the_built_one_answers(tmp_path, kind):
    folder = Storage(tmp_path)
    _partition().save(folder, "shard-0.npz")
    built, source = load_or_build(folder, "shard-0", N_GROUPS, SETTINGS[kind])
    assert source.how == "built" and folder.exists(source.file)
    loaded, again = load_or_build(folder, "shard-0", N_GROUPS, SETTINGS[kind])
    assert again.how == "loaded" and again.file == source.file
    for mu in (np.zeros(N_GROUPS), np.array([0.0, -0.4, 0.3, 0.1])):
        for got, expected in zip(_answers(loaded, mu), _answers(built, mu)):
            np.testing.assert_array_equal(got.items, expected.items)
            np.testing.assert_array_equal(got.adjusted, expected.adjusted)
            np.testing.assert_array_equal(got.scores, expected.scores)
    if kind.startswith("ivf"):
        loaded.set_nprobe(8)  # nprobe stays a share of the nlist asked for, as on the built index
        built.set_nprobe(8)
        np.testing.assert_array_equal(_answers(loaded, np.zeros(N_GROUPS))[0].items,
                                      _answers(built, np.zeros(N_GROUPS))[0].items)


def test_the_stored_file_is_named_by_the_partition_and_the_settings():
    partition, settings = _partition(), SETTINGS["ivf"]
    name = stored_index_name("shard-0", partition, N_GROUPS, settings)
    assert name == stored_index_name("shard-0", _partition(), N_GROUPS, settings)
    moved = Partition(partition.item_ids, partition.vectors.copy(), partition.groups)
    moved.vectors[17, 3] += 1e-3
    searched_otherwise = IndexSettings(kind="ivf", nlist=8, nprobe=5, overfetch=9, ef_search=7)
    assert name == stored_index_name("shard-0", partition, N_GROUPS, searched_otherwise)
    others = {
        stored_index_name("shard-0", moved, N_GROUPS, settings),
        stored_index_name("shard-0", partition, N_GROUPS, IndexSettings(kind="ivf", nlist=9, nprobe=3)),
        stored_index_name("shard-0", partition, N_GROUPS + 1, settings),
        stored_index_name("shard-0", partition, N_GROUPS, settings, seed=1),
        stored_index_name("shard-1", partition, N_GROUPS, settings),
    }
    assert name not in others and len(others) == 5


def test_a_new_partition_under_the_same_name_is_built_not_loaded(tmp_path):
    folder = Storage(tmp_path)
    _partition(seed=3).save(folder, "shard-0.npz")
    load_or_build(folder, "shard-0", N_GROUPS, SETTINGS["ivf"])
    _partition(seed=4).save(folder, "shard-0.npz")
    index, source = load_or_build(folder, "shard-0", N_GROUPS, SETTINGS["ivf"])
    assert source.how == "built"
    np.testing.assert_array_equal(index.vectors, _partition(seed=4).vectors)


@pytest.mark.parametrize("damage", ["truncated", "not_an_index"])
def test_an_unreadable_stored_index_is_built_again_and_replaced(tmp_path, caplog, damage):
    folder = Storage(tmp_path)
    _partition().save(folder, "shard-0.npz")
    built, source = load_or_build(folder, "shard-0", N_GROUPS, SETTINGS["ivf"])
    assert source.file is not None
    data = folder.read_bytes(source.file)
    if damage == "truncated":
        folder.write_bytes(source.file, data[: len(data) // 2])
    else:
        arrays = folder.read_npz(source.file)
        folder.write_npz(source.file, **{**arrays, "faiss_index": np.frombuffer(b"garbage!" * 64, np.uint8)})
    index, again = load_or_build(folder, "shard-0", N_GROUPS, SETTINGS["ivf"])
    assert again.how == "built"
    assert source.file in caplog.text and "building the index again" in caplog.text
    assert load_or_build(folder, "shard-0", N_GROUPS, SETTINGS["ivf"])[1].how == "loaded"  # replaced
    np.testing.assert_array_equal(_answers(index, np.zeros(N_GROUPS))[0].items,
                                  _answers(built, np.zeros(N_GROUPS))[0].items)


def test_flat_is_built_every_time_and_never_stored(tmp_path):
    folder = Storage(tmp_path)
    _partition().save(folder, "shard-0.npz")
    for _ in range(2):
        _, source = load_or_build(folder, "shard-0", N_GROUPS, IndexSettings(kind="flat"))
        assert source.how == "built" and source.file is None
    assert folder.list() == ["shard-0.npz"]


def test_in_process_partitions_load_the_indexes_the_shards_stored(tmp_path):
    folder = Storage(tmp_path)
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32)
    parts = partition_items(np.arange(N_ITEMS), vectors, rng.integers(0, N_GROUPS, N_ITEMS), 2, rng)
    for i, part in enumerate(parts):
        part.save(folder, f"shard-{i}.npz")
    settings = SETTINGS["ivf_rq"]
    stored = [load_or_build(folder, f"shard-{i}", N_GROUPS, settings)[0] for i in range(2)]
    files = sorted(folder.list())
    local = LocalShards.load(folder, ["shard-0", "shard-1"], N_GROUPS, settings)
    assert sorted(folder.list()) == files  # loaded, nothing built or written
    queries = rng.normal(size=(8, DIM)).astype(np.float32)
    mu = np.array([0.2, 0.0, -0.1, 0.3])
    for shard in stored:
        shard.set_mu(mu)
    for (hits, _), shard in zip(local.search(queries, K, mu, 0), stored):
        np.testing.assert_array_equal(hits.items, shard.search(queries, K).items)


def test_an_index_read_back_holds_no_mu_whatever_mu_it_was_written_with():
    """μ belongs to the dual-vector actor: flat, which keeps −μ_g in its rows, is read back at μ = 0."""
    partition = _partition()
    for settings in (IndexSettings(kind="flat"), SETTINGS["ivf"]):
        index = ShardIndex(partition.item_ids, partition.vectors, partition.groups, N_GROUPS, settings)
        fresh = _answers(index, np.zeros(N_GROUPS))
        index.set_mu(np.array([0.0, -0.4, 0.3, 0.1]))
        back = ShardIndex.from_arrays(index.to_arrays())
        assert not back.mu.any()
        queries = np.random.default_rng(9).normal(size=(20, DIM)).astype(np.float32)
        np.testing.assert_array_equal(back.search(queries, K).items, fresh[0].items)


@pytest.mark.parametrize("kind", ["ivf_rq", "hnsw"])
def test_an_index_stored_with_other_search_settings_is_loaded_and_searched_with_the_new_ones(tmp_path, kind):
    folder = Storage(tmp_path)
    _partition().save(folder, "shard-0.npz")
    load_or_build(folder, "shard-0", N_GROUPS, SETTINGS[kind])
    wider = (IndexSettings(kind="ivf_rq", nlist=8, nprobe=6, rq_m=8, overfetch=3) if kind == "ivf_rq"
             else IndexSettings(kind="hnsw", hnsw_m=8, ef_search=90, overfetch=2))
    loaded, source = load_or_build(folder, "shard-0", N_GROUPS, wider)
    assert source.how == "loaded"
    partition = _partition()
    built = ShardIndex(partition.item_ids, partition.vectors, partition.groups, N_GROUPS, wider)
    mu = np.array([0.0, -0.4, 0.3, 0.1])
    for got, expected in zip(_answers(loaded, mu), _answers(built, mu)):
        np.testing.assert_array_equal(got.items, expected.items)
        np.testing.assert_array_equal(got.adjusted, expected.adjusted)
