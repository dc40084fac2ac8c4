"""Every strategy x model kind x optimization class, two rounds in process: a combination the
engine supports trains (finite global model, every kept client aggregated), and one it does not
is refused by the config with a message that says why. ``CAPABILITIES`` is the README's table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster.experiment import build
from cluster.fl.inprocess import train_rounds
from configs import ConfigError, load_config

STRATEGIES = ("fedavg", "ditto", "cali3f")
MODELS = ("gmf", "mlp", "neumf", "dlrm", "din")
# one preset per optimization class (RF² Table 1, and subsample: Exclude Lo's mitigation)
OPTIMIZATIONS = ("none", "exclude-lo", "overselect", "prune-1:2:4", "quant-1:2:8", "quants-1:2:8", "channel-1:2:4",
                 "subsample-lo-1:4")
CLICK_MODELS = ("dlrm", "din")


def refusal(strategy: str, model: str, optimization: str) -> str | None:
    """Why the config refuses the combination (a fragment of its message), or None."""
    if optimization.startswith("channel") and model == "gmf":
        return "GMF has no hidden layer to narrow"
    if optimization.startswith("subsample") and model not in CLICK_MODELS:
        return "'subsample' needs a click model"
    if strategy == "cali3f" and optimization.startswith("channel"):
        return "'cali3f' does not combine with fl.optimization kind 'channel'"
    if strategy == "ditto" and optimization.startswith("channel"):
        return "'ditto' does not combine with fl.optimization kind 'channel'"
    return None


CAPABILITIES = [(s, m, o) for s in STRATEGIES for m in MODELS for o in OPTIMIZATIONS]


def _cfg(cache: Path, strategy: str, model: str, optimization: str, *extra: str):
    recipe = (["fl.client_lr=1.0", "fl.server_optimizer=adagrad", "fl.server_lr=0.1", "model.top_hidden=[16]",
               "model.history_len=10"] if model in CLICK_MODELS else [])
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=150", "data.synthetic.n_items=120", "data.synthetic.target_interactions=3000", "data.n_negatives=20",
        f"model.kind={model}", "model.embedding_dim=4", "model.mlp_layers=[8,4]", f"fl.strategy.kind={strategy}",
        f"fl.optimization={optimization}", "fl.clients_per_round=24", "fl.rounds=2", "fl.overselect=0",
        "fl.strategy.n_clusters=3" if strategy == "cali3f" else "fl.eval_every=1", f"data.cache_dir={cache}", *recipe,
        *extra,
    ])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("capabilities-cache")


@pytest.mark.parametrize("strategy,model,optimization", CAPABILITIES,
                         ids=["-".join(c) for c in CAPABILITIES])
def test_every_combination_trains_or_is_refused_with_a_reason(cache: Path, strategy, model, optimization):
    reason = refusal(strategy, model, optimization)
    if reason is not None:
        with pytest.raises(ConfigError, match=reason):
            _cfg(cache, strategy, model, optimization)
        return
    exp = build(_cfg(cache, strategy, model, optimization))
    server, _, history = train_rounds(exp)
    assert server.round_index == 2
    assert all(np.isfinite(v).all() for v in server.params.values())
    for record in history:
        assert record["aggregated"] == record["selected"] - record["dropped"] > 0
    if optimization == "exclude-lo":
        assert all(record["selected_low"] == 0 for record in history)


UPLOAD_CASES = [("cali3f", "neumf", "quant-1:2:8"), ("ditto", "gmf", "prune-1:2:4"), ("fedavg", "din", "quant-1:2:8")]


@pytest.mark.parametrize("upload", ["dense", "padded"])
@pytest.mark.parametrize("strategy,model,optimization", UPLOAD_CASES, ids=["-".join(c) for c in UPLOAD_CASES])
def test_every_model_family_trains_with_every_upload(cache: Path, strategy, model, optimization, upload):
    exp = build(_cfg(cache, strategy, model, optimization, f"fl.upload={upload}"))
    server, _, history = train_rounds(exp)
    assert server.round_index == 2 and all(np.isfinite(v).all() for v in server.params.values())
    touched = build(_cfg(cache, strategy, model, optimization))
    _, _, touched_history = train_rounds(touched)
    for record, plain in zip(history, touched_history):
        assert record["upload_rows"] > plain["upload_rows"], "dense and padded send more rows than touched"
