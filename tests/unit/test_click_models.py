"""DLRM / DIN click models and their batched federated local training: features, shapes,
gradients against a one-client reference, batch-composition invariance, channel slicing,
learnability, and a short FedAvg on MovieLens 100K."""

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cluster.arrays import select_clients
from cluster.fl.families.click.features import (
    build_click_features,
    rows_by_user,
)
from cluster.data.splits import temporal_holdout
from cluster.data.views import click_view
from cluster.fl.families.click.batches import click_auc, client_batch, padded_shape
from cluster.fl.aggregation import empty_update, fedavg, merge_updates
from cluster.fl.server_optimizers.adagrad import Adagrad
from cluster.fl.recipe import LocalRecipe
from cluster.fl.families.click.training import ClickOptions, ClientRows, train_local_click
from cluster.fl.families.click.model import ClickSpec, channel_masks, narrow_params
from cluster.fl.families.click.net import forward, init_params
from cluster.rng import stream
from tests.unit.click_fixtures import toy_click_world

KINDS = ["dlrm", "din"]
_toy = toy_click_world


def _global(spec: ClickSpec, seed: int = 0) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in init_params(spec, torch.Generator().manual_seed(seed)).items()}


# ---------------------------------------------------------------- features


def test_history_is_earlier_train_clicks_of_the_same_user():
    view, holdout, features, _, _ = _toy(0, [12, 30, 7, 25])
    inter = view.interactions
    indptr, order = inter.user_order()
    is_train = np.zeros(len(inter), bool)
    is_train[holdout.train_rows] = True
    rows = np.arange(len(inter))
    pair_row, pair_item, lengths = features.history(rows, max_len=5)
    for u in range(inter.n_users):
        sequence = order[indptr[u] : indptr[u + 1]]
        for position, row in enumerate(sequence):
            earlier = sequence[:position]
            clicks = inter.items[earlier[is_train[earlier] & (view.labels[earlier] > 0)]]
            assert list(pair_item[pair_row == row]) == list(clicks[-5:])  # the 5 most recent, oldest first
            rows_before = is_train[earlier].sum()
            assert features.dense[row, 1] == pytest.approx((len(clicks) + 1) / (rows_before + 5))
            assert features.dense[row, 0] == pytest.approx(np.log1p(len(clicks)) / np.log1p(100))
    assert (lengths == np.minimum(features.prior_clicks, 5)).all()
    # Test rows see every train click of their user and no test label.
    test_rows = holdout.test_rows
    n_train_clicks = np.bincount(inter.users[holdout.train_rows][view.labels[holdout.train_rows] > 0], minlength=inter.n_users)
    assert (features.prior_clicks[test_rows] == n_train_clicks[inter.users[test_rows]]).all()


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("kind", KINDS)
def test_forward_shapes_and_layout(kind):
    _, _, features, indptr, rows = _toy(1, [9, 20, 14])
    spec = ClickSpec.for_features(kind, features, history_len=6)
    params = _global(spec)
    assert {k: v.shape for k, v in params.items()} == spec.shapes()
    assert not any("user" in name for name in params)  # no user id: privacy
    lengths, pairs = padded_shape(spec, features, indptr, rows)
    members = np.flatnonzero(lengths == lengths[0])
    members = members[pairs[members] == pairs[members[0]]]
    padded = client_batch(spec, features, indptr, rows, members, int(lengths[0]), int(pairs[members[0]]))
    batch, labels, mask, counts = padded.inputs, padded.labels, padded.mask, padded.counts
    expanded = {k: torch.from_numpy(v).unsqueeze(0).expand(len(members), *v.shape) for k, v in params.items()}
    logits = forward(spec, expanded, batch)
    assert logits.shape == labels.shape == mask.shape == (len(members), lengths[0])
    assert torch.isfinite(logits).all()
    assert mask.sum(1).tolist() == counts.tolist()


