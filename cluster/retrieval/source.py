"""Where the retriever's vectors and request stream come from: a trained GMF run folder or the
synthetic embedding generator. Training a missing run is the jobs' business
(``jobs/lib/retrieval_source.py``); a served application only ever reads one."""

from __future__ import annotations

from cluster.retrieval.catalog import Catalog, RequestStream
from cluster.retrieval.run_catalog import heldout_requests, load_run_catalog
from cluster.retrieval.synthetic_embeddings import synthetic_catalog
from cluster.rng import stream as rng_stream
from cluster.storage import Storage
from configs import SimConfig, load_config_text


def load_catalog(
    cfg: SimConfig, run_dir: Storage | None = None, with_requests: bool = True
) -> tuple[Catalog, RequestStream | None, Storage | None]:
    """(catalog, held-out request stream or None, the run folder used). ``run_dir`` overrides
    ``retrieval.run_dir``."""
    r = cfg.retrieval
    if r.source == "synthetic":
        catalog, requests = synthetic_catalog(r.synthetic, rng_stream(cfg.seed, "synthetic_embeddings"), with_requests)
        return catalog, requests if with_requests else None, None
    if run_dir is None:
        if r.run_dir is None:
            raise ValueError("retrieval.source=run needs retrieval.run_dir (an fl_sim GMF run folder)")
        run_dir = Storage(r.run_dir)
    catalog = load_run_catalog(run_dir, r)
    return catalog, _run_requests(run_dir, catalog, cfg.seed) if with_requests else None, run_dir


def _run_requests(run_dir: Storage, catalog: Catalog, seed: int) -> RequestStream:
    from cluster.world import build_world

    # the world the vectors were trained on
    run_cfg = load_config_text(run_dir.read_text("config.yaml"), run_dir.describe("config.yaml"))
    world = build_world(run_cfg)
    return heldout_requests(world.leave_one_out, world.dataset.user_ids, catalog, rng_stream(seed, "requests"))
