"""Writing results: every file lands atomically (temporary file + rename) in a run folder."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from cluster.atomic import write_text
from configs import SimConfig, config_hash


def write_text_atomic(path: Path, text: str) -> None:
    write_text(path, text)


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def new_run_dir(cfg: SimConfig, job: str) -> Path:
    """runs/<job>-<name>-<UTC time>-<config hash>: unique per start, readable in a listing."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    folder = cfg.output_dir / f"{job}-{cfg.name}-{stamp}-{config_hash(cfg)[:8]}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def write_resolved_config(folder: Path, cfg: SimConfig) -> None:
    write_text_atomic(folder / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
