"""Every strategy x model kind x optimization class, two rounds in process: a combination the
engine supports trains (finite global model, every kept client aggregated) and does what its
optimization says, against the same cell without one; one it does not support is refused by the
config with a message that says why. ``CAPABILITIES`` is the table in docs/concepts/strategies.md.

The first round is where a cell and its reference compare client by client: with the same seed
both select the same clients (selection and latency draws have streams of their own) and train
them from the same initial model, so whatever differs in what the server receives, or in what the
clock charges, is the optimization's doing."""

from __future__ import annotations

import math
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from cluster.fl.experiment import build
from cluster.fl.inprocess import round_loop
from cluster.fl.selection import RoundPlan
from cluster.fl.types import ClientUpdate
from cluster.fl.families.click.model import is_embedding
import cluster.fl.strategies as strategies_pkg
from cluster.fl.families import families
from configs import ConfigError, load_config
from configs.presets import OPTIMIZATION_PRESETS

# Every registered plug-in: a new strategy folder or model family enters the matrix by itself.
STRATEGIES = tuple(m.name for m in pkgutil.iter_modules(strategies_pkg.__path__) if m.ispkg)
MODELS = tuple(kind for family in families() for kind in family.model_kinds)
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
    if strategy == "scaffold" and optimization.startswith("channel"):
        return "'scaffold' does not combine with fl.optimization kind 'channel'"
    return None


CAPABILITIES = [(s, m, o) for s in STRATEGIES for m in MODELS for o in OPTIMIZATIONS]


def _cfg(cache: Path, strategy: str, model: str, optimization: str, *extra: str):
    recipe = (["fl.client_lr=1.0", "fl.server_optimizer=adagrad", "fl.server_lr=0.1", "model.top_hidden=[16]",
               "model.history_len=10"] if model in CLICK_MODELS else [])
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=150", "data.synthetic.n_items=120", "data.synthetic.target_interactions=3000", "data.n_negatives=20",
        f"model.kind={model}", "model.embedding_dim=4", "model.mlp_layers=[8,4]", f"fl.strategy.kind={strategy}",
        f"fl.optimization={optimization}", "fl.clients_per_round=24", "fl.rounds=2", "fl.overselect=0",
        # one local step leaves FedProx's term at 0, and SCAFFOLD's correction acts from the second
        *(["fl.local_epochs=2"] if strategy in ("fedprox", "scaffold") else []),
        "fl.strategy.n_clusters=3" if strategy == "cali3f" else "fl.eval_every=1", f"data.cache_dir={cache}", *recipe,
        *extra,
    ])


# A level at which a kind leaves a tier as it is, as the presets spell it.
NEUTRAL = {"prune": 0.0, "quant": 32, "quants": 32, "channel": 1.0, "subsample": 1.0}
PRUNE_SEED_BYTES = 8  # what a pruned upload adds to its kept entries: the seed of its mask


@dataclass
class Run:
    """Two rounds as the server saw them: each round's plan, the kept clients' uploads merged
    (what the server averages), and its record; then the global model."""

    tier_of_user: np.ndarray
    tier_names: tuple[str, ...]
    n_items: Optional[int]  # NCF: rows of its sparsely sent item tables; click models: None
    params: dict[str, np.ndarray]
    round_index: int
    history: list[dict]
    plans: list[RoundPlan]
    uploads: list[ClientUpdate]


