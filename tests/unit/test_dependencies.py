"""Every third-party import is declared in pyproject.toml, so a fresh machine installs it.

A package installed by hand on a developer's machine once hid a missing declaration (httpx):
this test reads the imports themselves instead of trusting the environment.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT
from tests.import_scan import python_files, top_level_imports

SCANNED = ("cluster", "actors", "serve", "jobs", "configs", "tests")
OWN = set(SCANNED)


def declared_distributions(pyproject: dict) -> set[str]:
    project = pyproject["project"]
    specs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        specs.extend(extra)
    return {canonicalize_name(Requirement(spec).name) for spec in specs}


def undeclared_imports(declared: set[str]) -> list[str]:
    """One line per (module, file) whose distribution is not declared, or that maps to none."""
    dists = packages_distributions()
    problems = []
    for path in python_files(REPO_ROOT, SCANNED):
        rel = path.relative_to(REPO_ROOT)
        for module in sorted(top_level_imports(path)):
            if module in sys.stdlib_module_names or module in OWN:
                continue
            providers = {canonicalize_name(d) for d in dists.get(module, [])}
            if not providers:
                problems.append(f"{module} (imported in {rel}): no installed distribution provides it")
            elif not providers & declared:
                problems.append(f"{module} (imported in {rel}): {sorted(providers)} not declared in pyproject.toml")
    return problems


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_every_third_party_import_is_declared():
    assert undeclared_imports(declared_distributions(_pyproject())) == []


def test_removing_a_declared_dependency_is_caught():
    declared = declared_distributions(_pyproject()) - {"httpx"}
    problems = undeclared_imports(declared)
    assert problems, "dropping httpx from the declarations went unnoticed"
    assert all(line.startswith("httpx (imported in ") for line in problems)
    assert any("tests/serve/test_retriever_http.py" in line for line in problems)
