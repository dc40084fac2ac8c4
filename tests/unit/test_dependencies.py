"""Every third-party import is declared in pyproject.toml, so a fresh machine installs it.

A package installed by hand on a developer's machine once hid a missing declaration (httpx):
this test reads the imports themselves instead of trusting the environment. Declarations are
checked per group (the dependencies and each extra) with the extras they name (``ray[serve]``,
``moto[server]``), and the pytest plugins the configuration relies on must be declared and active:
without pytest-timeout, pytest only warns about an unknown ``timeout`` option and runs unlimited.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT
from tests.import_scan import imported_modules, python_files, top_level_imports

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


# ---------------------------------------------------------------- per group, with extras

def requirement_groups(pyproject: dict) -> dict[str, list[Requirement]]:
    """The requirements of each group: "dependencies", then one entry per extra."""
    project = pyproject["project"]
    groups = {"dependencies": [Requirement(spec) for spec in project.get("dependencies", [])]}
    for extra, specs in project.get("optional-dependencies", {}).items():
        groups[extra] = [Requirement(spec) for spec in specs]
    return groups


def _applies(req: Requirement, extras=()) -> bool:
    """Whether ``req`` holds here when its owner is installed with ``extras``."""
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras))


def _requires(name: str, extras=()) -> list[Requirement]:
    """What the installed distribution ``name`` asks for with ``extras``."""
    return [r for r in map(Requirement, distribution(name).requires or []) if _applies(r, extras)]


def _installed_problem(req: Requirement, where: str) -> str | None:
    try:
        version = distribution(req.name).version
    except PackageNotFoundError:
        return f"{req} ({where}) is not installed"
    if not req.specifier.contains(version, prereleases=True):
        return f"{req} ({where}) is installed at {version}"
    return None


def install_problems(group: str, requirements: list[Requirement]) -> list[str]:
    """Each requirement of the group installed in a matching version, and with it what each of
    its extras asks for (``ray[serve]``: fastapi, uvicorn, ...)."""
    problems = []
    for req in filter(_applies, requirements):
        problem = _installed_problem(req, group)
        if problem:
            problems.append(problem)
            continue
        provided = {canonicalize_name(e) for e in distribution(req.name).metadata.get_all("Provides-Extra") or []}
        base = {str(r) for r in _requires(req.name)}
        for extra in sorted(req.extras):
            if canonicalize_name(extra) not in provided:
                problems.append(f"{req.name} has no extra {extra!r} ({group})")
                continue
            for sub in _requires(req.name, (extra,)):
                if str(sub) not in base:
                    problems.extend(filter(None, [_installed_problem(sub, f"{group}: {req.name}[{extra}]")]))
    return problems


def closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution the requirements bring in, transitively and with the extras named."""
    extras_of: dict[str, set[str]] = {}
    stack = [(canonicalize_name(r.name), set(r.extras)) for r in requirements if _applies(r)]
    while stack:
        name, extras = stack.pop()
        if name in extras_of and extras <= extras_of[name]:
            continue
        extras_of[name] = extras_of.get(name, set()) | extras
        try:
            subs = _requires(name, tuple(extras_of[name]))
        except PackageNotFoundError:
            continue
        stack.extend((canonicalize_name(r.name), set(r.extras)) for r in subs)
    return set(extras_of)


@pytest.mark.parametrize("group", sorted(requirement_groups(_pyproject())))
def test_each_group_is_installed_with_the_extras_it_names(group):
    assert install_problems(group, requirement_groups(_pyproject())[group]) == []


# A module found on a path that a package added at import time (ray puts its bundled psutil and
# colorama on sys.path) comes with that package: only modules from the interpreter's own
# paths need a declaration of their own.
_LOADER = """
import importlib, json, os, sys
before = set(sys.modules)
roots = {os.path.realpath(p) for p in sys.path}
missing = []
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # not a submodule but a name inside one (from a import Class)
            missing.append(f"{name}: {exc}")

def own_path(top):
    file = getattr(sys.modules.get(top), "__file__", None)
    if not file:
        return True
    folder = os.path.dirname(os.path.realpath(file))
    return folder in roots or os.path.dirname(folder) in roots

loaded = {m.split(".")[0] for m in set(sys.modules) - before}
with open(sys.argv[2], "w") as out:
    json.dump({"loaded": sorted(m for m in loaded if own_path(m)), "missing": missing}, out)
"""


def _providers() -> dict[str, set[str]]:
    return {module: {canonicalize_name(d) for d in dists} for module, dists in packages_distributions().items()}


