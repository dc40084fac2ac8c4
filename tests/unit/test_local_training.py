"""Batched local training must equal, client by client, a plain one-client-at-a-time SGD."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cluster.fl.families.ncf.training import ClientPositives, train_local
from cluster.fl.fixed_batches import padded_length
from cluster.fl.recipe import LocalRecipe
from cluster.fl.families.ncf.negatives import RoundKey, hashed_negatives
from cluster.fl.families.ncf.model import NCFSpec, init_users
from cluster.fl.families.ncf.net import init_global

N_ITEMS = 40


def _reference_client(spec, recipe, params, users, client, positives, seed, round_index):
    """One client, written the obvious way: explicit samples, explicit per-parameter SGD."""
    pos_keys = np.sort(client * N_ITEMS + positives.astype(np.int64))
    negatives = hashed_negatives(RoundKey(seed, round_index), np.array([client]), np.array([len(positives) * recipe.negatives_per_positive]),
                                 pos_keys, N_ITEMS)
    items = torch.from_numpy(np.concatenate([positives, negatives]).astype(np.int64))
    labels = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))])
    p = {k: torch.from_numpy(v).clone().requires_grad_() for k, v in params.items()}
    u = {k: torch.from_numpy(v).clone().requires_grad_() for k, v in users.items()}
    start = {k: v.detach().clone() for k, v in p.items()}
    for _ in range(recipe.epochs):
        feats = []
        if spec.kind in ("gmf", "neumf"):
            feats.append(u["user_gmf"] * p["item_gmf"][items])
        if spec.uses_mlp:
            v = p["item_mlp"][items]
            h = torch.cat([u["user_mlp"].expand_as(v), v], dim=1)
            for k in range(len(spec.mlp_layers)):
                h = torch.relu(h @ p[f"mlp.{k}.weight"] + p[f"mlp.{k}.bias"])
            feats.append(h)
        logits = torch.cat(feats, dim=1) @ p["out.weight"] + p["out.bias"]
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
        if recipe.loss_reduction == "mean":
            loss = loss / len(labels)
        names = list(p) + list(u)
        tensors = list(p.values()) + list(u.values())
        grads = torch.autograd.grad(loss, tensors)
        with torch.no_grad():
            for name, t, g in zip(names, tensors, grads):
                lr = recipe.lr_item if name.startswith("item") else recipe.lr_user if name.startswith("user") else recipe.lr_dense
                if name in start:  # FedProx's μ(w − w_received) on the shared model, not the private vector
                    g = g + recipe.prox_mu * (t - start[name])
                t.sub_(lr * g)
    return {k: (p[k] - start[k]).detach().numpy() for k in p}, {k: v.detach().numpy() for k, v in u.items()}


@pytest.mark.parametrize("kind", ["gmf", "mlp", "neumf"])
@pytest.mark.parametrize("reduction,prox_mu", [("mean", 0.0), ("sum", 0.0), ("mean", 0.8)],
                         ids=["mean", "sum", "fedprox"])
def test_batched_equals_per_client_reference(kind, reduction, prox_mu):
    spec = NCFSpec(kind, 4, (8, 4), N_ITEMS)
    recipe = LocalRecipe(epochs=3, lr_dense=0.3, lr_item=0.7, lr_user=0.5, negatives_per_positive=2, loss_reduction=reduction,
                         prox_mu=prox_mu)
    params = {k: v.numpy() for k, v in init_global(spec, torch.Generator().manual_seed(0)).items()}
    clients = np.array([3, 7, 11])
    rng = np.random.default_rng(0)
    positives = [np.sort(rng.choice(N_ITEMS, size=n, replace=False)).astype(np.int32) for n in (2, 9, 5)]
    indptr = np.r_[0, np.cumsum([len(p) for p in positives])]
    users_all = init_users(spec, 12, seed=1)
    users = {t: v[clients] for t, v in users_all.items()}
    result, new_users = train_local(spec, recipe, params, users, ClientPositives(clients, indptr, np.concatenate(positives)),
                                    RoundKey(seed=5, round_index=2))

    for row, client in enumerate(clients):
        expected, expected_users = _reference_client(
            spec, recipe, params, {t: v[client] for t, v in users_all.items()}, client, positives[row], 5, 2)
        mine = result.row_owner == row
        for table in spec.item_tables:
            got = np.zeros((N_ITEMS, spec.dim), np.float32)
            got[result.item_ids[mine]] = result.item_deltas[table][mine]
            np.testing.assert_allclose(got, expected[table], rtol=1e-4, atol=1e-6)
        for name in spec.dense_shapes():
            np.testing.assert_allclose(result.dense_deltas[name][row], expected[name], rtol=1e-4, atol=1e-6)
        for table in spec.user_tables:
            np.testing.assert_allclose(new_users[table][row], expected_users[table], rtol=1e-4, atol=1e-6)
    assert result.n_samples.tolist() == [2, 9, 5]
    assert (np.diff(result.row_owner) >= 0).all()


@pytest.mark.parametrize("kind", ["gmf", "neumf"])
def test_client_result_does_not_depend_on_batch_companions(kind):
    spec = NCFSpec(kind, 4, (8, 4), N_ITEMS)
    recipe = LocalRecipe(2, 0.5, 0.5, 0.5, 3)
    params = {k: v.numpy() for k, v in init_global(spec, torch.Generator().manual_seed(1)).items()}
    users_all = init_users(spec, 10, seed=2)
    rng = np.random.default_rng(1)
    positives = {c: np.sort(rng.choice(N_ITEMS, size=n, replace=False)).astype(np.int32) for c, n in zip(range(10), rng.integers(1, 12, 10))}

    def run(clients):
        clients = np.asarray(clients)
        indptr = np.r_[0, np.cumsum([len(positives[c]) for c in clients])]
        items = np.concatenate([positives[c] for c in clients])
        res, users = train_local(spec, recipe, params, {t: v[clients] for t, v in users_all.items()},
                                 ClientPositives(clients, indptr, items), RoundKey(0, 0))
        row = int(np.flatnonzero(clients == 4)[0])
        return res.item_deltas["item_gmf"][res.row_owner == row], res.dense_deltas["out.weight"][row], users["user_gmf"][row]

    alone, crowd = run([4]), run([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    for a, b in zip(alone, crowd):
        assert np.array_equal(a, b), "bit-identical whatever the companions"


def test_padded_length_is_a_power_of_two_ladder():
    assert padded_length(np.array([1, 8, 9, 16, 17, 1000])).tolist() == [8, 8, 16, 16, 32, 1024]
