"""The retrieval jobs' results pages (``--report PAGE.md``): each names its command, machine and
versions, shows its tables and links plots that exist beside it.

bench_retrieval needs its own Ray and Serve (it starts and shuts down Serve on a port of its own,
which would take the shared session's Serve down with it) and wrk, and a tiny run takes over a
minute on two cores; so its page is built here from a result recorded from a real tiny run, and
its --report wiring is checked with the measurement stubbed out."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

# bench_retrieval.measure's result, from: python jobs/bench_retrieval.py --items 3000 --dim 8 --shards 2
# --users 100 --queries 128 --index ivf --nlist 16 --nprobe 4 --concurrency 2,8 --duration 1 (a loaded
# two-core machine; the first HTTP level answered nothing within its one-second window).
RECORDED = {
    "settings": {"items": 3000, "dim": 8, "shards": 2, "k": 10, "queries": 128,
                 "index": {"kind": "ivf", "nlist": 16, "nprobe": 4, "overfetch": 4, "fetch_by": "per_group"},
                 "proxy": "default", "load": "wrk", "duration": 1.0, "http_requests": 1000, "seed": 0},
    "raw": [{"path": "(a) raw FAISS ivf, batch 1", "qps": 84033.6686, "p50_ms": 0.0105, "p99_ms": 0.0198,
             "requests": 128, "batch": 1},
            {"path": "(a) raw FAISS ivf, batch 64", "qps": 163424.5616, "p50_ms": 0.3891, "p99_ms": 0.4483,
             "requests": 128, "batch": 64}],
    "fair": [{"path": "(b) fair sharded actors, batch 1", "qps": 22.0654, "p50_ms": 10.7302, "p99_ms": 197.3958,
              "requests": 128, "batch": 1},
             {"path": "(b) fair sharded actors, batch 64", "qps": 5288.4468, "p50_ms": 12.0992, "p99_ms": 13.162,
              "requests": 128, "batch": 64}],
    "recall": 0.9922,
    "http": [{"path": "(c) HTTP via Serve, concurrency 2", "qps": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "errors": 0,
              "generator_cpu": 0.0048, "requests": 0, "concurrency": 2},
             {"path": "(c) HTTP via Serve, concurrency 8", "qps": 92.15, "p50_ms": 73.11, "p99_ms": 163.83,
              "errors": 0, "generator_cpu": 0.0141, "requests": 93, "concurrency": 8}],
    "floor": [{"path": "(d) Serve floor (echo), concurrency 2", "qps": 117.6, "p50_ms": 16.96, "p99_ms": 31.91,
               "errors": 0, "generator_cpu": 0.0154, "requests": 118, "concurrency": 2},
              {"path": "(d) Serve floor (echo), concurrency 8", "qps": 139.41, "p50_ms": 56.29, "p99_ms": 126.35,
               "errors": 0, "generator_cpu": 0.019, "requests": 140, "concurrency": 8}],
    "loads": ["load average 16.51 / 9.39 / 5.11 (1 / 5 / 15 min)",
              "load average 29.25 / 15.26 / 7.62 (1 / 5 / 15 min)"],
}


def assert_results_page(page: Path, script: str, plots: tuple[str, ...]) -> str:
    """A results page as the docs site shows it: the command that made it, the machine, a table,
    and every plot it links present beside it. Returns its text."""
    from jobs.lib.results_page import machine_line

    text = page.read_text()
    assert text.startswith("# ")
    assert f"| command | `python {script} " in text
    assert f"| machine | {machine_line()} |" in text and "| versions | " in text and "| seeds | " in text
    assert "\n|---|" in text.split("| written |", 1)[1], "a table of results after the header"
    for plot in plots:
        assert f"]({page.stem}/{plot})" in text
        assert (page.parent / page.stem / plot).stat().st_size > 0
    return text


def test_speed_page_from_a_recorded_run(tmp_path: Path):
    from jobs.lib.retrieval_speed_page import speed_page

    page = tmp_path / "speed.md"
    speed_page(copy.deepcopy(RECORDED), "python jobs/bench_retrieval.py --duration 1").write(page)
    text = assert_results_page(page, "jobs/bench_retrieval.py", ("http.png",))
    assert "| (c) HTTP via Serve | concurrency 8 | 92 | 73.1 ms | 164 ms | 93 | 0 |" in text
    assert "| (b)/(a) | 64 | 0.032 |" in text, "a small ratio keeps two significant digits"
    assert "| (c)/(d) | 8 | 0.66 | 1.30 |" in text
    assert "| (c) HTTP via Serve | concurrency 2 | 0 | no answer | no answer | 0 | 0 |" in text
    assert "| (c)/(d) | 2 | – | – |" in text and "(c) at concurrency 2: that level measured nothing" in text
    assert "**0.9922**" in text and "One run (seed 0" in text and "load average 16.51" in text


def test_bench_retrieval_writes_its_page(tmp_path: Path, monkeypatch):
    from jobs import bench_retrieval

    monkeypatch.setattr(bench_retrieval, "measure", lambda cfg, args, folder: copy.deepcopy(RECORDED))
    page = tmp_path / "speed.md"
    assert bench_retrieval.main(["--items", "3000", "--load", "python", "--report", str(page)]) == 0
    text = assert_results_page(page, "jobs/bench_retrieval.py", ("http.png",))
    assert f"`python jobs/bench_retrieval.py --items 3000 --load python --report {page}`" in text


def test_bench_retrieval_refuses_a_page_for_the_soak(capsys):
    from jobs import bench_retrieval

    with pytest.raises(SystemExit):
        bench_retrieval.main(["--soak", "5", "--load", "python", "--report", "page.md"])
    assert "the soak has none" in capsys.readouterr().err


def test_bench_index_writes_the_kinds_page(tmp_path: Path):
    from jobs import bench_index

    page = tmp_path / "index.md"
    argv = ["--items", "2000", "--dim", "8", "--shards", "2", "--users", "100", "--queries", "64", "--kinds", "ivf",
            "--nlist", "16", "--dual-requests", "64", "--report", str(page)]
    assert bench_index.main(argv) == 0
    text = assert_results_page(page, "jobs/bench_index.py", ("recall_speed.png",))
    assert "| `flat` | " in text and "| 1 (the reference) | 1 (the reference) |" in text
    row = next(line for line in text.splitlines() if line.startswith("| `ivf/grp` |") or line.startswith("| `ivf` |"))
    assert " ± " in row, "recall carries its interval over queries"
    assert "exposure share 0.5: μ = [" in text and "exposure share 1.0: μ = [" in text


def test_the_cpu_bound_is_measured_per_level_and_checked_at_concurrency_16(tmp_path: Path):
    from jobs import bench_retrieval
    from jobs.lib.retrieval_speed_page import speed_page

    result = copy.deepcopy(RECORDED)
    raw = {r["batch"]: r for r in result["raw"]}  # batch 64: 163,424 q/s, 6.1 us of search a query
    floor = [{**row, "concurrency": c, "cpu_per_query_s": 1e-3} for row, c in zip(result["floor"], (2, 16))]
    result["bound"] = bench_retrieval.cpu_bounds(raw, floor)
    result["call_floor"] = {"p50_ms": 2.5, "p99_ms": 4.0, "fanouts": 300}
    cores = result["bound"][0]["cores"]
    expected = cores / (1 / 163424.5616 + 1e-3)
    assert result["bound"][1]["qps"] == pytest.approx(expected)
    result["http"][1]["concurrency"] = 16
    for http_qps, met in ((0.8 * expected + 1, True), (0.8 * expected - 1, False)):
        result["http"][1]["qps"] = http_qps
        verdicts = [v for v in bench_retrieval.goal_verdicts(result) if "CPU bound" in v[0]]
        assert [ok for _, ok in verdicts] == [met], verdicts
    page = tmp_path / "speed.md"
    speed_page(result, "python jobs/bench_retrieval.py --duration 1").write(page)
    text = page.read_text()
    assert "## Against the CPU bound" in text and f"| 16 | 0.006 ms | 1.000 ms | {expected:,.0f} |" in text, text
    assert "| (b) / Ray's call floor | 1 | 10.7 ms / 2.50 ms = 4.29 | 197 ms / 4.00 ms = 49.35 |" in text, text
