"""Layers import downward only: configs and cluster (pure logic) < actors (Ray plumbing) <
serve (HTTP) < jobs (entry points). Function-level imports count too."""

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.import_scan import python_files, top_level_imports

FORBIDDEN = {
    "configs": {"cluster", "actors", "serve", "jobs"},
    "cluster": {"actors", "serve", "jobs"},
    "actors": {"serve", "jobs"},
    "serve": {"jobs"},
}


def layer_offenders(root: Path, layer: str) -> list[str]:
    return [f"{path.relative_to(root)} imports {sorted(top_level_imports(path) & FORBIDDEN[layer])}"
            for path in python_files(root, (layer,)) if top_level_imports(path) & FORBIDDEN[layer]]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer):
    assert layer_offenders(REPO_ROOT, layer) == []


def test_an_upward_import_inside_a_function_is_caught(tmp_path):
    (tmp_path / "serve").mkdir()
    (tmp_path / "serve" / "app.py").write_text("def start():\n    from jobs.fl_sim import run\n    return run\n")
    assert layer_offenders(tmp_path, "serve") == ["serve/app.py imports ['jobs']"]