def _dice(x, alpha):
    p = torch.sigmoid(x)
    return p * x + (1 - p) * alpha * x


def _reference_logit(spec, p, features, row):
    """One sample, the obvious way: explicit history, explicit pairs, plain matmuls."""
    user = features.user[row]
    cats = [p[f"emb.{name}"][int(features.user_cats[user, k])] for k, (name, _) in enumerate(spec.cats)]
    item = p["emb.item"][int(features.item[row])]
    _, hist_items, _ = features.history(np.array([row]), spec.history_len)
    hist = p["emb.item"][torch.from_numpy(hist_items)]
    genre = torch.from_numpy(features.item_genres[features.item[row]]) @ p["emb.genre"]
    dense = torch.from_numpy(features.dense[row])
    if spec.kind == "dlrm":
        pooled = hist.mean(0) if len(hist) else torch.zeros(spec.dim)
        bottom = dense
        for k in range(len(spec.bottom_hidden) + 1):
            bottom = torch.relu(bottom @ p[f"bottom.{k}.weight"] + p[f"bottom.{k}.bias"])
        vectors = [*cats, pooled, item, genre, bottom]
        pairs = [vectors[i] @ vectors[j] for i in range(len(vectors)) for j in range(i + 1, len(vectors))]
        h = torch.cat([bottom, torch.stack(pairs)])
        act = torch.relu
    else:
        pooled = torch.zeros(spec.dim)
        if len(hist):
            a = torch.cat([hist, item.expand_as(hist), hist - item, hist * item], dim=1)
            for k in range(len(spec.attention_hidden)):
                a = _dice(a @ p[f"att.{k}.weight"] + p[f"att.{k}.bias"], p[f"att.{k}.alpha"])
            k = len(spec.attention_hidden)
            weights = (a @ p[f"att.{k}.weight"] + p[f"att.{k}.bias"]).squeeze(-1)
            pooled = (weights[:, None] * hist).sum(0) / len(hist)
        h = torch.cat([*cats, pooled, item, genre, dense])
        act = None
    for k in range(len(spec.top_hidden)):
        z = h @ p[f"top.{k}.weight"] + p[f"top.{k}.bias"]
        h = act(z) if act else _dice(z, p[f"top.{k}.alpha"])
    k = len(spec.top_hidden)
    return (h @ p[f"top.{k}.weight"] + p[f"top.{k}.bias"]).reshape(())


def _reference_client(spec, recipe, params, features, rows):
    p = {k: torch.from_numpy(v).clone().requires_grad_() for k, v in params.items()}
    labels = torch.from_numpy(features.label[rows])
    first = None
    for _ in range(recipe.epochs):
        logits = torch.stack([_reference_logit(spec, p, features, r) for r in rows])
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        first = float(loss.detach()) if first is None else first
        grads = torch.autograd.grad(loss, list(p.values()))
        with torch.no_grad():
            for t, g in zip(p.values(), grads):
                t.sub_(recipe.lr_dense * g)
    return first, {k: (p[k].detach() - torch.from_numpy(params[k])).numpy() for k in p}


@pytest.mark.parametrize("kind", KINDS)
def test_batched_training_equals_one_client_reference(kind):
    _, _, features, indptr, rows = _toy(2, [6, 17, 11, 23, 3])
    spec = ClickSpec.for_features(kind, features, history_len=4, attention_hidden=(8, 4), top_hidden=(12,), bottom_hidden=(6,))
    recipe = LocalRecipe.one_rate(0.5, epochs=2)
    params = _global(spec)
    clients = np.array([0, 1, 3, 4])
    sub_indptr, sub_rows = select_clients(indptr, rows, clients)
    result = train_local_click(spec, recipe, params, features, ClientRows(clients, sub_indptr, sub_rows))
    for c in range(len(clients)):
        first, deltas = _reference_client(spec, recipe, params, features, sub_rows[sub_indptr[c] : sub_indptr[c + 1]])
        assert result.loss[c] == pytest.approx(first, rel=1e-5)
        for name, delta in deltas.items():
            np.testing.assert_allclose(result.dense_deltas[name][c], delta, rtol=1e-4, atol=2e-6, err_msg=name)


