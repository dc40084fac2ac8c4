from pathlib import Path

import numpy as np
import pytest

from cluster.data.errors import DataFormatError
from cluster.data.movielens import detect_format, load_movielens
from tests.unit.movielens_fixtures import RATINGS, write_100k, write_1m, write_csv


@pytest.mark.parametrize("writer,fmt", [(write_100k, "ml-100k"), (write_1m, "ml-1m"), (write_csv, "ml-csv")])
def test_each_format_loads_with_dense_ids(tmp_path: Path, writer, fmt):
    folder = writer(tmp_path / fmt)
    assert detect_format(folder) == fmt
    data = load_movielens(folder)
    inter = data.interactions
    assert (data.n_users, data.n_items, len(inter)) == (3, 3, 5)
    assert data.user_ids.tolist() == [10, 20, 30] and data.item_ids.tolist() == [100, 200, 300]
    # Dense ids map back to the original ids row by row.
    assert [(data.user_ids[u], data.item_ids[i]) for u, i in zip(inter.users, inter.items)] == [(u, i) for u, i, _, _ in RATINGS]
    assert inter.timestamps.tolist() == [t for *_, t in RATINGS]
    assert data.item_features.genres.shape[0] == 3
    assert len(data.item_features.group) == 3


def test_100k_features(tmp_path: Path):
    data = load_movielens(write_100k(tmp_path / "a"))
    uf = data.user_features
    assert uf.names() == ["gender", "age", "occupation", "zip_prefix"]
    age = [uf.vocab["age"][c] for c in uf.codes["age"]]
    assert age == ["18-24", "50-55", "Under 18"]
    assert [uf.vocab["zip_prefix"][c] for c in uf.codes["zip_prefix"]] == ["8", "9", "T"]
    groups = [data.item_features.group_names[g] for g in data.item_features.group]
    assert groups == ["Action", "Comedy", "unknown"]
    assert data.item_features.titles[0] == "Movie 100 (1995)"


def test_1m_latin1_and_genres(tmp_path: Path):
    data = load_movielens(write_1m(tmp_path / "b"))
    assert data.item_features.titles[0] == "Am\xe9lie (2001)"
    assert data.item_features.genre_names == sorted(["Comedy", "Romance", "Action", "Crime", "Animation"])
    assert [data.user_features.vocab["age"][c] for c in data.user_features.codes["age"]] == ["25-34", "Under 18", "56+"]


def test_csv_quoted_titles_and_no_genres(tmp_path: Path):
    data = load_movielens(write_csv(tmp_path / "c"))
    assert data.item_features.titles[0] == "Good, Bad (1966)"
    assert data.interactions.ratings.tolist() == [5.5, 3.5, 4.5, 1.5, 5.5]
    assert not data.item_features.genres[2].any()
    assert data.item_features.group_names[data.item_features.group[2]] == "unknown"
    assert data.user_features.names() == []


def _expect_error(folder: Path, filename: str, line, text: str):
    with pytest.raises(DataFormatError) as err:
        load_movielens(folder)
    message = str(err.value)
    assert filename in message and text in message, message
    if line is not None:
        assert f"{filename}:{line}:" in message, message


def test_short_line_names_file_and_line(tmp_path: Path):
    folder = write_100k(tmp_path / "d")
    (folder / "u.data").write_text("10\t100\t5\t1000\n\n20\t100\t4\n")
    _expect_error(folder, "u.data", 3, "expected 4 fields")


def test_non_numeric_id_names_file_and_line(tmp_path: Path):
    folder = write_1m(tmp_path / "e")
    (folder / "ratings.dat").write_text("10::100::5::1000\n10::abc::3::1001\n")
    _expect_error(folder, "ratings.dat", 2, "field 'item' is not an integer")


def test_csv_bad_rating(tmp_path: Path):
    folder = write_csv(tmp_path / "f")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n10,100,4.0,1\n10,200,good,2\n")
    _expect_error(folder, "ratings.csv", 3, "'rating' is not a number")


def test_empty_file(tmp_path: Path):
    folder = write_100k(tmp_path / "g")
    (folder / "u.data").write_text("")
    _expect_error(folder, "u.data", None, "empty")


def test_unknown_format(tmp_path: Path):
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "notes.txt").write_text("hi")
    _expect_error(tmp_path / "h", "h", None, "unknown MovieLens format")


def test_rating_for_unlisted_item(tmp_path: Path):
    folder = write_100k(tmp_path / "i", ratings=RATINGS + [(10, 999, 2, 2000)])
    _expect_error(folder, "u.data", 6, "item id 999 is not listed in u.item")


def test_malformed_side_file(tmp_path: Path):
    folder = write_100k(tmp_path / "j")
    (folder / "u.user").write_text("10|24|M|technician|85711\n20|fifty|F|other|94043\n")
    _expect_error(folder, "u.user", 2, "'age' is not an integer")


def test_real_ml100k(ml100k):
    assert (ml100k.n_users, ml100k.n_items, len(ml100k.interactions)) == (943, 1682, 100_000)
    assert ml100k.user_ids.min() == 1 and ml100k.item_ids.max() == 1682
    assert len(ml100k.item_features.genre_names) == 19
    ratings = ml100k.interactions.ratings
    assert set(np.unique(ratings).tolist()) == {1, 2, 3, 4, 5}
    assert ml100k.user_features.vocab["gender"] == ["F", "M"]
