"""The click models' hand-written kernel (``families/click/kernel.py``) and its one-client loop
(``cluster/fl/client_sgd.py``): its gradients equal autograd's through ``net.forward``, its
training equals the batched ``local_sgd`` loop for every recipe variant (mean or sum, several
epochs, FedProx, SCAFFOLD's correction, CEAG's proxy, narrow widths, Ditto), and a client's
bits never depend on which clients train beside it, at which widths, or in what order."""

import numpy as np
import pytest
import torch

from cluster.arrays import select_clients
from cluster.fl.client_sgd import Anchor, RowGradient, client_sgd
from cluster.fl.families.click.batches import client_batch, padded_shape
from cluster.fl.families.click.kernel import backward, forward
from cluster.fl.families.click.model import ClickSpec, channel_slices, is_embedding, narrow_params
from cluster.fl.families.click.net import forward as net_forward
from cluster.fl.families.click.net import initial_params
from cluster.fl.families.click.samples import client_samples
from cluster.fl.families.click.training import ClickOptions, ClientRows, click_model, train_local_click
from cluster.fl.local_sgd import ParamGroups, Proximal, Targets, local_sgd
from cluster.fl.recipe import LocalRecipe
from tests.unit.click_fixtures import toy_click_world

KINDS = ["dlrm", "din"]
COUNTS = [6, 17, 11, 23, 3, 40, 1, 29]


@pytest.fixture(scope="module")
def world():
    _, _, features, indptr, rows = toy_click_world(11, COUNTS, n_items=50)
    return features, indptr, rows


def _spec(kind, features, **overrides):
    shapes = dict(history_len=6, attention_hidden=(8, 4), top_hidden=(12,), bottom_hidden=(6,))
    return ClickSpec.for_features(kind, features, **(shapes | overrides))


def _padded(spec, features, rows):
    indptr = np.array([0, len(rows)])
    lengths, pairs = padded_shape(spec, features, indptr, rows)
    return client_batch(spec, features, indptr, rows, np.array([0]), int(lengths[0]), int(pairs[0]))


def _torch_client(spec, recipe, params, features, rows, fraction=1.0, proximal=None, correction=None, dense_only=False):
    """One client through the batched autograd loop (``local_sgd`` over ``net.forward``) on its
    padded batch: (first step, deltas of the trained tensors)."""
    batch = _padded(spec, features, rows)
    start = narrow_params(spec, {n: torch.from_numpy(v) for n, v in params.items()}, fraction)
    p = {n: v.unsqueeze(0).clone() for n, v in start.items()}
    trained = {n: t.requires_grad_() for n, t in p.items() if not (dense_only and is_embedding(n))}
    groups = ParamGroups(item={n: t for n, t in trained.items() if is_embedding(n)},
                         dense={n: t for n, t in trained.items() if not is_embedding(n)})
    first = local_sgd(recipe, groups, lambda: net_forward(spec, p, batch.inputs),
                      Targets(batch.labels, batch.mask, torch.tensor([float(len(rows))])), proximal, correction)
    return first, {n: (t.detach()[0] - start[n]).numpy() for n, t in trained.items()}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tables", [True, False])