def _train(cfg) -> Run:
    exp = build(cfg)
    loop = round_loop(exp)
    plans, uploads = [], []
    plan_round, train = loop.server.plan_round, loop.pool.train

    def recorded_plan():
        plans.append(plan_round())
        return plans[-1]

    def recorded_train(round_index, tasks, params):
        outcome = train(round_index, tasks, params)
        uploads.append(exp.ops.merge(outcome.results))
        return outcome

    loop.server.plan_round, loop.pool.train = recorded_plan, recorded_train
    for _ in range(cfg.fl.rounds):
        loop.run_round()
    return Run(exp.fleet.tier_of_user, exp.fleet.tiers.names, getattr(exp.spec, "n_items", None) if exp.spec.user_tables else None,
               loop.server.params, loop.server.round_index, loop.history, plans, uploads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("capabilities-cache")


@pytest.fixture(scope="module")
def runs(cache: Path):
    """Runs kept by their settings, so a cell trains once however many checks use it as their
    reference ("none" comes first in each strategy x model, so the matrix trains nothing twice)."""
    done: dict[tuple, Run] = {}

    def run(strategy: str, model: str, optimization: str, *extra: str) -> Run:
        key = (strategy, model, optimization, *extra)
        if key not in done:
            done[key] = _train(_cfg(cache, *key))
        return done[key]

    return run


def _kind(optimization: str) -> str:
    return OPTIMIZATION_PRESETS[optimization]["kind"]


def _level(run: Run, clients: np.ndarray, optimization: str) -> np.ndarray:
    """(n,) each client's level under the preset (its kind's neutral one where it leaves a tier be)."""
    kind = _kind(optimization)
    levels = OPTIMIZATION_PRESETS[optimization].get("levels", {})
    return np.array([levels.get(run.tier_names[t], NEUTRAL[kind]) for t in run.tier_of_user[clients]])


def _optimized(run: Run, clients: np.ndarray, optimization: str) -> np.ndarray:
    """(n,) mask of the clients whose tier the preset acts on."""
    return _level(run, clients, optimization) != NEUTRAL[_kind(optimization)]


def _sent(update: ClientUpdate, c: int) -> np.ndarray:
    """Every value the client at position ``c`` of ``update`` sent, as one vector."""
    parts = [update.dense_deltas[n][c].ravel() for n in sorted(update.dense_deltas)]
    parts += [update.item_deltas[t][update.row_owner == c].ravel() for t in sorted(update.item_deltas)]
    for extra in (update.cluster_dense_deltas, update.user_deltas, update.proxy_deltas):
        parts += [extra[n][c].ravel() for n in sorted(extra or {})]
    return np.concatenate(parts)


def _dense_part(update: ClientUpdate, c: int) -> np.ndarray:
    """The client's non-embedding weights (its MLPs), as one vector."""
    return np.concatenate([update.dense_deltas[n][c].ravel() for n in sorted(update.dense_deltas) if not is_embedding(n)])


def _rows_sent(run: Run, update: ClientUpdate, c: int) -> dict[str, np.ndarray]:
    """The embedding rows the client sent, per table: an NCF upload names them; a click model
    sends whole tables, where a row carries something only if it was sent (unsent rows are exact
    zeros, and a sent row is one the client read, a decoy or, dense, any)."""
    if run.n_items is not None:
        return {"item": update.item_ids[update.row_owner == c]}
    return {n: np.flatnonzero(np.abs(v[c]).sum(axis=1)) for n, v in update.dense_deltas.items() if is_embedding(n)}


def _first_round(run: Run, ref: Run) -> tuple[RoundPlan, RoundPlan, ClientUpdate, ClientUpdate]:
    """The first round's plans and uploads of a cell and its reference, which must have selected,
    kept and uploaded the same clients for them to compare."""
    plan, ref_plan, update, ref_update = run.plans[0], ref.plans[0], run.uploads[0], ref.uploads[0]
    assert np.array_equal(plan.selected, ref_plan.selected) and np.array_equal(plan.kept, ref_plan.kept)
    assert np.array_equal(update.clients, ref_update.clients)
    return plan, ref_plan, update, ref_update


def _check_cheaper(plan: RoundPlan, ref_plan: RoundPlan, faster: np.ndarray, upload_shrinks: bool = True,
                   overhead_bytes: float = 0.0) -> None:
    """The clock charges the ``faster`` selected clients less than the reference did (their bytes
    up too when ``upload_shrinks``) and the others as much, give or take ``overhead_bytes`` of
    their upload: the latency draws are shared."""
    assert faster.any() and (~faster).any()
    if upload_shrinks:
        assert (plan.upload_bytes[faster] < ref_plan.upload_bytes[faster]).all(), "the optimized tiers upload fewer bytes"
    else:
        assert np.array_equal(plan.upload_bytes[faster], ref_plan.upload_bytes[faster]), "their upload is unchanged"
    extra = plan.upload_bytes[~faster] - ref_plan.upload_bytes[~faster]
    assert ((extra >= 0) & (extra <= overhead_bytes)).all(), "the other tiers upload what they would"
    assert (plan.latency_s[faster] <= ref_plan.latency_s[faster]).all()
    assert plan.latency_s[faster].sum() < ref_plan.latency_s[faster].sum(), "the optimized tiers finish sooner"
    same = extra == 0
    assert np.array_equal(plan.latency_s[~faster][same], ref_plan.latency_s[~faster][same])


def _check_compressed(run: Run, ref: Run, optimization: str) -> None:
    """The server reconstructs something else than the float32 upload for the compressed tiers'
    clients only, and the clock charges them fewer bytes."""
    kind = _kind(optimization)
    plan, ref_plan, update, ref_update = _first_round(run, ref)
    compressed = _optimized(run, update.clients, optimization)
    assert compressed.any() and (~compressed).any()
    for c, squeezed in enumerate(compressed):
        sent, plain = _sent(update, c), _sent(ref_update, c)
        if not squeezed:
            assert np.array_equal(sent, plain), "an uncompressed tier's upload is the float32 one"
            continue
        assert not np.array_equal(sent, plain), f"client {update.clients[c]}'s upload is not compressed"
        if kind == "prune":
            assert np.count_nonzero(sent) < np.count_nonzero(plain), "pruning zeroes entries"
        if kind == "quants":
            assert not sent[plain == 0].any(), "QuantS keeps a zero exactly zero"
    # A prune run's plan charges the mask's seed to an unpruned tier's clients too, which send no mask.
    _check_cheaper(plan, ref_plan, _optimized(run, plan.selected, optimization),
                   overhead_bytes=PRUNE_SEED_BYTES if kind == "prune" else 0.0)


def _check_rescaled(cache: Path, run: Run, strategy: str, model: str, optimization: str) -> None:
    """``rescale_pruned`` multiplies the kept entries by 1/(1 - share), so each pruned tier's
    reconstructed upload is the plain one's, scaled: the same entries kept (the masks come from
    the same streams), every one of them larger. The unpruned tier's stays as it is."""
    rescaled = _train(_cfg(cache, strategy, model, optimization, "fl.optimization.rescale_pruned=true", "fl.rounds=1"))
    plan, ref_plan, update, plain_update = _first_round(rescaled, run)
    share = _level(run, update.clients, optimization)
    assert (share > 0).any()
    for c, rate in enumerate(share):
        sent, plain = _sent(update, c), _sent(plain_update, c)
        if rate == 0:
            assert np.array_equal(sent, plain)
            continue
        assert np.array_equal(sent != 0, plain != 0), f"client {update.clients[c]}'s mask moved"
        np.testing.assert_allclose(sent, plain / (1.0 - rate), rtol=1e-6, atol=0,
                                   err_msg=f"client {update.clients[c]}'s pruned upload is not rescaled")
    assert np.array_equal(plan.upload_bytes, ref_plan.upload_bytes), "rescaling costs no bytes"


def _check_channel(run: Run, ref: Run, optimization: str) -> None:
    """The narrowed tiers' clients train and upload their width's share of the dense part (the
    widths go with the upload, for HeteroFL's masked average); the whole-width tier's uploads
    are the reference's."""
    plan, ref_plan, update, ref_update = _first_round(run, ref)
    width = _level(run, update.clients, optimization)
    assert ref_update.fractions is None and update.fractions is not None, "the narrowed clients' widths travel"
    assert np.array_equal(update.fractions, width.astype(np.float32))
    for c, w in enumerate(width):
        if w < 1.0:
            assert np.count_nonzero(_dense_part(update, c)) < np.count_nonzero(_dense_part(ref_update, c))
        else:
            assert np.array_equal(_sent(update, c), _sent(ref_update, c))
    _check_cheaper(plan, ref_plan, _optimized(run, plan.selected, optimization))


def _check_subsampled(run: Run, ref: Run, optimization: str) -> None:
    """The slow tier's clients train on ⌈share·n⌉ of their n samples (at least one); they still
    upload what they would, so only their compute, not their bytes, is cheaper."""
    plan, ref_plan, update, ref_update = _first_round(run, ref)
    share = _level(run, update.clients, optimization)
    expected = np.maximum(1, np.ceil(share * ref_update.n_samples)).astype(np.int64)
    assert np.array_equal(update.n_samples, np.where(share < 1, expected, ref_update.n_samples))
    assert (update.n_samples < ref_update.n_samples).any()
    _check_cheaper(plan, ref_plan, _optimized(run, plan.selected, optimization), upload_shrinks=False)


def _check_excluded(run: Run, ref: Run, optimization: str) -> None:
    """An excluded tier's clients are never selected, so never trained; the reference has some."""
    excluded = [run.tier_names.index(t) for t in OPTIMIZATION_PRESETS[optimization]["excluded_tiers"]]
    assert any(np.isin(ref.tier_of_user[p.selected], excluded).any() for p in ref.plans)
    for plan, update in zip(run.plans, run.uploads):
        assert not np.isin(run.tier_of_user[plan.selected], excluded).any()
        assert not np.isin(run.tier_of_user[update.clients], excluded).any()
    for record in run.history:
        assert all(record[f"selected_{run.tier_names[t]}"] == 0 for t in excluded)


def _check_overselected(run: Run, ref: Run, optimization: str) -> None:
    """⌈(1 + x)·n⌉ clients are selected and the n fastest kept: every dropped one is at least as
    slow as every kept one. The reference selects n and keeps them all."""
    n = len(ref.plans[0].selected)
    selected = math.ceil(n * (1 + OPTIMIZATION_PRESETS[optimization]["overselect"]) - 1e-9)
    assert selected > n
    for plan, record in zip(run.plans, run.history):
        assert len(plan.selected) == selected and plan.kept.sum() == n
        assert plan.latency_s[~plan.kept].min() >= plan.latency_s[plan.kept].max(), "the slowest are dropped"
        assert record["selected"] == selected and record["dropped"] == selected - n
    assert all(plan.kept.all() for plan in ref.plans)


CHECKS = {"prune": _check_compressed, "quant": _check_compressed, "quants": _check_compressed,
          "channel": _check_channel, "subsample": _check_subsampled, "exclude": _check_excluded,
          "overselect": _check_overselected}


@pytest.mark.parametrize("strategy,model,optimization", CAPABILITIES,
                         ids=["-".join(c) for c in CAPABILITIES])
def test_every_combination_trains_or_is_refused_with_a_reason(cache: Path, runs, strategy, model, optimization):
    reason = refusal(strategy, model, optimization)
    if reason is not None:
        with pytest.raises(ConfigError, match=reason):
            _cfg(cache, strategy, model, optimization)
        return
    run = runs(strategy, model, optimization)
    assert run.round_index == 2
    assert all(np.isfinite(v).all() for v in run.params.values())
    for record in run.history:
        assert record["aggregated"] == record["selected"] - record["dropped"] > 0
    kind = _kind(optimization)
    if kind == "none":
        return
    CHECKS[kind](run, runs(strategy, model, "none"), optimization)
    if kind == "prune":
        _check_rescaled(cache, run, strategy, model, optimization)


UPLOAD_CASES = [("cali3f", "neumf", "quant-1:2:8"), ("ditto", "gmf", "prune-1:2:4"), ("fedavg", "din", "quant-1:2:8")]


def _rows_of(run: Run, update: ClientUpdate, c: int) -> int:
    return sum(len(ids) for ids in _rows_sent(run, update, c).values())


@pytest.mark.parametrize("upload", ["dense", "padded"])
@pytest.mark.parametrize("strategy,model,optimization", UPLOAD_CASES, ids=["-".join(c) for c in UPLOAD_CASES])
def test_every_model_family_trains_with_every_upload(runs, strategy, model, optimization, upload):
    """Against touched uploads (the default): dense sends every row of every table, with no row
    ids, so the clock charges one size per tier; padded sends the touched rows among decoys, which
    leave the touched rows' values alone. Untouched rows a dense upload sends are exact zeros
    unless Quant moves them."""
    run = runs(strategy, model, optimization, f"fl.upload={upload}")
    touched = runs(strategy, model, optimization)
    assert run.round_index == 2 and all(np.isfinite(v).all() for v in run.params.values())
    plan, ref_plan, update, ref_update = _first_round(run, touched)
    compressed = _optimized(run, update.clients, optimization)
    tiers = run.tier_of_user[plan.selected]
    if upload == "dense":
        for tier in np.unique(tiers):
            assert len(np.unique(plan.upload_bytes[tiers == tier])) == 1, "a dense upload's size is the tier's, not the client's"
        assert len(np.unique(ref_plan.upload_bytes)) > len(np.unique(tiers))
    else:
        assert (plan.upload_bytes >= ref_plan.upload_bytes).all() and plan.upload_bytes.sum() > ref_plan.upload_bytes.sum()
    for c, squeezed in enumerate(compressed):
        rows, ref_rows = _rows_sent(run, update, c), _rows_sent(touched, ref_update, c)
        assert all(np.isin(ref_rows[t], rows[t]).all() for t in rows), "every touched row is sent"
        if upload == "dense" and run.n_items is not None:
            assert np.array_equal(rows["item"], np.arange(run.n_items)), "a dense NCF upload sends every item row"
        if upload == "dense" and run.n_items is None:
            moved = squeezed and _kind(optimization) == "quant"
            assert (_rows_of(run, update, c) > _rows_of(touched, ref_update, c)) == moved, \
                "an untouched row stays zero unless Quant moves it"
        if upload == "padded":
            n_touched = len(ref_rows["item"]) if run.n_items is not None else None
            if n_touched is not None:  # pad_ratio 1: as many decoys as touched rows, while untouched ones last
                assert len(rows["item"]) == n_touched + min(n_touched, run.n_items - n_touched)
        if not squeezed:
            _check_real_rows_kept(run, update, ref_update, c)
    if upload == "padded":
        assert sum(_rows_of(run, update, c) for c in range(len(update.clients))) > \
               sum(_rows_of(touched, ref_update, c) for c in range(len(update.clients)))
    for record, plain in zip(run.history, touched.history):
        assert record["upload_rows"] > plain["upload_rows"], "dense and padded send more rows than touched"


def _check_real_rows_kept(run: Run, update: ClientUpdate, ref_update: ClientUpdate, c: int) -> None:
    """An uncompressed client sends its touched rows' values and its dense part as a touched upload
    does; rows beyond them carry no update (dense: zeros) or a decoy's noise (padded)."""
    assert np.array_equal(_dense_part(update, c), _dense_part(ref_update, c))
    if run.n_items is not None:
        mine, ref_mine = update.row_owner == c, ref_update.row_owner == c
        real = np.isin(update.item_ids[mine], ref_update.item_ids[ref_mine])
        for table, rows in update.item_deltas.items():
            assert np.array_equal(rows[mine][real], ref_update.item_deltas[table][ref_mine])
        return
    for name, table in update.dense_deltas.items():
        if is_embedding(name):
            sent = np.flatnonzero(np.abs(ref_update.dense_deltas[name][c]).sum(axis=1))
            assert np.array_equal(table[c][sent], ref_update.dense_deltas[name][c][sent])


SAME_MODEL_CASES = [("fedavg", "dlrm", "none"), ("ditto", "neumf", "exclude-lo"), ("cali3f", "din", "overselect")]


@pytest.mark.parametrize("strategy,model,optimization", SAME_MODEL_CASES, ids=["-".join(c) for c in SAME_MODEL_CASES])
def test_without_a_compressor_dense_and_touched_uploads_train_the_same_model(runs, strategy, model, optimization):
    """A row a client did not touch carries a zero update, which averages as a row not sent: the
    two uploads differ only in what the clock charges."""
    dense, touched = runs(strategy, model, optimization, "fl.upload=dense"), runs(strategy, model, optimization)
    assert dense.round_index == touched.round_index == 2
    assert dense.params.keys() == touched.params.keys()
    assert all(np.array_equal(dense.params[n], touched.params[n]) for n in dense.params)
    assert not all(np.array_equal(a.upload_bytes, b.upload_bytes) for a, b in zip(dense.plans, touched.plans))


SERVER_OPTIMIZERS = ("momentum", "adagrad", "adam", "yogi")


@pytest.mark.parametrize("server_optimizer", SERVER_OPTIMIZERS)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", ("gmf", "dlrm"))
def test_every_server_optimizer_trains_with_every_strategy_and_family(runs, server_optimizer, strategy, model):
    """The server optimizer is orthogonal to the strategy: each pair trains two rounds to a finite
    model, and the model differs from the one server SGD gives (the optimizer does its step)."""
    run = runs(strategy, model, "none", f"fl.server_optimizer={server_optimizer}")
    sgd = runs(strategy, model, "none", "fl.server_optimizer=sgd")
    assert run.round_index == 2 and all(np.isfinite(v).all() for v in run.params.values())
    assert any(not np.array_equal(run.params[name], sgd.params[name]) for name in run.params)


@pytest.mark.parametrize("model", MODELS)
def test_fedprox_at_mu_0_is_fedavg_bit_for_bit_and_above_it_holds_clients_nearer_the_global_model(runs, model):
    """FedProx's cells train two local epochs; at μ = 0 its proximal term adds nothing, so the
    global model and every record equal FedAvg's with the same epochs. At μ > 0 each kept
    client's dense update is smaller than under FedAvg (the term pulls toward the received model)."""
    fedavg = runs("fedavg", model, "none", "fl.local_epochs=2")
    at_zero = runs("fedprox", model, "none", "fl.strategy.mu=0")
    for name, value in fedavg.params.items():
        assert np.array_equal(at_zero.params[name], value), name
    assert [{k: v for k, v in r.items() if not k.endswith("_s") or k.startswith("sim_")} for r in at_zero.history] == \
        [{k: v for k, v in r.items() if not k.endswith("_s") or k.startswith("sim_")} for r in fedavg.history]
    largest_rate = 1.0 if model in CLICK_MODELS else 3.0 * 100  # client_lr (× item_lr_scale for NCF's item rows)
    pulled = runs("fedprox", model, "none", f"fl.strategy.mu={1 / largest_rate}")
    free, held = fedavg.uploads[0], pulled.uploads[0]
    assert np.array_equal(free.clients, held.clients)
    norm = lambda update: sum(float(np.abs(d).sum()) for d in update.dense_deltas.values())  # noqa: E731
    assert norm(held) < norm(free)


def test_a_fedprox_mu_that_would_overshoot_is_refused_naming_the_rate(cache: Path):
    with pytest.raises(ConfigError, match=r"fl.client_lr × fl.item_lr_scale = 300\).*mu < 0.00667"):
        _cfg(cache, "fedprox", "gmf", "none", "fl.strategy.mu=0.01")


CEAG_CASES = [(s, m) for s in STRATEGIES for m in ("gmf", "dlrm")]


@pytest.mark.parametrize("strategy,model", CEAG_CASES, ids=["-".join(c) for c in CEAG_CASES])
def test_ceag_is_a_layer_every_strategy_serving_one_global_model_takes(cache: Path, runs, strategy, model):
    """CEAG (``fl.fairness``) composes with the strategy: two rounds of each with a pruned low
    tier, its multipliers and gaps in every record; a strategy that serves each client its own
    model is refused with the reason."""
    measure = "accuracy" if model in CLICK_MODELS else "pairwise"
    # A reference far above the others for the low tier, and rings small enough to fill in a round,
    # so its multiplier steps from the first round.
    ceag = (f"fl.fairness={{kind: ceag, measure: {measure}, epsilon: 0, buffer_size: 10, "
            "reference_accuracy: {low: 0.99, mid: 0.01, high: 0.01}}")
    if strategy in ("ditto", "cali3f"):
        with pytest.raises(ConfigError, match="needs a strategy that serves one global model"):
            _cfg(cache, strategy, model, "prune-1:2:4", ceag)
        return
    run = runs(strategy, model, "prune-1:2:4", ceag)
    assert run.round_index == 2 and all(np.isfinite(v).all() for v in run.params.values())
    assert all(r["lambda_low"] > 0 for r in run.history), "the low tier's constraint binds"
    plain = runs(strategy, model, "prune-1:2:4")
    assert any(not np.array_equal(run.params[n], plain.params[n]) for n in run.params), "its weights reach the model"
