"""Pure logic stays apart from plumbing: nothing in cluster/ or configs/ imports Ray."""

from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.import_scan import python_files, top_level_imports

ALLOWED = {Path("cluster/bootstrap.py")}


def test_pure_modules_do_not_import_ray():
    offenders = []
    for path in python_files(REPO_ROOT, ("cluster", "configs")):
        rel = path.relative_to(REPO_ROOT)
        if rel not in ALLOWED and "ray" in top_level_imports(path):
            offenders.append(str(rel))
    assert offenders == []
