"""Tiny MovieLens folders in each format, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

# (user, item, rating, timestamp) with non-contiguous ids to exercise dense re-indexing.
RATINGS = [(10, 100, 5, 1000), (10, 200, 3, 1001), (20, 100, 4, 1002), (30, 300, 1, 1003), (20, 300, 5, 1004)]


def write_100k(folder: Path, ratings=RATINGS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    (folder / "u.user").write_text("10|24|M|technician|85711\n20|53|F|other|94043\n30|17|M|writer|T8H1N\n")
    genres = ["unknown", "Action", "Comedy"]
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(genres)) + "\n")
    items = {100: (0, 1, 0), 200: (0, 0, 1), 300: (1, 0, 0)}
    (folder / "u.item").write_text(
        "".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|" + "|".join(map(str, g)) + "\n" for i, g in items.items()),
        encoding="latin-1",
    )
    return folder


def write_1m(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in RATINGS))
    (folder / "users.dat").write_text("10::M::25::12::85711\n20::F::1::0::94043\n30::M::56::3::10001\n")
    (folder / "movies.dat").write_bytes(
        "100::Am\xe9lie (2001)::Comedy|Romance\n200::Heat (1995)::Action|Crime\n300::Up (2009)::Animation\n".encode("latin-1")
    )
    return folder


def write_csv(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r}.5,{t}\n" for u, i, r, t in RATINGS)
    )
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n100,"Good, Bad (1966)",Western\n200,Heat (1995)|x,Action|Crime\n'
        "300,Blank (2000),(no genres listed)\n"
    )
    return folder
