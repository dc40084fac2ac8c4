"""Recall over a sweep of the per-group offsets μ (cluster/retrieval/mu_sweep.py): every index
kind's default settings must hold it at every point, from no lift to a low-scoring group lifted
past all others, and under a constant shift of every μ."""

from dataclasses import replace

import numpy as np
import pytest

from cluster.retrieval.mu_sweep import build_shards, mu_sweep, skewed_world, sweep_recall
from cluster.retrieval.shard_index import IndexSettings
from configs.schema import RetrievalConfig

# 2,000 items x 16 over 4 clustered groups (the last scored low by every user), 128 queries, the
# retriever's 2 shards, the config's index defaults (nlist 64, nprobe 8, over-fetch 4). Minimum
# recall@10 over the sweep measured on seeds 0-3: the default per_group 0.86-0.89; fetched by
# adjusted 0.64-0.71 (lowest under a constant shift), by relevance 0.01-0.09 (at the largest lift).
THRESHOLD = 0.8
# The kinds whose default fetch follows s − μ. HNSW fetches by relevance unless told, and that
# falls with the lift (jobs/bench_index.py --mu-sweep --kinds hnsw).
KINDS = ("flat", "ivf", "ivf_rq")


@pytest.fixture(scope="module")
def world():
    return skewed_world(n_items=2000, dim=16, n_groups=4, n_queries=128, seed=0)


def _default_settings(kind: str, **index) -> IndexSettings:
    settings = IndexSettings(**RetrievalConfig(index={"kind": kind, **index}).shard_index_settings())
    if kind == "ivf_rq":
        settings = replace(settings, rq_m=8)  # 4 bytes for 16 floats; the default 64 codebooks take seconds to train
    return settings


def test_the_sweep_lifts_the_low_group_into_the_top_k_and_shifts_every_mu(world):
    points = dict(mu_sweep(world))
    assert np.all(points["lift 0σ"] == 0) and points["lift 4σ"][world.low_group] == pytest.approx(-4 * world.sigma)
    shifted = points["lift 1.25σ, all -2σ"] - points["lift 1.25σ"]
    assert np.allclose(shifted, shifted[0]) and shifted[0] < 0


@pytest.mark.parametrize("kind", KINDS)
def test_default_settings_keep_recall_over_the_mu_sweep(kind, world):
    recalls = sweep_recall(build_shards(world, 2, _default_settings(kind)), world, 10)
    assert min(recalls) >= THRESHOLD, dict(zip((label for label, _ in mu_sweep(world)), np.round(recalls, 3)))


@pytest.mark.parametrize("fetch_by", ["adjusted", "relevance"])
def test_the_sweep_catches_a_fetch_whose_recall_depends_on_mu(fetch_by, world):
    """The threshold above means something: the other ways fall below it somewhere on the sweep."""
    recalls = sweep_recall(build_shards(world, 2, _default_settings("ivf", fetch_by=fetch_by)), world, 10)
    assert min(recalls) < THRESHOLD


def test_bench_check_exits_non_zero_below_the_minimum_recall(capsys, tmp_path):
    from jobs.bench_index import EXIT_BELOW_RECALL, main
    from tests.unit.test_retrieval_pages import assert_results_page

    small = ["--check", "--items", "1500", "--queries", "64", "--kinds", "ivf", "--nlist", "16", "--timing-rounds", "1"]
    assert main(small + ["--min-recall", "0.5"]) == 0
    page = tmp_path / "mu-sweep.md"
    assert main(small + ["--min-recall", "1.01", "--report", str(page)]) == EXIT_BELOW_RECALL
    assert "check: ivf/per_group (default) minimum recall@10" in capsys.readouterr().out
    text = assert_results_page(page, "jobs/bench_index.py", ("mu_sweep.png",))
    assert "| **minimum over 14 points** |" in text and "`ivf/per_group` (default)" in text
    assert "vs 1.01: BELOW" in text, "the page carries the check's verdict"
