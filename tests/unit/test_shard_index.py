import numpy as np
import pytest
from pydantic import ValidationError

from cluster.retrieval.shard_index import IndexSettings, ShardIndex, lists_per_group, merge_top_k
from configs import ConfigError, load_config
from configs.schema import RetrievalConfig


def _world(seed=0, n_items=300, dim=8, n_groups=5):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32)
    groups = rng.integers(0, n_groups, n_items)
    queries = rng.normal(size=(20, dim)).astype(np.float32)
    mu = -np.abs(rng.normal(size=n_groups)).astype(np.float32)
    return vectors, groups, queries, mu


def _brute_force(vectors, groups, queries, mu, k):
    adjusted = queries @ vectors.T - mu[groups]
    return np.argsort(-adjusted, axis=1, kind="stable")[:, :k], adjusted


def _shards(vectors, groups, n_shards, kind="flat", **kw):
    parts = np.array_split(np.random.default_rng(1).permutation(len(vectors)), n_shards)
    settings = IndexSettings(kind=kind, **kw)
    return [ShardIndex(ids, vectors[ids], groups[ids], int(groups.max()) + 1, settings) for ids in parts]


def test_sharded_flat_search_equals_brute_force_adjusted_top_k():
    vectors, groups, queries, mu = _world()
    shards = _shards(vectors, groups, 3)
    for shard in shards:
        shard.set_mu(mu)
    merged = merge_top_k([s.search(queries, 10) for s in shards], 10)
    expected, adjusted = _brute_force(vectors, groups, queries, mu, 10)
    assert np.array_equal(np.sort(merged.items, axis=1), np.sort(expected, axis=1))
    np.testing.assert_allclose(merged.adjusted, np.take_along_axis(adjusted, merged.items, axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(merged.scores, np.einsum("nd,nkd->nk", queries, vectors[merged.items]), rtol=1e-5, atol=1e-5)
    assert (np.diff(merged.adjusted, axis=1) <= 1e-6).all()


def test_changing_mu_rewrites_only_the_adjusted_coordinate():
    vectors, groups, queries, mu = _world(seed=2)
    (shard,) = _shards(vectors, groups, 1)
    before = shard.search(queries, 5)
    boost = np.zeros_like(mu)
    boost[3] = -100.0  # group 3 jumps to the top
    shard.set_mu(boost)
    after = shard.search(queries, 5)
    assert (groups[after.items] == 3).all()
    np.testing.assert_allclose(after.adjusted, after.scores + 100.0, rtol=1e-5)
    assert not np.array_equal(before.items, after.items)


@pytest.mark.parametrize("kind, seed, n_items", [("ivf", 3, 120), ("ivf_rq", 6, 200)])
def test_exact_when_overfetch_covers_the_partition(kind, seed, n_items):
    """ivf_rq here too: partitions this small are below RQ_MIN_ITEMS and keep float lists."""
    vectors, groups, queries, mu = _world(seed=seed, n_items=n_items)
    shards = _shards(vectors, groups, 2, kind=kind, nlist=4, nprobe=4, overfetch=100)
    for shard in shards:
        shard.set_mu(mu)
    merged = merge_top_k([s.search(queries, 10) for s in shards], 10)
    expected, _ = _brute_force(vectors, groups, queries, mu, 10)
    assert np.array_equal(np.sort(merged.items, axis=1), np.sort(expected, axis=1))


def test_set_nprobe_scans_more_lists_on_the_same_build():
    """Probing every list with an over-fetch that covers the partition is exact; one list is not."""
    vectors, groups, queries, mu = _world(seed=4, n_items=240)
    shards = _shards(vectors, groups, 2, kind="ivf", nlist=8, nprobe=1, overfetch=100)
    expected, _ = _brute_force(vectors, groups, queries, mu, 10)

    def found():
        for shard in shards:
            shard.set_mu(mu)
        return np.sort(merge_top_k([s.search(queries, 10) for s in shards], 10).items, axis=1)

    assert not np.array_equal(found(), np.sort(expected, axis=1))
    for shard in shards:
        shard.set_nprobe(64)  # capped at the index's 8 lists
    assert np.array_equal(found(), np.sort(expected, axis=1))
    with pytest.raises(ValueError, match="nprobe is an IVF setting"):
        _shards(vectors, groups, 1)[0].set_nprobe(4)


def test_small_partition_pads_with_missing_items():
    vectors, groups, queries, _ = _world(seed=4, n_items=3)
    (shard,) = _shards(vectors, groups, 1)
    hits = shard.search(queries[:2], 5)
    assert hits.items.shape == (2, 3) and (hits.items >= 0).all()


def test_excluded_items_are_skipped_and_the_rest_is_the_exact_top_k():
    vectors, groups, queries, mu = _world(seed=5)
    shards = _shards(vectors, groups, 3)
    for shard in shards:
        shard.set_mu(mu)
    expected, adjusted = _brute_force(vectors, groups, queries, mu, 300)
    exclude = [row[:12] for row in expected]  # each query's 12 best items are already seen
    merged = merge_top_k([s.search(queries, 6, exclude) for s in shards], 6)
    for q in range(len(queries)):
        allowed = [i for i in expected[q] if i not in set(exclude[q])]
        assert merged.items[q].tolist() == allowed[:6]
        assert np.allclose(merged.adjusted[q], adjusted[q, allowed[:6]], atol=1e-5)


# ---------------------------------------------------------------- approximate kinds (ivf, ivf_rq, hnsw)
# 4,000 Gaussian items (dim 24, 6 groups) over 2 shards, μ_g ~ −U(0, 1)·σ(scores): large enough that
# ranking by relevance alone (μ ignored) recalls only ~0.65-0.74 of the adjusted top-10, so the
# thresholds below can only be met with μ applied. Measured on seeds 0-4 with these settings
# (the IVF kinds fetching per group): ivf 0.955-0.981, ivf_rq 0.919-0.938 (8 four-bit codebooks
# for 24 floats), hnsw 0.995-1.000; each threshold leaves ~0.05-0.07 of room for FAISS versions
# and platforms.
APPROXIMATE = {
    "ivf": ({"nlist": 16, "nprobe": 12, "overfetch": 8}, 0.90),
    "ivf_rq": ({"nlist": 16, "nprobe": 12, "overfetch": 8, "rq_m": 8}, 0.85),
    "hnsw": ({"hnsw_m": 16, "ef_construction": 40, "ef_search": 64, "overfetch": 1}, 0.95),
}


def _gaussian_world(seed=0, n_items=4000, dim=24, n_groups=6):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32)
    groups = rng.integers(0, n_groups, n_items)
    queries = rng.normal(size=(64, dim)).astype(np.float32)
    mu = (-rng.uniform(0, 1, n_groups) * np.std(queries @ vectors.T)).astype(np.float32)
    return vectors, groups, queries, mu


@pytest.fixture(scope="module")
def approximate_shards():
    vectors, groups, _, _ = _gaussian_world()
    return {kind: _shards(vectors, groups, 2, kind=kind, **settings) for kind, (settings, _) in APPROXIMATE.items()}


def _ivf_of(shard):
    import faiss

    return faiss.extract_index_ivf(shard.index)


def _recall(found, expected):
    return float(np.mean([len(set(a) & set(b)) / expected.shape[1] for a, b in zip(found, expected)]))


@pytest.mark.parametrize("kind", list(APPROXIMATE))
def test_approximate_kinds_recall_the_adjusted_top_k_with_exact_scores(kind, approximate_shards):
    vectors, groups, queries, mu = _gaussian_world()
    shards = approximate_shards[kind]
    for shard in shards:
        shard.set_mu(mu)
    merged = merge_top_k([s.search(queries, 10) for s in shards], 10)
    expected, adjusted = _brute_force(vectors, groups, queries, mu, 10)
    plain, _ = _brute_force(vectors, groups, queries, np.zeros_like(mu), 10)
    assert _recall(plain, expected) < 0.8  # μ matters in this world
    assert _recall(merged.items, expected) >= APPROXIMATE[kind][1]
    assert (merged.items >= 0).all()
    # whatever the index approximated, every returned score is the exact s and s − μ_g
    np.testing.assert_allclose(merged.adjusted, np.take_along_axis(adjusted, merged.items, axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(merged.scores, np.einsum("nd,nkd->nk", queries, vectors[merged.items]), rtol=1e-5, atol=1e-4)
    assert (np.diff(merged.adjusted, axis=1) <= 1e-6).all()


@pytest.mark.parametrize("kind", list(APPROXIMATE))
def test_set_mu_moves_approximate_answers_as_it_moves_flat_without_touching_the_index(kind, approximate_shards):
    import faiss

    vectors, groups, queries, mu = _gaussian_world()
    shards, flat = approximate_shards[kind], _shards(vectors, groups, 2)
    stored = [faiss.serialize_index(s.index).tobytes() for s in shards]
    answers = {}
    lifted = int(np.argmax(mu))  # the group μ lifts least, lifted most by the reversed μ
    for name, offsets in (("mu", mu), ("reversed", mu[::-1].copy())):
        for shard in shards + flat:
            shard.set_mu(offsets)
        answers[name] = merge_top_k([s.search(queries, 10) for s in shards], 10).items
        exact = merge_top_k([s.search(queries, 10) for s in flat], 10).items
        assert _recall(answers[name], exact) >= APPROXIMATE[kind][1]
    assert _recall(answers["reversed"], answers["mu"]) < 0.8  # the new μ changed the answer
    assert (groups[answers["reversed"]] == lifted).mean() > (groups[answers["mu"]] == lifted).mean()
    assert [faiss.serialize_index(s.index).tobytes() for s in shards] == stored  # μ lives in the re-score only


@pytest.mark.parametrize("kind", ["flat", *APPROXIMATE])
def test_kept_vectors_are_the_partition_and_memory_counts_them_once(kind, approximate_shards):
    vectors, groups, _, _ = _gaussian_world()
    shards = _shards(vectors, groups, 2) if kind == "flat" else approximate_shards[kind]
    parts = np.array_split(np.random.default_rng(1).permutation(len(vectors)), 2)
    for shard, ids in zip(shards, parts):
        assert np.array_equal(shard.vectors, vectors[ids])  # the re-score's floats, row for row
        memory = shard.memory_bytes()
        inside = kind in ("flat", "hnsw")  # these indexes store the floats row by row: a view of them
        assert memory["vectors"] == (0 if inside else vectors[ids].nbytes)
        assert memory["total"] == memory["index"] + memory["vectors"]
    ivf, rq = (approximate_shards[k][0].memory_bytes()["index"] for k in ("ivf", "ivf_rq"))
    assert rq < ivf / 2  # 8 four-bit codes per item instead of 24 floats


def test_config_settings_build_the_index_they_name():
    vectors, groups, queries, _ = _world(seed=7, n_items=2000, dim=16)
    ivf = {"nlist": 8, "nprobe": 8, "overfetch": 3}
    sections = {"flat": {}, "ivf": ivf, "ivf_rq": {**ivf, "rq_m": 4, "train_size": 1500},
                "hnsw": {"m": 8, "ef_construction": 20, "ef_search": 30, "overfetch": 2}}
    for kind, section in sections.items():
        settings = RetrievalConfig(index={"kind": kind, **section}).shard_index_settings()
        (shard,) = _shards(vectors, groups, 1, **settings)
        assert shard.kind == kind and shard.search(queries, 5).items.shape == (len(queries), 5)
        assert settings.get("overfetch") == {"flat": None, "hnsw": 2}.get(kind, 3)
        if kind == "hnsw":
            assert shard.index.hnsw.efSearch == 30 and shard.index.hnsw.efConstruction == 20
        if kind.startswith("ivf"):
            assert _ivf_of(shard).nprobe == 8 and _ivf_of(shard).nlist == 8


@pytest.mark.parametrize("index, message", [
    ("annoy", "'flat', 'ivf', 'ivf_rq', 'hnsw'"),
    ({"kind": "hnsw", "m": 1}, "m"),
    ({"kind": "hnsw", "ef_search": 0}, "ef_search"),
    ({"kind": "ivf_rq", "rq_m": 1000}, "rq_m"),
    ({"kind": "ivf_rq", "nlist": 64, "nprobe": 128}, "nprobe=128 exceeds nlist=64"),
    ({"kind": "ivf", "nlist": 16, "nprobe": 32}, "nprobe=32 exceeds nlist=16"),
    ({"kind": "ivf_rq", "nlist": 1024, "train_size": 512}, "train_size=512 is below nlist=1024"),
    ({"kind": "hnsw", "ef": 64}, "ef"),  # unknown keys stay an error
    ({"kind": "hnsw", "nlist": 4}, "nlist"),  # another kind's setting is unknown here
    ({"kind": "flat", "fetch_by": "adjusted"}, "fetch_by"),
    ({"kind": "hnsw", "fetch_by": "per_group"}, "fetch_by"),  # per_group lays out inverted lists
    ({"kind": "ivf", "fetch_by": "mu"}, "fetch_by"),
])
def test_bad_index_settings_are_rejected_naming_the_field(index, message):
    with pytest.raises(ValidationError, match=message):
        RetrievalConfig(index=index)


def test_index_settings_moved_under_the_index_are_named():
    with pytest.raises(ValidationError, match="retrieval.ivf_nlist → retrieval.index.nlist"):
        RetrievalConfig(index="ivf", ivf_nlist=4)
    # A run folder's config from before the split (every old key present) still loads, so it resumes.
    old = {"index": "hnsw", "ivf_nlist": 64, "ivf_nprobe": 8, "ivf_overfetch": 4, "rq_m": 64, "rq_train_size": 65536,
           "hnsw_m": 16, "hnsw_ef_construction": 80, "hnsw_ef_search": 128, "hnsw_overfetch": 2, "fetch_by": None}
    assert RetrievalConfig(**old).index.model_dump() == {"kind": "hnsw", "m": 16, "ef_construction": 80, "ef_search": 128,
                                                         "overfetch": 2, "fetch_by": "relevance"}
    with pytest.raises(ConfigError, match=r"retrieval\.index\.nlist: unknown key \(not a setting of kind 'flat'\)"):
        load_config(None, ["retrieval.index.nlist=4"])
    assert load_config(None, ["retrieval.index=ivf", "retrieval.index.nlist=4", "retrieval.index.nprobe=2"]) \
        .retrieval.shard_index_settings() == {"kind": "ivf", "nlist": 4, "nprobe": 2, "overfetch": 4,
                                              "fetch_by": "per_group"}


@pytest.mark.parametrize("kind", ["ivf", "ivf_rq"])
def test_fetching_by_the_adjusted_score_finds_a_far_group_that_mu_lifts(kind):
    """Group 3 ranks last by relevance (its items point away from the queries) and μ lifts all of
    it above the rest: fetched by relevance alone its items are rarely candidates; with the group
    columns (adjusted, per_group) the probed lists and the candidates follow s − μ. Scores stay
    exact either way."""
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(3000, 8)).astype(np.float32)
    groups = rng.integers(0, 4, 3000)
    queries = rng.normal(size=(40, 8)).astype(np.float32) + 2.0
    vectors[groups == 3] -= 2.0  # far from every query
    mu = np.array([0.0, 0.0, 0.0, -40.0], np.float32)
    expected, adjusted = _brute_force(vectors, groups, queries, mu, 10)

    def recall(fetch_by):
        (shard,) = _shards(vectors, groups, 1, kind=kind, fetch_by=fetch_by, nlist=16, nprobe=2, overfetch=2,
                           rq_m=8, train_size=2048)
        shard.set_mu(mu)
        hits = shard.search(queries, 10)
        np.testing.assert_allclose(hits.adjusted, np.take_along_axis(adjusted, np.maximum(hits.items, 0), axis=1),
                                   rtol=1e-4, atol=1e-4)
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits.items, expected)])

    by_relevance, by_adjusted, per_group = recall("relevance"), recall("adjusted"), recall("per_group")
    # measured: ivf 0.24 -> 0.58 (adjusted), 0.63 (per_group); ivf_rq 0.20 -> 0.47, 0.63
    assert by_adjusted > by_relevance + 0.15, (by_relevance, by_adjusted)
    assert per_group > by_relevance + 0.15, (by_relevance, per_group)


