"""CEAG's reference side: the unoptimized model's per-tier train accuracy A_t(β_0), given in the
config or read from the summary.json of an fl_sim run of the same seed and tier mapping."""

from __future__ import annotations

import json
import math

import numpy as np

from cluster.data.errors import DataFormatError
from configs.schema import FairnessConfig


def reference_accuracy(cfg: FairnessConfig, tier_names: tuple[str, ...]) -> np.ndarray:
    """(T,) in ``tier_names`` order; DataFormatError naming the file and key when a run's
    summary lacks them (e.g. an NCF run, or one from before train accuracy was recorded)."""
    if cfg.reference_accuracy is not None:
        return np.array([cfg.reference_accuracy[name] for name in tier_names], dtype=np.float64)
    path = cfg.reference_run / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(path, "no summary.json: reference_run must be a finished fl_sim run folder") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataFormatError(path, f"cannot read the run summary: {exc}") from None
    train = summary.get("final_train") or {}
    values = []
    for name in tier_names:
        value = train.get(f"acc_train_{name}")
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataFormatError(path, f"final_train.acc_train_{name} missing or not a number: the reference must "
                                        "be a click-model run (dlrm, din) with the same tiers")
        values.append(float(value))
    if summary.get("optimization") not in (None, "none"):
        raise DataFormatError(path, f"the reference run used optimization {summary['optimization']!r}; "
                                    "CEAG's reference is the run without one")
    return np.array(values, dtype=np.float64)
