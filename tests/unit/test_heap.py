"""A worker process keeps its freed heap between calls: building and freeing the same arrays again
faults no pages back in."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

PROBE = """
import numpy as np
from cluster.heap import keep_freed_heap

def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])

print(keep_freed_heap())
for _ in range(2):  # the first round maps the pages
    parts = [np.ones(2_000_000 // (k + 1)) for k in range(8)]
    del parts
before = faults()
for _ in range(5):
    parts = [np.ones(2_000_000 // (k + 1)) for k in range(8)]
    del parts
print(faults() - before)
"""


def test_the_same_arrays_again_fault_no_pages_in():
    if not sys.platform.startswith("linux"):
        return
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    kept, faults = done.stdout.split()
    assert kept == "True", done.stderr
    # 5 rounds of 43 MB: about 52,000 pages with glibc's defaults.
    assert int(faults) < 500, faults
