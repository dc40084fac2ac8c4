"""Pure logic stays apart from plumbing: nothing in cluster/ or configs/ imports Ray."""

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

ALLOWED = {Path("cluster/bootstrap.py")}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_pure_modules_do_not_import_ray():
    offenders = []
    for folder in ("cluster", "configs"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            rel = path.relative_to(REPO_ROOT)
            if rel not in ALLOWED and "ray" in _imports(path):
                offenders.append(str(rel))
    assert offenders == []
