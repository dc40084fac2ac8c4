"""Ray's floor under a fan-out (``jobs/lib/fanout_floor.py``) runs on real actors and reports what
it timed."""

import pytest

from jobs.lib.fanout_floor import fanout_floor

pytestmark = pytest.mark.usefixtures("ray_session")


def test_the_call_floor_times_its_fanouts():
    floor = fanout_floor(3, b"q" * 400, b"h" * 300, n_groups=8, fanouts=20, warmup=2)
    assert floor["fanouts"] == 20 and 0 < floor["p50_ms"] <= floor["p99_ms"] < 5_000