def _reference_pairwise_delta(spec, params, features, rows, lr):
    """−lr × ∇ of one client's mean softplus(s_nonclick − s_click) over its own pairs."""
    p = {k: torch.from_numpy(v).clone().requires_grad_() for k, v in params.items()}
    logits = torch.stack([_reference_logit(spec, p, features, r) for r in rows])
    clicked = torch.from_numpy(features.label[rows] >= 0.5)
    loss = F.softplus(logits[~clicked][None, :] - logits[clicked][:, None]).mean()
    grads = torch.autograd.grad(loss, list(p.values()), allow_unused=True)
    return {k: np.zeros_like(params[k]) if g is None else (-lr * g).numpy() for k, g in zip(p, grads)}


@pytest.mark.parametrize("kind", KINDS)
def test_pairwise_proxy_delta_is_the_clients_own_pairwise_gradient(kind):
    _, _, features, indptr, rows = _toy(5, [6, 17, 11, 23])
    spec = ClickSpec.for_features(kind, features, history_len=4, attention_hidden=(8, 4), top_hidden=(12,), bottom_hidden=(6,))
    params = _global(spec)
    clients = np.arange(4)
    plain = train_local_click(spec, LocalRecipe.one_rate(0.5, epochs=2), params, features, ClientRows(clients, indptr, rows))
    result = train_local_click(spec, LocalRecipe.one_rate(0.5, epochs=2, proxy_gradient=True), params, features,
                               ClientRows(clients, indptr, rows))
    assert not plain.proxy_deltas
    for name in plain.dense_deltas:  # the update itself is untouched
        assert np.array_equal(result.dense_deltas[name], plain.dense_deltas[name]), name
    checked = 0
    for c in clients:
        labels = features.label[rows[indptr[c] : indptr[c + 1]]]
        if labels.min() == labels.max():
            continue
        checked += 1
        expected = _reference_pairwise_delta(spec, params, features, rows[indptr[c] : indptr[c + 1]], 0.5)
        for name, delta in expected.items():
            np.testing.assert_allclose(result.proxy_deltas[name][c], delta, rtol=1e-4, atol=2e-6, err_msg=name)
    assert checked >= 2


@pytest.mark.parametrize("kind", KINDS)
def test_client_result_does_not_depend_on_its_batch(kind):
    """Bit-for-bit: alone, with companions of its own padded shape, or with everyone."""
    counts = [300, 300, 290, 40, 8, 150, 300, 12]
    _, _, features, indptr, rows = _toy(3, counts, n_items=400)
    spec = ClickSpec.for_features(kind, features, history_len=20)
    recipe = LocalRecipe.one_rate(1.0, epochs=2)
    params = _global(spec)

    def train(clients):
        sub_indptr, sub_rows = select_clients(indptr, rows, np.array(clients))
        return train_local_click(spec, recipe, params, features, ClientRows(np.array(clients), sub_indptr, sub_rows))

    alone = train([0])
    for companions in ([0, 1, 6], [5, 0, 2], list(range(len(counts)))):
        together = train(companions)
        at = companions.index(0)
        assert np.array_equal(together.loss[at], alone.loss[0])
        for name in alone.dense_deltas:
            assert np.array_equal(together.dense_deltas[name][at], alone.dense_deltas[name][0]), name
    merged = merge_updates([train([5, 2]), train([0, 7])], empty_update(spec.shapes()))
    assert merged.clients.tolist() == [0, 2, 5, 7]
    assert np.array_equal(merged.dense_deltas["emb.item"][0], alone.dense_deltas["emb.item"][0])


