"""What an honest-but-curious server learns from a ``padded`` upload. Padding is obfuscation with
no guarantee: these tests run the attacks a server can run on what it receives and knows (the
run's seed, each client's id, two rounds of uploads) and show that they find the real rows. They
hold the documentation's plain description true; a scheme that defeats them would fail them."""

import zlib

import numpy as np
import torch

from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.click.net import init_params
from cluster.fl.families.click.shard import click_shard
from cluster.fl.families.click.upload import table_rows, touched_rows
from cluster.fl.families.click.worker import ClickWorkerCore
from cluster.fl.recipe import LocalRecipe
from cluster.fl.types import ClientSettings
from cluster.fl.upload_rows import sent_rows
from cluster.rng import stream
from configs.fl_schema import PaddedUpload
from tests.unit.click_fixtures import toy_click_world

PADDED = PaddedUpload(pad_ratio=1.0)


def rows_known_real(sent: np.ndarray, n_rows: int, seed: int, client: int, table: str) -> np.ndarray:
    """The server's inference from the public decoy order: decoys are the first untouched rows of
    the order the seed and client id fix, so every sent row placed after the first row the client
    did not send is real."""
    order = stream(seed, "upload-decoys", client, zlib.crc32(table.encode())).permutation(n_rows)
    first_unsent = int(np.argmax(~np.isin(order, sent)))
    return np.intersect1d(order[first_unsent:], sent)


def test_the_public_decoy_order_gives_most_real_rows_away_with_certainty():
    rng = np.random.default_rng(0)
    n_rows, found, real_total = 500, 0, 0
    for client in range(20):
        touched = np.sort(rng.choice(n_rows, 30, replace=False))
        sent = sent_rows(PADDED, {"emb.item": touched}, {"emb.item": n_rows}, seed=0, client=client)
        named = rows_known_real(sent.rows["emb.item"], n_rows, seed=0, client=client, table="emb.item")
        assert np.isin(named, touched).all(), "every row the attack names is a real one"
        found, real_total = found + len(named), real_total + len(touched)
    assert found >= 0.75 * real_total, f"the order alone names {found} of {real_total} real rows"


def test_real_rows_persist_across_rounds_while_decoys_are_fresh_noise():
    _, holdout, features, indptr, rows = toy_click_world(0, [40, 55, 35, 60, 45, 50])
    spec = ClickSpec.for_features("dlrm", features, top_hidden=(32,))
    params = {k: v.numpy() for k, v in init_params(spec, torch.Generator().manual_seed(0)).items()}
    client = np.array([1])
    core = ClickWorkerCore(click_shard(features, holdout.train_rows, holdout.test_rows, client), spec, LocalRecipe(), 0)
    settings = ClientSettings(upload=PADDED, width=np.ones(1, np.float32))
    # Between the rounds the server has stepped the global model a little.
    moved = {k: v + 0.01 * np.std(v) * np.random.default_rng(1).standard_normal(v.shape).astype(v.dtype)
             for k, v in params.items()}
    first = core.train(3, client, params, settings).dense_deltas["emb.item"][0]
    second = core.train(4, client, moved, settings).dense_deltas["emb.item"][0]
    own = rows[indptr[1] : indptr[2]]
    sent = sent_rows(PADDED, touched_rows(spec, features, own), table_rows(spec), 0, 1)
    real = np.setdiff1d(sent.rows["emb.item"], sent.decoys["emb.item"])
    cosine = np.einsum("rd,rd->r", first, second) / (
        np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1) + 1e-12
    )
    # The server thresholds each sent row's cosine between two rounds: real rows repeat.
    called_real = sent.rows["emb.item"][cosine[sent.rows["emb.item"]] > 0.9]
    assert len(sent.decoys["emb.item"]) >= 10
    assert np.isin(real, called_real).mean() >= 0.9
    assert np.isin(sent.decoys["emb.item"], called_real).mean() <= 0.1
