"""CEAG's reference side: the unoptimized model's per-tier train accuracy A_t(β_0), given in the
config or read from the summary.json of an fl_sim run of the same seed and tier mapping."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from cluster.data.errors import DataFormatError
from cluster.storage import Storage, StorageError
from configs.schema import CEAGConfig


# The train-split summary key of each CEAG measure (``cluster/fl/families/click/metrics.auc_summary``).
REFERENCE_KEYS = {"accuracy": "acc_train", "pairwise": "pair_train"}


def reference_accuracy(cfg: CEAGConfig, tier_names: tuple[str, ...], expected: Optional[dict] = None) -> np.ndarray:
    """(T,) in ``tier_names`` order; DataFormatError naming the file and key when a run's
    summary lacks them (e.g. an NCF run, or one from before train accuracy was recorded), or
    when it differs from ``expected`` (summary key → value: model, tier_mapping, seed) — a
    reference from another mapping or seed would compare different users' accuracies."""
    if cfg.reference_accuracy is not None:
        return np.array([cfg.reference_accuracy[name] for name in tier_names], dtype=np.float64)
    # CEAGConfig's validator demands exactly one of reference_accuracy and reference_run.
    assert cfg.reference_run is not None, "a CEAG config without reference_accuracy names a reference_run"
    run = Storage(cfg.reference_run)
    path = run.describe("summary.json")
    if not run.exists("summary.json"):
        raise DataFormatError(path, "no summary.json: reference_run must be a finished fl_sim run folder")
    try:
        summary = run.read_json("summary.json")
    except StorageError as exc:
        raise DataFormatError(path, f"cannot read the run summary: {exc}") from None
    train = summary.get("final_train") or {}
    prefix = REFERENCE_KEYS[cfg.measure]
    values = []
    for name in tier_names:
        value = train.get(f"{prefix}_{name}")
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataFormatError(
                path,
                f"final_train.{prefix}_{name} missing or not a number: the reference must "
                "be a run of the same model with the same tiers, written since train measures are "
                "recorded (NCF runs record the pairwise one only)",
            )
        values.append(float(value))
    if summary.get("optimization") not in (None, "none"):
        raise DataFormatError(
            path,
            f"the reference run used optimization {summary['optimization']!r}; CEAG's reference is the run without one",
        )
    for key, value in (expected or {}).items():
        if summary.get(key) != value:
            raise DataFormatError(
                path,
                f"the reference run has {key} {summary.get(key)!r}, this run {value!r}: "
                "CEAG's reference must share the model, tier mapping and seed",
            )
    return np.array(values, dtype=np.float64)
