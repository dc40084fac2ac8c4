"""The retriever's catalogue for a job: as ``cluster/retrieval/source.py`` reads it, with the GMF
run trained first when the config names none."""

from __future__ import annotations

from cluster.fl.families import family_of
from cluster.retrieval.catalog import Catalog, RequestStream
from cluster.retrieval.source import load_catalog
from cluster.storage import Storage
from configs import SimConfig


def train_gmf_run(cfg: SimConfig) -> Storage:
    """Run fl_sim with this config (model.kind must be gmf) and return its run folder."""
    from jobs.fl_sim import build_run_write

    if not family_of(cfg.model.kind).has_retrieval_queries(cfg.model.kind):
        raise ValueError(f"the retriever needs an inner-product model: set model.kind=gmf (not {cfg.model.kind})")
    print("training GMF first", flush=True)
    return build_run_write(cfg, quiet=True)[1]


def load_or_train_catalog(cfg: SimConfig,
                          with_requests: bool = True) -> tuple[Catalog, RequestStream | None, Storage | None]:
    """(catalog, held-out request stream or None, the run folder used)."""
    trained = None
    if cfg.retrieval.source == "run" and cfg.retrieval.run_dir is None:
        trained = train_gmf_run(cfg)
    return load_catalog(cfg, trained, with_requests)
