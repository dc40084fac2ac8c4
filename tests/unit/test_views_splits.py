import numpy as np
import pytest

from cluster.data.splits import leave_one_out, sample_negatives, temporal_holdout
from cluster.data.types import Interactions
from cluster.data.views import click_view, implicit_view, make_view


def _inter(rows, n_users=4, n_items=30):
    u, i, r, t = (np.asarray(col) for col in zip(*rows))
    return Interactions(u.astype(np.int32), i.astype(np.int32), r.astype(np.float32), t.astype(np.int64), n_users, n_items)


ROWS = [(0, 1, 5, 30), (0, 2, 3, 10), (0, 3, 4, 20), (1, 4, 5, 5), (1, 5, 1, 50), (2, 6, 2, 1), (0, 2, 5, 40)]


def test_views_label_and_deduplicate():
    inter = _inter(ROWS)
    implicit = implicit_view(inter)
    assert len(implicit.interactions) == 6 and implicit.labels.tolist() == [1.0] * 6
    clicks = click_view(inter, threshold=5)
    pairs = dict(zip(zip(clicks.interactions.users.tolist(), clicks.interactions.items.tolist()), clicks.labels.tolist()))
    assert pairs[(0, 2)] == 1.0, "the latest re-rating (5 at t=40) wins"
    assert pairs[(1, 5)] == 0.0 and pairs[(0, 1)] == 1.0
    assert sorted(clicks.positives().items.tolist()) == [1, 2, 4], "the 5-star rows, re-rating included"
    assert len(make_view(inter, "click", 4).positives()) == 4
    with pytest.raises(ValueError):
        make_view(inter, "likes", 4)


def test_leave_one_out_takes_latest_and_samples_valid_negatives():
    inter = implicit_view(_inter(ROWS)).interactions
    split = leave_one_out(inter, n_negatives=10, rng=np.random.default_rng(0))
    assert split.test_users.tolist() == [0, 1], "user 2 has one interaction and is not evaluated"
    assert split.test_items.tolist() == [2, 5]
    assert len(split.train) == len(inter) - 2
    assert split.train.users.tolist().count(2) == 1
    seen = {(u, i) for u, i in zip(inter.users.tolist(), inter.items.tolist())}
    for user, row in zip(split.test_users, split.negatives):
        assert len(set(row.tolist())) == 10
        assert not any((user, item) in seen for item in row.tolist())
    assert split.candidates().shape == (2, 11) and (split.candidates()[:, 0] == split.test_items).all()
    again = leave_one_out(inter, n_negatives=10, rng=np.random.default_rng(0))
    assert np.array_equal(split.negatives, again.negatives)


def test_negatives_when_catalogue_is_tight():
    inter = _inter([(0, i, 5, i) for i in range(25)], n_users=1, n_items=30)
    negatives = sample_negatives(inter, np.array([0]), 5, np.random.default_rng(1))
    assert sorted(negatives[0].tolist()) == [25, 26, 27, 28, 29]
    with pytest.raises(ValueError, match="fewer than 6 negatives"):
        sample_negatives(inter, np.array([0]), 6, np.random.default_rng(1))


def test_temporal_holdout_keeps_latest_fraction():
    rows = [(0, i, 4, 100 - i) for i in range(10)] + [(1, 20, 5, 7), (1, 21, 5, 8)] + [(2, 22, 1, 3)]
    inter = _inter(rows)
    split = temporal_holdout(inter, 0.2)
    test = inter.take(split.test_rows)
    assert sorted(test.items[test.users == 0].tolist()) == [0, 1], "user 0's two latest are items 0 and 1"
    assert test.items[test.users == 1].tolist() == [21]
    assert 2 not in test.users.tolist()
    assert len(split.train_rows) + len(split.test_rows) == len(inter)
    with pytest.raises(ValueError):
        temporal_holdout(inter, 1.0)


def test_real_ml100k_splits(ml100k):
    split = leave_one_out(implicit_view(ml100k.interactions).interactions, 99, np.random.default_rng(0))
    assert len(split.test_users) == 943 and split.negatives.shape == (943, 99)
    clicks = click_view(ml100k.interactions, 5)
    assert abs(clicks.labels.mean() - 0.212) < 0.001


def test_negatives_sampled_in_blocks_stay_valid_and_match_one_pass_within_a_block(monkeypatch):
    from cluster.data import splits

    rng = np.random.default_rng(3)
    rows = [(u, int(i), 5, k) for u in range(40) for k, i in enumerate(rng.choice(60, size=20, replace=False))]
    inter = _inter(rows, n_users=40, n_items=60)
    users = np.arange(40)
    one_pass = sample_negatives(inter, users, 15, np.random.default_rng(7))
    monkeypatch.setattr(splits, "NEGATIVE_BLOCK", 64)
    assert np.array_equal(sample_negatives(inter, users, 15, np.random.default_rng(7)), one_pass)
    monkeypatch.setattr(splits, "NEGATIVE_BLOCK", 7)
    blocked = sample_negatives(inter, users, 15, np.random.default_rng(7))
    assert not np.array_equal(blocked, one_pass), "blocks draw in a different order: a real second code path"
    seen = {(u, i) for u, i, *_ in rows}
    for user, row in zip(users.tolist(), blocked.tolist()):
        assert len(set(row)) == 15 and not any((user, item) in seen for item in row)


def test_views_share_the_columns_when_no_pair_repeats():
    inter = _inter([row for row in ROWS if row != (0, 2, 5, 40)])
    assert implicit_view(inter).interactions is inter
    assert click_view(inter, 5).interactions is inter
