"""Model families and federated strategies are plug-ins: each is one folder
(``cluster/fl/families/<name>/``, ``cluster/fl/strategies/<kind>/``), found by the registries, and
no other code names it. Outside its folder no module imports it, uses a class it defines, or
compares a value against its name or model kinds (a branch on the kind); configs/ is the one
other place that names them (the config unions). Paper-reproduction reports, whose tables are
about named cells, may compare a cell's label: they are listed with their reason."""

from __future__ import annotations

import ast
import pkgutil
import typing
from pathlib import Path

import pytest

import cluster.fl.families as families_pkg
import cluster.fl.strategies as strategies_pkg
from cluster.data.views import FeedbackKind
from cluster.fl.families import families

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("cluster", "actors", "serve", "jobs")
# Reports of jobs that reproduce one paper's table label its rows by method and model.
LABELS_COMPARED = {
    "jobs/lib/cali3f_report.py": "Cali3F's table: rows labelled by model and strategy, beside the paper's figures",
    "jobs/cali3f_compare.py": "Cali3F's comparison: its grid of models × strategies",
}


def _folders(package) -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg)


def _plugins() -> list[tuple[str, str, set[str]]]:
    """(kind of plug-in, folder, the names a branch on it would compare against)."""
    feedback = set(typing.get_args(FeedbackKind))  # "click" is also a kind of feedback view
    out = [("family", f.name, ({f.name} | set(f.model_kinds)) - feedback) for f in families()]
    out += [("strategy", kind, {kind}) for kind in _folders(strategies_pkg)]
    return out


def _defined_names(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                names.add(node.name)
    return names


def _sources() -> list[Path]:
    return [p for top in SCANNED for p in sorted((ROOT / top).rglob("*.py")) if ".venv" not in p.parts]


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for element in node.elts for s in _strings(element)]
    return []


def leaks(path: Path, module: str, names: set[str], classes: set[str]) -> list[str]:
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module:
            imported = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(m == module or m.startswith(module + ".") for m in imported):
                found.append(f"{where} imports {module}")
        elif isinstance(node, ast.Import) and any(a.name == module or a.name.startswith(module + ".") for a in node.names):
            found.append(f"{where} imports {module}")
        elif isinstance(node, ast.Name) and node.id in classes:
            found.append(f"{where} uses {node.id}")
        elif isinstance(node, ast.Attribute) and (node.attr in classes or node.attr in names):
            found.append(f"{where} reads .{node.attr}")
        elif isinstance(node, ast.Compare) and str(path.relative_to(ROOT)) not in LABELS_COMPARED:
            compared = [s for side in (node.left, *node.comparators) for s in _strings(side)]
            found += [f"{where} compares against {s!r}" for s in compared if s in names]
    return found


@pytest.mark.parametrize("kind, name, names", _plugins(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_plugin_is_named_only_inside_its_folder(kind: str, name: str, names: set[str]):
    package = families_pkg if kind == "family" else strategies_pkg
    folder = Path(package.__path__[0]) / name
    module = f"{package.__name__}.{name}"
    classes = _defined_names(folder)
    found = [
        leak
        for path in _sources()
        if folder not in path.parents
        for leak in leaks(path, module, names, classes)
    ]
    assert not found, f"the {kind} {name!r} is named outside {folder.relative_to(ROOT)}/:\n" + "\n".join(found)


def test_the_registries_find_every_folder():
    assert sorted(f.name for f in families()) == _folders(families_pkg)
    assert {"fedavg", "fedprox", "scaffold", "ditto", "cali3f"} <= set(_folders(strategies_pkg))


def test_the_check_finds_a_leak(tmp_path: Path):
    leaky = ROOT / "cluster" / "_leak_probe.py"
    leaky.write_text('from cluster.fl.strategies.ditto.server import Ditto\nif kind == "gmf":\n    pass\n')
    try:
        assert leaks(leaky, "cluster.fl.strategies.ditto", {"ditto"}, {"Ditto"})
        assert leaks(leaky, "cluster.fl.families.ncf", {"ncf", "gmf"}, set())
    finally:
        leaky.unlink()