@pytest.mark.parametrize("kind", KINDS)
def test_short_clients_alone_equal_short_clients_together(kind):
    """Clients of 3-7 samples (padded length 8): alone, torch would reduce their (1, 8) tensors
    along another path than in company and differ in the last bits (2 of these 30 did)."""
    counts = list(np.random.default_rng(0).integers(3, 8, 30))
    _, _, features, indptr, rows = _toy(0, counts, n_items=80)
    spec = ClickSpec.for_features(kind, features, history_len=20, top_hidden=(32,))
    params = _global(spec)

    def train(clients):
        sub_indptr, sub_rows = select_clients(indptr, rows, np.array(clients))
        return train_local_click(spec, LocalRecipe(), params, features, ClientRows(np.array(clients), sub_indptr, sub_rows))

    together = train(list(range(30)))
    for client in range(30):
        alone = train([client])
        for name in alone.dense_deltas:
            assert np.array_equal(alone.dense_deltas[name][0], together.dense_deltas[name][client]), (client, name)


# ---------------------------------------------------------------- channel slicing


def test_channel_masks_narrow_every_hidden_layer_but_the_first():
    _, _, features, _, _ = _toy(4, [5, 5])
    dlrm = channel_masks(ClickSpec.for_features("dlrm", features), 0.25)
    n_in = dlrm["top.0.weight"].shape[0]
    assert dlrm["top.0.weight"].sum(0).tolist() == [n_in] * 64 + [0] * 192
    assert dlrm["top.1.weight"][:, 0].tolist() == [True] * 64 + [False] * 192
    assert all(dlrm[n].all() for n in dlrm if not n.startswith("top."))  # embeddings, bottom MLP whole
    din = channel_masks(ClickSpec.for_features("din", features), 0.0625)
    assert din["att.0.weight"].all() and din["att.0.alpha"].all()  # the first hidden layer stays whole
    assert din["att.1.weight"].sum() == 64 * 1 and din["att.1.alpha"].sum() == 1 and din["att.2.weight"].sum() == 1
    assert din["top.0.weight"].sum() == din["top.0.weight"].shape[0] * 16 and din["top.1.weight"].sum() == 16 and din["top.1.bias"].all()


@pytest.mark.parametrize("kind", KINDS)
def test_narrow_forward_is_the_narrow_model(kind):
    """A full model whose leading channels hold a genuinely narrow model's weights, run at that
    width, computes exactly the narrow model."""
    _, _, features, indptr, rows = _toy(5, [10, 10, 10])
    spec = ClickSpec.for_features(kind, features, history_len=8)
    small = ClickSpec.for_features(kind, features, history_len=8, attention_hidden=(64, 4), top_hidden=(64,))
    full, narrow = _global(spec, seed=1), _global(small, seed=2)
    for name, value in narrow.items():
        full[name][tuple(slice(0, s) for s in value.shape)] = value
    lengths, pairs = padded_shape(spec, features, indptr, rows)
    batch = client_batch(spec, features, indptr, rows, np.arange(3), int(lengths.max()), int(pairs.max())).inputs
    lead = lambda ps: {k: torch.from_numpy(v).unsqueeze(0).expand(3, *v.shape) for k, v in ps.items()}
    sliced = narrow_params(spec, lead(full), 0.25, client_axis=True)
    assert {k: tuple(v.shape[1:]) for k, v in sliced.items()} == small.shapes()
    assert torch.equal(forward(spec, sliced, batch), forward(small, lead(narrow), batch))


