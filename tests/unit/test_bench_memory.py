import re
import sys
from pathlib import Path

import pytest

from jobs import bench_memory
from jobs.bench_memory import EXIT_OVER_LIMIT, GIB, check_status, report
from jobs.lib.process_peaks import ProcessPeak

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# Stands in for fl_sim: touches 200 MB and lives long enough to be sampled.
JOB = "import sys, time; block = bytearray(200_000_000); block[::4096] = b'x' * len(block[::4096]); time.sleep(1.5)"


def test_report_and_verdict_are_in_gib():
    roles = {"driver": [ProcessPeak(1, "python jobs/fl_sim.py", 3 * GIB)],
             "Aggregator": [ProcessPeak(2, "ray::Aggregator.evaluate", 4 * GIB + 1)]}
    lines = report(roles, 4 * GIB)
    assert lines[0].endswith("3.00 GiB (pid 1)")
    assert "goal of at most 4 GiB (2**30 bytes) per process: NOT met" in lines[-1]
    assert check_status(0, roles, 4 * GIB) == EXIT_OVER_LIMIT
    assert check_status(0, roles, 4 * GIB + 1) == 0
    assert check_status(7, roles, 5 * GIB) == 7  # a failed run fails the check with its own code
    assert check_status(0, {}, 4 * GIB) == EXIT_OVER_LIMIT  # nothing measured is no pass


def test_check_exits_non_zero_above_the_limit(tmp_path: Path, monkeypatch, capsys):
    job = tmp_path / "job.py"
    job.write_text(JOB)
    monkeypatch.setattr(bench_memory, "FL_SIM", job)
    page = tmp_path / "docs" / "memory.md"
    assert bench_memory.main(["--check", "--limit-gib", "0.1", "--report", str(page)]) == EXIT_OVER_LIMIT
    assert "NOT met" in capsys.readouterr().out
    # The page of a run above the limit is written all the same: "not met" is a result.
    text = page.read_text()
    assert text.startswith("# Peak memory per process against 0.1 GiB: ")
    assert "| command | `python jobs/bench_memory.py --check --limit-gib 0.1 --report " in text
    assert re.search(r"\| driver \| 1 \| 0\.\d\d \| \*\*no\*\* \|", text), text
    assert "is not met" in text and "| machine | " in text
    assert bench_memory.main(["--limit-gib", "0.1"]) == 0  # without --check it only reports
    assert bench_memory.main(["--check", "--limit-gib", "1"]) == 0
