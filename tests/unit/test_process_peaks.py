import sys

import pytest

from jobs.lib.process_peaks import ProcessPeak, role_of, run_and_watch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

ALLOCATE = "import time; block = bytearray({size}); block[::4096] = b'x' * len(block[::4096]); time.sleep(1.5)"


def test_peaks_of_a_command_and_its_children():
    child = ALLOCATE.format(size=300_000_000)
    parent = (f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}]); "
              + ALLOCATE.format(size=50_000_000))
    code, tree = run_and_watch([sys.executable, "-c", parent], interval_s=0.1)
    assert code == 0
    root = tree.peaks[tree.root]
    others = [p for pid, p in tree.peaks.items() if pid != tree.root]
    assert 50e6 <= root.peak_bytes < 250e6, root
    assert any(p.peak_bytes >= 300e6 for p in others), others


def test_roles_name_ray_actors_by_class():
    assert role_of(ProcessPeak(5, "python jobs/fl_sim.py", 1), root=5) == "driver"
    assert role_of(ProcessPeak(6, "ray::ClientWorker.evaluate", 1), root=5) == "ClientWorker"
    assert role_of(ProcessPeak(7, "ray::Aggregator", 1), root=5) == "Aggregator"
    assert role_of(ProcessPeak(8, "/usr/bin/gcs_server --x", 1), root=5) == "ray daemons and others"
