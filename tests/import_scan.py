"""Read a source tree's imports with ast, for the layering and dependency tests."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path


def top_level_imports(path: Path) -> set[str]:
    """Top-level module names that `path` imports absolutely (relative imports are the project's own)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def python_files(root: Path, folders: tuple[str, ...]) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((root / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every absolute dotted name that `path` imports, and for ``from a.b import c`` also ``a.b.c``
    (c may be a submodule: ``from ray import serve``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
    return names
