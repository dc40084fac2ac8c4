"""A partition's built index, kept in the storage beside the partition: a shard actor or a Serve
replica that starts, or restarts on any node, loads it instead of building it again. Training
and adding take minutes (ivf_rq: 10M items in 8 shards, about 10 minutes on two cores), loading
about as long as reading the file (under half a minute for the same).

The file is named by everything the index is built from: the partition's contents (item ids,
groups and vectors), the index settings but those read only when searching (nprobe, overfetch,
ef_search, applied after loading), the number of groups, the seed and the file format. A new
partition or a changed build setting therefore finds no file and builds one, an index is never
used for another partition, and a sweep of nprobe builds once. ``flat`` is not stored: its
build is a copy of the vectors. A file that cannot be read (cut short, corrupted, an older
format) is built again and replaced, with a warning naming it: it is derived data, the
partition is the source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from cluster.retrieval.partitions import Partition
from cluster.retrieval.shard_index import SEARCH_SETTINGS, IndexSettings, ShardIndex
from cluster.storage import Storage

FORMAT = 1  # bumped when ShardIndex.to_arrays changes what it writes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexSource:
    """Where a shard's index came from: "built" (and stored, unless flat) or "loaded", the file
    (None for flat) and the seconds it took."""

    how: str
    file: str | None
    seconds: float


def stored_index_name(shard: str, partition: Partition, n_groups: int, settings: IndexSettings, seed: int = 0) -> str:
    """``<shard>.<kind>-<digest>.index.npz``: the digest covers what the index is built from."""
    digest = hashlib.blake2b(digest_size=12)
    built_by = {key: value for key, value in asdict(settings).items() if key not in SEARCH_SETTINGS}
    recipe = {"format": FORMAT, "settings": built_by, "n_groups": n_groups, "seed": seed}
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    for values, dtype in (
        (partition.item_ids, np.int64),
        (partition.groups, np.int64),
        (partition.vectors, np.float32),
    ):
        digest.update(np.ascontiguousarray(values, dtype=dtype).data)
    return f"{shard}.{settings.kind}-{digest.hexdigest()}.index.npz"


def load_or_build(
    folder: Storage, shard: str, n_groups: int, settings: IndexSettings, seed: int = 0
) -> tuple[ShardIndex, IndexSource]:
    """The index of partition ``<shard>.npz`` in ``folder``: loaded when ``folder`` holds it,
    otherwise built and written there (atomically: a shard killed while writing leaves no file)."""
    started = time.perf_counter()
    partition = Partition.load(folder, f"{shard}.npz")
    if settings.kind == "flat":
        index = _build(partition, n_groups, settings, seed)
        return index, IndexSource("built", None, time.perf_counter() - started)
    name = stored_index_name(shard, partition, n_groups, settings, seed)
    if folder.exists(name):
        # The stored file holds what search needs (an IVF kind's vectors too): the partition is
        # let go first, so a shard never holds both at once.
        del partition
        try:
            index = ShardIndex.from_arrays(folder.read_npz(name))
            index.set_search_settings(settings)
            return index, IndexSource("loaded", name, time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is rebuilt from its partition
            log.warning("%s cannot be read (%s); building the index again and replacing it", folder.describe(name), exc)
        partition = Partition.load(folder, f"{shard}.npz")
    index = _build(partition, n_groups, settings, seed)
    del partition
    folder.write_npz(name, **index.to_arrays())
    return index, IndexSource("built", name, time.perf_counter() - started)


def _build(partition: Partition, n_groups: int, settings: IndexSettings, seed: int) -> ShardIndex:
    return ShardIndex(partition.item_ids, partition.vectors, partition.groups, n_groups, settings, seed=seed)
