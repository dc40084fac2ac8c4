"""What the Serve ingress stands on: the catalog, the dual-vector actor, the partitions (searched
in the replica, or by shard actors) and the journal of served lists, built from a config. The
ingress replica calls this in its constructor, so the actors are owned by the replica and go away
with the application (``serve shutdown``, ``serve.delete``, Ctrl-C on ``serve run``); a second
replica finds them by name instead of starting more."""

from __future__ import annotations

from dataclasses import dataclass

from actors.retrieval_factory import (
    RetrievalActors,
    save_partitions,
    saved_partitions,
    start_retrieval,
)
from cluster.retrieval.catalog import Catalog
from cluster.retrieval.policies import exposure_targets, make_policy
from cluster.rng import stream as rng_stream
from cluster.storage import Storage
from configs import SimConfig, config_hash

DEFAULT_HORIZON = 100_000  # T when neither the config nor a held-out request stream gives one


@dataclass
class Backend:
    catalog: Catalog
    actors: RetrievalActors
    folder: Storage


def backend_folder(cfg: SimConfig) -> Storage:
    """The application's folder in the storage, named by the config: its partitions (with their
    stored indexes) under ``shards/``, the dual vector's state, the journal of served lists."""
    return Storage(cfg.storage) / f"serve-{cfg.name}-{config_hash(cfg)[:8]}"


def start_backend(cfg: SimConfig, name_prefix: str = "") -> Backend:
    """Files go to a folder named by the config hash, so a restarted application with the same
    config continues the dual state instead of resetting it."""
    from cluster.retrieval.source import load_catalog

    r = cfg.retrieval
    catalog, requests, _ = load_catalog(cfg, with_requests=r.source == "run")
    horizon = r.horizon or (len(requests) if requests is not None else DEFAULT_HORIZON)
    folder = backend_folder(cfg)
    if saved_partitions(folder / "shards") != r.n_shards:
        save_partitions(r, catalog, folder / "shards", rng_stream(cfg.seed, "partition"))
    policy = make_policy(r.policy, exposure_targets(r, catalog.n_groups, horizon))
    actors = start_retrieval(r, catalog, policy, folder / "shards", folder, name_prefix, reuse=True)
    if folder.local_path is not None:
        # Answers wait for a local append instead of a call to the dual-vector actor; on an
        # object store they wait for its acknowledgement (actors/retrieval_coordinator.py).
        actors.coordinator.keep_journal(folder.local_path / "reports")
    return Backend(catalog, actors, folder)
