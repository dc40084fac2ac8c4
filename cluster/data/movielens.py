"""MovieLens loaders: 100K, 1M and the ratings.csv family (20M, 25M, latest).

The format is detected from the files present. Ids are re-indexed to dense ints; the maps
back to the original ids are kept on the :class:`Dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from cluster.data.errors import DataFormatError
from cluster.data.textfiles import iter_fields, parse_int, read_ratings, data_line_number
from cluster.data.types import CategoricalFeatures, Dataset, Interactions, ItemFeatures

ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
# ML-1M's age buckets; ML-100K's exact ages are folded into them so both read alike.
AGE_BUCKETS = [(1, "Under 18"), (18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-49"), (50, "50-55"), (56, "56+")]
NO_GENRE = "(no genres listed)"


@dataclass(frozen=True)
class _Format:
    name: str
    ratings_file: str
    loader: Callable[[Path], Dataset]


@dataclass(frozen=True)
class _RatingsFile:
    """The parsed ratings (user, item, rating, timestamp columns) and the file they came from:
    an error names the file and the line (``header``: whether line 1 is a header)."""

    path: Path
    columns: dict[str, np.ndarray]
    header: bool


@dataclass(frozen=True)
class _UsersFile:
    """Each user's demographic columns by original user id."""

    path: Path
    rows: dict[int, dict[str, str]]


@dataclass(frozen=True)
class _ItemsFile:
    """Each item's (title, genre indices) by original item id, and the genres those index."""

    path: Path
    rows: dict[int, tuple[str, list[int]]]
    genre_names: list[str]