def test_backward_is_autograds_gradient(world, kind, tables):
    features, indptr, rows = world
    spec = _spec(kind, features)
    params = initial_params(spec, 3)
    samples = client_samples(spec, features, indptr, rows)
    for c in (1, 5, 6):
        own = rows[indptr[c] : indptr[c + 1]]
        logits, cache = forward(spec, params, samples[c])
        weights = np.random.default_rng(c).standard_normal(len(own)).astype(np.float32)
        grads = backward(spec, params, samples[c], cache, weights, tables)
        batch = _padded(spec, features, own)
        p = {n: torch.from_numpy(v)[None].clone().requires_grad_() for n, v in params.items()}
        reference = net_forward(spec, p, batch.inputs)[0, : len(own)]
        np.testing.assert_allclose(logits, reference.detach().numpy(), rtol=1e-5, atol=1e-6)
        expected = torch.autograd.grad((reference * torch.from_numpy(weights)).sum(), list(p.values()))
        assert set(grads) == {n for n in params if tables or not is_embedding(n)}
        for name, g in zip(p, expected):
            if name in grads:
                got = grads[name].dense() if isinstance(grads[name], RowGradient) else grads[name]
                np.testing.assert_allclose(got, g[0].numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


RECIPES = {
    "mean": LocalRecipe.one_rate(0.5, epochs=1),
    "sum-3-epochs": LocalRecipe(epochs=3, lr_dense=0.3, lr_item=0.7, loss_reduction="sum"),
    "fedprox": LocalRecipe(epochs=2, lr_dense=0.4, lr_item=0.6, prox_mu=0.8),
    "proxy": LocalRecipe.one_rate(0.5, epochs=2, proxy_gradient=True),
    "one-step-two-rates": LocalRecipe(epochs=1, lr_dense=0.3, lr_item=0.7, proxy_gradient=True),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
def test_training_equals_the_batched_autograd_loop(world, kind, recipe):
    features, indptr, rows = world
    spec = _spec(kind, features)
    params = initial_params(spec, 4)
    clients = np.arange(len(COUNTS))
    fractions = np.where(clients % 3 == 1, 0.5, 1.0).astype(np.float32)
    result = train_local_click(spec, recipe, params, features, ClientRows(clients, indptr, rows), ClickOptions(fractions))
    for c in clients:
        first, deltas = _torch_client(spec, recipe, params, features, rows[indptr[c] : indptr[c + 1]], float(fractions[c]))
        assert result.loss[c] == pytest.approx(float(first.loss[0]), rel=1e-5)
        for name, index in channel_slices(spec, float(fractions[c])).items():
            np.testing.assert_allclose(result.dense_deltas[name][c][index], deltas[name], rtol=2e-4, atol=2e-6,
                                       err_msg=f"{c} {name}")
            if recipe.proxy_gradient:
                np.testing.assert_allclose(result.proxy_deltas[name][c][index], first.proxy[name][0], rtol=2e-4,
                                           atol=2e-6, err_msg=f"proxy {c} {name}")


@pytest.mark.parametrize("kind", KINDS)
def test_scaffold_correction_and_dittos_step_equal_the_batched_loop(world, kind):
    features, indptr, rows = world
    spec = _spec(kind, features)
    params = initial_params(spec, 5)
    recipe = LocalRecipe.one_rate(0.4, epochs=2)
    rng = np.random.default_rng(0)
    dense = [n for n in params if not is_embedding(n)]
    correction = {n: (0.1 * rng.standard_normal((len(COUNTS), *params[n].shape))).astype(np.float32) for n in dense}
    result = train_local_click(spec, recipe, params, features, ClientRows(np.arange(len(COUNTS)), indptr, rows),
                               ClickOptions(correction=correction))
    samples = client_samples(spec, features, indptr, rows)
    anchor = {n: (params[n] + 0.05 * rng.standard_normal(params[n].shape)).astype(np.float32) for n in dense}
    for c in (0, 3, 6):
        own = rows[indptr[c] : indptr[c + 1]]
        _, deltas = _torch_client(spec, recipe, params, features, own,
                                  correction={n: torch.from_numpy(v[c : c + 1]) for n, v in correction.items()})
        for name in params:
            np.testing.assert_allclose(result.dense_deltas[name][c], deltas[name], rtol=2e-4, atol=2e-6, err_msg=name)
        # Ditto: the dense part alone, pulled toward an anchor that is not its start.
        mine = client_sgd(recipe, params, {n: recipe.lr_dense for n in dense}, click_model(spec, samples[c], tables=False),
                          samples[c].labels, Anchor(0.3, anchor)).delta
        _, expected = _torch_client(spec, recipe, params, features, own, dense_only=True,
                                    proximal=Proximal(0.3, {n: torch.from_numpy(v) for n, v in anchor.items()}))
        for name in dense:
            np.testing.assert_allclose(mine[name], expected[name], rtol=2e-4, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_a_clients_bits_do_not_depend_on_its_companions_widths_or_order(kind):
    """Alone, or among clients of every size at other widths in another order: the same bits.
    Sizes span one sample to hundreds, so the products run through BLAS's small and blocked
    kernels alike."""
    counts = [1, 2, 5, 9, 33, 64, 120, 300, 7]
    _, _, features, indptr, rows = toy_click_world(2, counts, n_items=400)
    spec = ClickSpec.for_features(kind, features, history_len=30)
    params = initial_params(spec, 6)
    recipe = LocalRecipe.one_rate(1.0, epochs=2, proxy_gradient=True)

    def train(clients, fractions):
        sub_indptr, sub_rows = select_clients(indptr, rows, np.array(clients))
        return train_local_click(spec, recipe, params, features, ClientRows(np.array(clients), sub_indptr, sub_rows),
                                 ClickOptions(np.array(fractions, np.float32)))

    everyone = list(range(len(counts)))
    crowd = train(everyone[::-1], [0.25 if c % 2 else 1.0 for c in everyone[::-1]])
    for client in everyone:
        width = 0.25 if client % 2 else 1.0
        alone = train([client], [width])
        at = everyone[::-1].index(client)
        assert alone.loss[0] == crowd.loss[at]
        assert np.array_equal(alone.correct, crowd.correct[sum(crowd.correct_counts[:at]):][: alone.correct_counts[0]])
        for name in alone.dense_deltas:
            assert np.array_equal(alone.dense_deltas[name][0], crowd.dense_deltas[name][at]), (client, name)
            assert np.array_equal(alone.proxy_deltas[name][0], crowd.proxy_deltas[name][at]), (client, name)
