"""Where the retriever's vectors and request stream come from: an fl_sim run folder (trained
GMF; trained first when the config names none) or the synthetic embedding generator."""

from __future__ import annotations

from cluster.retrieval.catalog import Catalog, RequestStream
from cluster.retrieval.run_catalog import heldout_requests, load_run_catalog
from cluster.retrieval.synthetic_embeddings import synthetic_catalog
from cluster.rng import stream as rng_stream
from cluster.storage import Storage
from configs import SimConfig, load_config_text


def train_gmf_run(cfg: SimConfig) -> Storage:
    """Run fl_sim with this config (model.kind must be gmf) and return its run folder."""
    from jobs.fl_sim import build_run_write

    if cfg.model.kind != "gmf":
        raise ValueError(f"the retriever needs an inner-product model: set model.kind=gmf (not {cfg.model.kind})")
    print("training GMF first", flush=True)
    return build_run_write(cfg, quiet=True)[1]


def load_catalog(cfg: SimConfig, train_if_missing: bool = True,
                 with_requests: bool = True) -> tuple[Catalog, RequestStream | None, Storage | None]:
    """(catalog, held-out request stream or None, the run folder used)."""
    r = cfg.retrieval
    if r.source == "synthetic":
        catalog, requests = synthetic_catalog(r.synthetic, rng_stream(cfg.seed, "synthetic_embeddings"), with_requests)
        return catalog, requests if with_requests else None, None
    if r.run_dir is None:
        if not train_if_missing:
            raise ValueError("retrieval.source=run needs retrieval.run_dir (an fl_sim GMF run folder)")
        run_dir = train_gmf_run(cfg)
    else:
        run_dir = Storage(r.run_dir)
    catalog = load_run_catalog(run_dir, r)
    return catalog, _run_requests(run_dir, catalog, cfg.seed) if with_requests else None, run_dir


def _run_requests(run_dir: Storage, catalog: Catalog, seed: int) -> RequestStream:
    from cluster.world import build_world

    # the world the vectors were trained on
    run_cfg = load_config_text(run_dir.read_text("config.yaml"), run_dir.describe("config.yaml"))
    world = build_world(run_cfg)
    return heldout_requests(world.leave_one_out, world.dataset.user_ids, catalog, rng_stream(seed, "requests"))
