from pathlib import Path

import numpy as np

import cluster.data.source as source
from configs import load_config
from cluster.data.parquet_io import load_dataset, save_dataset
from tests.unit.movielens_fixtures import write_100k


def _same(a, b):
    for name in ("users", "items", "ratings", "timestamps"):
        assert np.array_equal(getattr(a.interactions, name), getattr(b.interactions, name))
    assert a.name == b.name and np.array_equal(a.user_ids, b.user_ids) and np.array_equal(a.item_ids, b.item_ids)
    assert a.user_features.vocab == b.user_features.vocab
    for key in a.user_features.codes:
        assert np.array_equal(a.user_features.codes[key], b.user_features.codes[key])
    assert np.array_equal(a.item_features.genres, b.item_features.genres)
    assert np.array_equal(a.item_features.group, b.item_features.group)
    assert a.item_features.group_names == b.item_features.group_names
    assert list(a.item_features.titles) == list(b.item_features.titles)


def test_parquet_round_trip(tmp_path: Path):
    from cluster.data.movielens import load_movielens

    data = load_movielens(write_100k(tmp_path / "ml"))
    save_dataset(data, tmp_path / "cache" / "entry")
    _same(data, load_dataset(tmp_path / "cache" / "entry"))
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_cache_hit_skips_parsing_and_key_follows_file_bytes(tmp_path: Path, monkeypatch):
    folder = write_100k(tmp_path / "ml")
    cfg = load_config(None, ["data.source=movielens", f"data.path={folder}", f"data.cache_dir={tmp_path / 'c'}"]).data
    first, entry = source.load_data(cfg, seed=0)
    assert entry is not None and (entry / "interactions.parquet").exists()

    def refuse(_):
        raise AssertionError("a cache hit must not parse the files again")

    monkeypatch.setattr(source, "load_movielens", refuse)
    second, entry_again = source.load_data(cfg, seed=0)
    assert entry_again == entry
    _same(first, second)

    with (folder / "u.data").open("a") as handle:
        handle.write("30\t200\t2\t5000\n")
    assert source.movielens_cache_key(folder) != entry.name


def test_synthetic_cache_key_depends_on_seed_and_settings():
    cfg = load_config(None).data
    other = load_config(None, ["data.synthetic.n_users=999"]).data
    assert source.synthetic_cache_key(cfg, 0) != source.synthetic_cache_key(cfg, 1)
    assert source.synthetic_cache_key(cfg, 0) != source.synthetic_cache_key(other, 0)
    assert source.synthetic_cache_key(cfg, 0) == source.synthetic_cache_key(load_config(None).data, 0)