@pytest.mark.parametrize("kind", KINDS)
def test_narrow_client_trains_only_its_slice(kind):
    _, _, features, indptr, rows = _toy(6, [20, 20, 31, 9])
    spec = ClickSpec.for_features(kind, features, history_len=8)
    small = ClickSpec.for_features(kind, features, history_len=8, attention_hidden=(64, 2), top_hidden=(32,))
    recipe = LocalRecipe.one_rate(1.0, epochs=2)
    params = _global(spec)
    clients = np.arange(4)
    fractions = np.array([1.0, 0.125, 1.0, 0.125], np.float32)
    result = train_local_click(spec, recipe, params, features, ClientRows(clients, indptr, rows), ClickOptions(fractions))
    masks = channel_masks(spec, 0.125)
    narrow_global = {k: np.ascontiguousarray(v) for k, v in narrow_params(spec, params, 0.125).items()}
    alone = train_local_click(small, recipe, narrow_global, features, ClientRows(clients, indptr, rows))
    for name, mask in masks.items():
        for c in (1, 3):
            assert not result.dense_deltas[name][c][~mask].any(), name
            assert np.array_equal(result.dense_deltas[name][c][tuple(slice(0, s) for s in small.shapes()[name])], alone.dense_deltas[name][c])
        assert result.dense_deltas[name][0].any() or name.endswith("alpha")
    # HeteroFL averaging: an entry only narrow clients lack is the wide clients' average.
    avg = fedavg(result, 0, channel_masks=partial(channel_masks, spec))
    w = result.n_samples[[0, 2]] / result.n_samples[[0, 2]].sum()
    outside = ~masks["top.0.weight"]
    expected = (w[0] * result.dense_deltas["top.0.weight"][0] + w[1] * result.dense_deltas["top.0.weight"][2])[outside]
    np.testing.assert_allclose(avg["top.0.weight"][outside], expected, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- learning
def _fedavg_round(spec, recipe, params, server, features, indptr, rows, clients):
    """Train ``clients``, average their updates and step ``server``: the model and its local
    training alone, as a round of the loop does them."""
    sub_indptr, sub_rows = select_clients(indptr, rows, clients)
    result = train_local_click(spec, recipe, params, features, ClientRows(clients, sub_indptr, sub_rows))
    server.step(params, fedavg(result, 0, channel_masks=partial(channel_masks, spec)))
    return result



@pytest.mark.parametrize("kind", KINDS)
def test_loss_decreases_on_a_learnable_toy(kind):
    _, _, features, indptr, rows = _toy(7, [40] * 16, n_items=80)
    spec = ClickSpec.for_features(kind, features, history_len=10)
    params = _global(spec)
    server = Adagrad(0.1)
    clients = np.arange(16)
    losses = []
    for _ in range(15):
        result = _fedavg_round(spec, LocalRecipe.one_rate(1.0, epochs=1), params, server, features, indptr, rows, clients)
        losses.append(np.average(result.loss, weights=result.n_samples))
    assert losses[-1] < losses[0] - 0.05, losses


def test_fedavg_on_movielens_beats_chance(ml100k):
    """A short in-process FedAvg (client SGD lr 1, server AdaGrad lr 0.1, RF²'s recipe): DLRM's
    AUC on every user's held-out latest ratings is well above 0.5, and DIN learns too."""
    view = click_view(ml100k.interactions, 5.0)
    holdout = temporal_holdout(view.interactions, 0.2)
    features = build_click_features(ml100k, view, holdout.train_rows)
    indptr, rows = rows_by_user(features, holdout.train_rows, ml100k.n_users)
    eligible = np.flatnonzero(np.diff(indptr) > 0)
    for kind, n_rounds, n_clients, floor in (("dlrm", 25, 100, 0.65), ("din", 10, 60, 0.6)):
        spec = ClickSpec.for_features(kind, features, history_len=20)
        params = _global(spec)
        server = Adagrad(0.1)
        rng = stream(0, "click_selection")
        for _ in range(n_rounds):
            clients = np.sort(rng.choice(eligible, size=n_clients, replace=False))
            _fedavg_round(spec, LocalRecipe(), params, server, features, indptr, rows, clients)
        assert click_auc(spec, params, features, holdout.test_rows) > floor, kind