def test_fetch_by_reaches_the_shard_index_from_the_config():
    assert RetrievalConfig(index={"kind": "hnsw", "fetch_by": "adjusted"}).shard_index_settings()["fetch_by"] == "adjusted"
    vectors, groups, _, _ = _world(n_items=200)
    defaults = {}
    for index in ("flat", {"kind": "ivf", "nlist": 4, "nprobe": 2}, "hnsw"):
        settings = RetrievalConfig(index=index).shard_index_settings()
        shard = _shards(vectors, groups, 1, **settings)[0]
        defaults[settings["kind"]] = (shard.fetch_by, shard.group_scale > 0)
    assert defaults == {"flat": ("relevance", False), "ivf": ("per_group", True), "hnsw": ("relevance", False)}, \
        "IVF kinds fetch per group unless told"


# ---------------------------------------------------------------- fetch_by per_group (the IVF kinds' default)
def _clustered_world(seed=0, n_items=3000, dim=8, n_groups=4):
    """Groups around their own centroids, the last far from every query (as a disliked group is)."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n_items)
    centroids = rng.normal(size=(n_groups, dim)) * 1.5
    centroids[-1] -= 3.0
    vectors = (centroids[groups] + rng.normal(size=(n_items, dim))).astype(np.float32)
    queries = (rng.normal(size=(40, dim)) + 1.0).astype(np.float32)
    return vectors, groups, queries


@pytest.mark.parametrize("kind", ["ivf", "ivf_rq"])
def test_per_group_lists_hold_one_group_each_and_every_item(kind):
    """Even the group far from the origin is split over its lists by L2, not swallowed by its
    largest centroid."""
    import faiss

    vectors, groups, _ = _clustered_world()
    (shard,) = _shards(vectors, groups, 1, kind=kind, nlist=16, nprobe=4, rq_m=4, train_size=2048)
    ivf = _ivf_of(shard)
    assert shard.fetch_by == "per_group" and ivf.nlist == 16 and ivf.nprobe == 4
    owners = np.argmax(ivf.quantizer.reconstruct_n(0, ivf.nlist)[:, vectors.shape[1]:], axis=1)
    held = []
    for lst in range(ivf.nlist):
        rows = faiss.rev_swig_ptr(ivf.invlists.get_ids(lst), ivf.invlists.list_size(lst)).copy()
        assert (shard.groups[rows] == owners[lst]).all()
        held.append(shard.item_ids[rows])
    assert np.array_equal(np.sort(np.concatenate(held)), np.arange(len(vectors)))
    far = [len(rows) for rows, owner in zip(held, owners) if owner == 3]
    assert len(far) == 4 and max(far) < 0.6 * sum(far)


@pytest.mark.parametrize("kind", ["ivf", "ivf_rq"])
def test_per_group_answer_ignores_a_constant_shift_of_mu(kind):
    """Adding c to every μ_g leaves the exact top-K as it is; per_group probes and ranks by
    s − μ_g throughout, so its answer does not move either (only the scores, by −c)."""
    vectors, groups, queries = _clustered_world(seed=1)
    (shard,) = _shards(vectors, groups, 1, kind=kind, nlist=16, nprobe=4, overfetch=2, rq_m=4, train_size=2048)
    mu = np.array([0.0, -0.5, 0.0, -6.0], np.float32)
    answers = []
    for shift in (0.0, 5.0, -7.0):
        shard.set_mu(mu + shift)
        answers.append(shard.search(queries, 10))
    for hits, shift in zip(answers[1:], (5.0, -7.0)):
        assert np.array_equal(hits.items, answers[0].items)
        np.testing.assert_allclose(hits.adjusted, answers[0].adjusted - shift, atol=1e-4)


def test_lists_are_shared_by_group_size_and_every_group_with_items_gets_one():
    assert lists_per_group(np.array([300, 100, 0, 600]), 10).tolist() == [3, 1, 0, 6]
    assert lists_per_group(np.array([500, 3, 497]), 10).tolist() == [5, 1, 5]  # a tiny group still gets a list
    assert lists_per_group(np.array([2, 1]), 64).tolist() == [2, 1]  # never more lists than items
    assert lists_per_group(np.array([5, 5, 5]), 2).tolist() == [1, 1, 1]


def test_more_groups_than_lists_still_probes_every_list_at_nprobe_nlist():
    vectors, groups, _, _ = _world(seed=8, n_items=200, n_groups=5)
    (shard,) = _shards(vectors, groups, 1, kind="ivf", nlist=2, nprobe=2)
    assert _ivf_of(shard).nlist == 5 and _ivf_of(shard).nprobe == 5
    shard.set_nprobe(1)
    assert _ivf_of(shard).nprobe == 2  # the same share (1 in 2) of the lists it holds


def test_per_group_is_refused_for_hnsw():
    vectors, groups, _, _ = _world(n_items=100)
    with pytest.raises(ValueError, match="per_group"):
        _shards(vectors, groups, 1, kind="hnsw", fetch_by="per_group")
    with pytest.raises(ValueError, match="unknown fetch_by"):
        _shards(vectors, groups, 1, kind="ivf", fetch_by="groups")


@pytest.mark.parametrize("fetch_by", ["adjusted", "relevance"])
def test_configs_naming_an_older_fetch_way_still_build_it(fetch_by):
    vectors, groups, _, _ = _world(n_items=400)
    for kind in ("ivf", "ivf_rq"):
        index = {"kind": kind, "nlist": 8, "nprobe": 2, "fetch_by": fetch_by}
        settings = RetrievalConfig(index=index).shard_index_settings()
        (shard,) = _shards(vectors, groups, 1, **settings)
        rms = float(np.sqrt(np.mean(np.sum(vectors.astype(np.float64) ** 2, axis=1))))
        assert shard.fetch_by == fetch_by
        assert shard.group_scale == pytest.approx(rms if fetch_by == "adjusted" else 0.0)
    old = {"index": "ivf", "ivf_nlist": 64, "ivf_nprobe": 8, "ivf_overfetch": 4, "rq_m": 64, "rq_train_size": 65536,
           "hnsw_m": 16, "hnsw_ef_construction": 80, "hnsw_ef_search": 128, "hnsw_overfetch": 2, "fetch_by": fetch_by}
    assert RetrievalConfig(**old).index.fetch_by == fetch_by