def _extra_gated_imports(pyproject: dict) -> list[str]:
    """The project's imports from distributions with an extra that would bring in an installed
    distribution beyond the declarations without any extras: where an extra can matter.
    Everything else is left unimported, since each import costs seconds here."""
    plain = [Requirement(canonicalize_name(r.name) + str(r.specifier) + (f"; {r.marker}" if r.marker else ""))
             for group in requirement_groups(pyproject).values() for r in group]
    base = closure(plain)
    gated = set()
    for name in base:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        for extra in dist.metadata.get_all("Provides-Extra") or []:
            for req in _requires(name, (extra,)):
                if canonicalize_name(req.name) not in base and _installed_problem(req, "") is None:
                    gated.add(name)
    providers = _providers()
    names = set()
    for path in python_files(REPO_ROOT, SCANNED):
        names |= imported_modules(path)
    return sorted(n for n in names if providers.get(n.split(".")[0], set()) & gated)


@pytest.fixture(scope="module")
def loaded_by_gated_imports(tmp_path_factory) -> tuple[list[str], dict]:
    """(the imports tried, what importing them in a fresh interpreter loaded)."""
    names = _extra_gated_imports(_pyproject())
    result = tmp_path_factory.mktemp("imports") / "loaded.json"
    subprocess.run([sys.executable, "-c", _LOADER, json.dumps(names), str(result)], check=True, cwd=REPO_ROOT,
                   stdout=subprocess.DEVNULL, timeout=300)
    return names, json.loads(result.read_text())


def undeclared_loads(loaded: list[str], declared: set[str]) -> list[str]:
    providers = _providers()
    return [f"{module} ({sorted(providers[module])})" for module in loaded
            if module in providers and not providers[module] & declared and module not in sys.stdlib_module_names]


def test_what_the_code_imports_needs_no_extra_left_undeclared(loaded_by_gated_imports):
    """``from ray import serve`` loads fastapi and uvicorn, which only ``ray[serve]`` brings:
    the import itself is tried, so an extra dropped from a declaration shows."""
    names, result = loaded_by_gated_imports
    assert {"ray.serve", "moto.server"} <= set(names), "the extras this test is for were not exercised"
    assert result["missing"] == []
    declared = closure([r for group in requirement_groups(_pyproject()).values() for r in group])
    assert undeclared_loads(result["loaded"], declared) == []


def test_dropping_a_declared_extra_is_caught(loaded_by_gated_imports):
    _, result = loaded_by_gated_imports
    pyproject = _pyproject()
    specs = pyproject["project"]["dependencies"]
    assert "ray[default,serve]>=2.52" in specs
    pyproject["project"]["dependencies"] = ["ray[default]>=2.40" if s.startswith("ray[") else s for s in specs]
    declared = closure([r for group in requirement_groups(pyproject).values() for r in group])
    assert any(line.startswith("fastapi ") for line in undeclared_loads(result["loaded"], declared))


# ---------------------------------------------------------------- pytest plugins

class _RecordingParser:
    """Stands in for pytest's parser when asking a plugin which ini options it adds."""

    def __init__(self):
        self.ini: set[str] = set()

    def addini(self, name, *args, **kwargs):
        self.ini.add(name)

    def getgroup(self, *args, **kwargs):
        return self

    def addoption(self, *args, **kwargs):
        pass

    _addoption = addoption


def _ini_options_of(plugin) -> set[str]:
    hook = getattr(plugin, "pytest_addoption", None)
    if hook is None:
        return set()
    parser = _RecordingParser()
    hook(parser=parser)
    return parser.ini


def test_the_pytest_plugins_the_configuration_uses_are_active_and_declared(request):
    ini = _pyproject()["tool"]["pytest"]["ini_options"]
    config = request.config
    for key in ini:
        config.getini(key)  # a ValueError names an option no installed plugin registered
    assert config.pluginmanager.hasplugin("timeout")
    assert str(config.getini("timeout")) == str(ini["timeout"]), "the per-test time limit is not in force"

    provided_by = {}
    for plugin, dist in config.pluginmanager.list_plugin_distinfo():
        for option in _ini_options_of(plugin):
            provided_by[option] = canonicalize_name(dist.project_name)
    used = {provided_by[key] for key in ini if key in provided_by}
    assert "pytest-timeout" in used
    groups = requirement_groups(_pyproject())
    assert sorted(used - closure(groups["dependencies"] + groups["test"])) == []
