"""The shard search's wire format: one bytes object each way, nothing lost."""

import numpy as np

from cluster.retrieval.shard_index import Hits
from cluster.retrieval.wire import pack_hits, pack_query, unpack_hits, unpack_query


def test_a_query_batch_and_its_hits_survive_the_wire():
    rng = np.random.default_rng(0)
    queries, mu = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=4)
    got_queries, k, got_mu, version = unpack_query(pack_query(queries, 7, mu, 12), n_groups=4)
    assert np.array_equal(got_queries, queries) and np.array_equal(got_mu, mu) and (k, version) == (7, 12)
    hits = Hits(rng.integers(-1, 100, (3, 7)), rng.normal(size=(3, 7)).astype(np.float32),
                rng.normal(size=(3, 7)).astype(np.float32))
    back, version = unpack_hits(pack_hits(hits, 9))
    assert version == 9
    for name in ("items", "scores", "adjusted"):
        assert np.array_equal(getattr(back, name), getattr(hits, name)), name
