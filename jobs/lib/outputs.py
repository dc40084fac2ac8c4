"""Writing results: every file lands atomically in a run folder of the configured storage (a
local path, NFS, or an object-store URI; ``cluster/storage.py``)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from cluster.storage import Storage, as_storage
from configs import SimConfig, config_hash


def new_run_dir(cfg: SimConfig, job: str) -> Storage:
    """<storage>/<job>-<name>-<UTC time>-<config hash>: unique per start, readable in a listing."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    run = Storage(cfg.storage) / f"{job}-{cfg.name}-{stamp}-{config_hash(cfg)[:8]}"
    if run.exists():
        raise FileExistsError(f"{run}: run folder already exists")
    return run


def write_text_atomic(target: Storage | Path, text: str) -> None:
    as_storage(target).write_text("", text)


def write_json_atomic(target: Storage | Path, payload: Any) -> None:
    as_storage(target).write_json("", payload)


def write_resolved_config(folder: Storage, cfg: SimConfig) -> None:
    folder.write_text("config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
