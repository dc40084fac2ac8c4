"""The retriever's CPU bound (``jobs/lib/serving_bound.py``): cores over the two measured CPU costs
of a query, and the machine's busy CPU read from /proc/stat."""

import time

import pytest

from jobs.lib.serving_bound import ServingBound, busy_cpu_seconds, machine_cpu


def test_the_bound_is_the_cores_over_a_querys_two_cpu_costs():
    # 0.5 ms of search and 0.5 ms of Serve a query: 1,000 q/s a core
    assert ServingBound(cores=2, search_cpu_s=5e-4, floor_cpu_s=5e-4).qps == pytest.approx(2_000)
    assert ServingBound(cores=2, search_cpu_s=0.0, floor_cpu_s=1e-3).qps == pytest.approx(2_000)


def test_busy_cpu_counts_a_spinning_thread():
    assert busy_cpu_seconds() > 0
    with machine_cpu() as spent:
        stop = time.perf_counter() + 0.3
        while time.perf_counter() < stop:
            pass
    # this thread alone kept a core busy for 0.3 s; the clock ticks at 100 Hz
    assert spent[0] >= 0.2, spent