def detect_format(folder: Path) -> str:
    """'ml-100k', 'ml-1m' or 'ml-csv', from the rating file found in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, "not a folder of MovieLens files")
    for fmt in _FORMATS:
        if (folder / fmt.ratings_file).exists():
            return fmt.name
    wanted = ", ".join(f"{f.ratings_file} ({f.name})" for f in _FORMATS)
    raise DataFormatError(folder, f"unknown MovieLens format: none of {wanted} found")


def load_movielens(folder: Path | str) -> Dataset:
    folder = Path(folder)
    name = detect_format(folder)
    return next(f for f in _FORMATS if f.name == name).loader(folder)


# --------------------------------------------------------------------------- 100K
def _age_bucket(age: int) -> str:
    label = AGE_BUCKETS[0][1]
    for lower, bucket in AGE_BUCKETS:
        if age >= lower:
            label = bucket
    return label


def _load_100k(folder: Path) -> Dataset:
    ratings_path = folder / "u.data"
    ratings = _RatingsFile(ratings_path, read_ratings(ratings_path, "\t", header=False), header=False)
    genre_names = _read_100k_genres(folder / "u.genre")

    users_path = folder / "u.user"
    user_rows: dict[int, dict[str, str]] = {}
    for line_no, fields in iter_fields(users_path, "|", header=False, encoding="latin-1", quoted=False):
        if len(fields) != 5:
            raise DataFormatError(users_path, f"expected 5 fields separated by '|', got {len(fields)}", line=line_no)
        user_id = parse_int(users_path, line_no, "user id", fields[0])
        age = parse_int(users_path, line_no, "age", fields[1])
        user_rows[user_id] = {
            "gender": fields[2],
            "age": _age_bucket(age),
            "occupation": fields[3],
            "zip_prefix": fields[4][:1] or "?",
        }

    items_path = folder / "u.item"
    item_rows: dict[int, tuple[str, list[int]]] = {}
    n_fields = 5 + len(genre_names)
    for line_no, fields in iter_fields(items_path, "|", header=False, encoding="latin-1", quoted=False):
        if len(fields) != n_fields:
            raise DataFormatError(
                items_path, f"expected {n_fields} fields separated by '|', got {len(fields)}", line=line_no
            )
        item_id = parse_int(items_path, line_no, "item id", fields[0])
        flags = [parse_int(items_path, line_no, f"genre {g}", v) for g, v in zip(genre_names, fields[5:])]
        item_rows[item_id] = (fields[1], [i for i, flag in enumerate(flags) if flag])
    return _assemble(
        "ml-100k", ratings, _UsersFile(users_path, user_rows), _ItemsFile(items_path, item_rows, genre_names)
    )


def _read_100k_genres(path: Path) -> list[str]:
    if not path.exists():
        return list(ML100K_GENRES)
    genres: dict[int, str] = {}
    for line_no, fields in iter_fields(path, "|", header=False, encoding="latin-1", quoted=False):
        if len(fields) != 2:
            raise DataFormatError(path, f"expected 'name|index', got {len(fields)} fields", line=line_no)
        genres[parse_int(path, line_no, "genre index", fields[1])] = fields[0]
    if sorted(genres) != list(range(len(genres))):
        raise DataFormatError(path, "genre indices must be 0..n-1")
    return [genres[i] for i in range(len(genres))]


# --------------------------------------------------------------------------- 1M
def _load_1m(folder: Path) -> Dataset:
    ratings_path = folder / "ratings.dat"
    ratings = _RatingsFile(ratings_path, read_ratings(ratings_path, "::", header=False), header=False)
    age_labels = dict(AGE_BUCKETS)

    users_path = folder / "users.dat"
    user_rows: dict[int, dict[str, str]] = {}
    for line_no, fields in iter_fields(users_path, "::", header=False, encoding="latin-1", quoted=False):
        if len(fields) != 5:
            raise DataFormatError(users_path, f"expected 5 fields separated by '::', got {len(fields)}", line=line_no)
        user_id = parse_int(users_path, line_no, "user id", fields[0])
        age = parse_int(users_path, line_no, "age", fields[2])
        user_rows[user_id] = {
            "gender": fields[1],
            "age": age_labels.get(age, _age_bucket(age)),
            "occupation": fields[3],
            "zip_prefix": fields[4][:1] or "?",
        }
    items_path = folder / "movies.dat"
    item_rows, genre_names = _read_titled_genres(items_path, "::", header=False, quoted=False)
    return _assemble(
        "ml-1m", ratings, _UsersFile(users_path, user_rows), _ItemsFile(items_path, item_rows, genre_names)
    )


# --------------------------------------------------------------------------- csv family
def _load_csv(folder: Path) -> Dataset:
    ratings_path = folder / "ratings.csv"
    ratings = _RatingsFile(ratings_path, read_ratings(ratings_path, ",", header=True), header=True)
    items_path = folder / "movies.csv"
    item_rows, genre_names = _read_titled_genres(items_path, ",", header=True, quoted=True)
    name = f"ml-csv:{folder.name}"
    return _assemble(name, ratings, None, _ItemsFile(items_path, item_rows, genre_names))


def _read_titled_genres(
    path: Path, separator: str, header: bool, quoted: bool
) -> tuple[dict[int, tuple[str, list[int]]], list[str]]:
    raw: dict[int, tuple[str, list[str]]] = {}
    encoding = "utf-8" if quoted else "latin-1"
    for line_no, fields in iter_fields(path, separator, header=header, encoding=encoding, quoted=quoted):
        if len(fields) != 3:
            raise DataFormatError(path, f"expected 3 fields (id, title, genres), got {len(fields)}", line=line_no)
        item_id = parse_int(path, line_no, "movie id", fields[0])
        genres = [g for g in fields[2].split("|") if g and g != NO_GENRE]
        raw[item_id] = (fields[1], genres)
    genre_names = sorted({g for _, genres in raw.values() for g in genres})
    index = {g: i for i, g in enumerate(genre_names)}
    return {k: (title, [index[g] for g in genres]) for k, (title, genres) in raw.items()}, genre_names


# --------------------------------------------------------------------------- assembly
def _dense(raw_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    original, dense = np.unique(raw_ids, return_inverse=True)
    return original.astype(np.int64), dense.astype(np.int32)


def _check_known(ratings: _RatingsFile, what: str, known: set[int], side_file: Path) -> None:
    """Every ``what`` ("user" or "item") id of the ratings is among ``known``, those ``side_file`` lists."""
    ids = ratings.columns[what]
    known_arr = np.fromiter(known, dtype=np.int64, count=len(known))
    missing = np.flatnonzero(~np.isin(ids, known_arr))
    if len(missing):
        row = int(missing[0])
        raise DataFormatError(
            ratings.path,
            f"{what} id {ids[row]} is not listed in {side_file.name}",
            line=data_line_number(ratings.path, row, ratings.header),
        )


def _assemble(name: str, ratings: _RatingsFile, users: Optional[_UsersFile], items: _ItemsFile) -> Dataset:
    """The dataset, ids made dense; ``users`` None: the format has no user file (no user features)."""
    if users is not None:
        _check_known(ratings, "user", set(users.rows), users.path)
    _check_known(ratings, "item", set(items.rows), items.path)
    user_ids, dense_users = _dense(ratings.columns["user"])
    item_ids, dense_items = _dense(ratings.columns["item"])
    interactions = Interactions(
        users=dense_users,
        items=dense_items,
        ratings=ratings.columns["rating"].astype(np.float32),
        timestamps=ratings.columns["timestamp"].astype(np.int64),
        n_users=len(user_ids),
        n_items=len(item_ids),
    )
    user_features = CategoricalFeatures()
    if users is not None and users.rows:
        columns = list(next(iter(users.rows.values())))
        user_features = _categorical([[users.rows[int(u)][c] for u in user_ids] for c in columns], columns)
    return Dataset(
        name=name,
        interactions=interactions,
        user_ids=user_ids,
        item_ids=item_ids,
        user_features=user_features,
        item_features=_item_features(item_ids, items.rows, items.genre_names),
    )


def _item_features(item_ids: np.ndarray, item_rows: dict[int, tuple[str, list[int]]], genre_names: list[str]):
    """Titles and multi-hot genres in dense-id order; the group is the first listed genre."""
    genres = np.zeros((len(item_ids), len(genre_names)), dtype=bool)
    titles = np.empty(len(item_ids), dtype=object)
    for dense_id, item_id in enumerate(item_ids):
        title, genre_idx = item_rows[int(item_id)]
        titles[dense_id] = title
        genres[dense_id, genre_idx] = True
    return primary_genre_features(genres, genre_names, titles)


def _categorical(columns: list[list[str]], names: list[str]) -> CategoricalFeatures:
    codes, vocab = {}, {}
    for name, values in zip(names, columns):
        labels, inverse = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
        codes[name] = inverse.astype(np.int32)
        vocab[name] = [str(v) for v in labels]
    return CategoricalFeatures(codes=codes, vocab=vocab)


def primary_genre_features(genres: np.ndarray, genre_names: list[str], titles: np.ndarray) -> ItemFeatures:
    """An item's group is its first listed genre (MovieLens lists genres alphabetically in the
    csv family and in a fixed order in 100K), so every item has exactly one group; items with
    no genre fall into 'unknown'. The multi-hot genres stay available for multi-group use."""
    group_names = list(genre_names)
    if "unknown" not in group_names:
        group_names.append("unknown")
    unknown = group_names.index("unknown")
    has_genre = genres.any(axis=1)
    group = np.where(has_genre, genres.argmax(axis=1), unknown).astype(np.int32)
    return ItemFeatures(
        genres=genres, genre_names=list(genre_names), group=group, group_names=group_names, titles=titles
    )


_FORMATS = (
    _Format("ml-100k", "u.data", _load_100k),
    _Format("ml-1m", "ratings.dat", _load_1m),
    _Format("ml-csv", "ratings.csv", _load_csv),
)
