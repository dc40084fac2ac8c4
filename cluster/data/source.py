"""Where a run's data comes from: MovieLens files or the synthetic generator, through a Parquet
cache keyed by what produced it (the source files' bytes, or the generator settings and seed)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

from configs.schema import DataConfig
from cluster.data.movielens import detect_format, load_movielens
from cluster.data.parquet_io import load_dataset, save_dataset
from cluster.data.synthetic import GENERATOR_VERSION, generate_synthetic
from cluster.data.types import Dataset

LOADER_VERSION = 1
_SOURCE_FILES = {
    "ml-100k": ("u.data", "u.user", "u.item", "u.genre"),
    "ml-1m": ("ratings.dat", "users.dat", "movies.dat"),
    "ml-csv": ("ratings.csv", "movies.csv"),
}


def default_cache_dir() -> Path:
    if os.environ.get("FAIRFLEET_CACHE"):
        return Path(os.environ["FAIRFLEET_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fairfleet"


def movielens_cache_key(folder: Path) -> str:
    fmt = detect_format(folder)
    digest = hashlib.sha256(f"movielens:{fmt}:v{LOADER_VERSION}".encode())
    for name in _SOURCE_FILES[fmt]:
        path = folder / name
        if not path.exists():
            continue
        digest.update(name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return f"{fmt}-{digest.hexdigest()[:20]}"


def synthetic_cache_key(cfg: DataConfig, seed: int) -> str:
    settings = json.dumps(cfg.synthetic.model_dump(mode="json"), sort_keys=True)
    digest = hashlib.sha256(f"synthetic:v{GENERATOR_VERSION}:{seed}:{settings}".encode())
    return f"synthetic-{digest.hexdigest()[:20]}"


def load_data(cfg: DataConfig, seed: int, use_cache: bool = True) -> tuple[Dataset, Optional[Path]]:
    """The data set a config names, plus the cache folder it came from or went to (None when
    caching is off). A cache hit skips parsing or generation entirely."""
    if cfg.source == "movielens":
        assert cfg.path is not None  # the schema enforces it
        key = movielens_cache_key(cfg.path)
        build = lambda: load_movielens(cfg.path)  # noqa: E731
    else:
        key = synthetic_cache_key(cfg, seed)
        build = lambda: generate_synthetic(cfg.synthetic, seed)  # noqa: E731
    if not use_cache:
        return build(), None
    folder = (cfg.cache_dir or default_cache_dir()) / key
    if (folder / "items.parquet").exists():
        return load_dataset(folder), folder
    dataset = build()
    save_dataset(dataset, folder)
    return dataset, folder
