"""The image definition cannot drift from the project silently: its rayproject/ray base has the
installed Ray and this Python, it installs the project itself (``pip install .``, so the
dependency list lives only in pyproject.toml) with torch pinned as pyproject.toml pins it, and
the build context leaves the virtualenv and run outputs out. There is no Docker engine here, so
the file is read, not built."""

from __future__ import annotations

import re
import shlex
import sys
import tomllib

import pytest
import ray
from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
BASE = re.compile(r"^rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-(?P<python>py\d+)(?P<variant>-cpu)?$")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "") for parts in (j.strip().split(None, 1) for j in joined)]


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


def pip_installs(command: str) -> list[list[str]]:
    """The argument lists of every `pip install` in a RUN command (split at && and ;)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    found = []
    for words in commands:
        for i in range(len(words) - 1):
            if words[i].endswith("pip") and words[i + 1] == "install":
                found.append(words[i + 2:])
                break
    return found


PIP_VALUE_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-c", "--constraint", "-r", "--requirement",
                     "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--cache-dir"}


def install_targets(words: list[str]) -> list[str]:
    """What a `pip install` installs: its arguments without the options (and their values)."""
    targets, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in PIP_VALUE_OPTIONS
        else:
            targets.append(word)
    return targets


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(spec).name.lower(): Requirement(spec) for spec in project["dependencies"]}


def dockerfile_problems(text: str, ray_version: str, python_tag: str) -> list[str]:
    requirements = pyproject_requirements()
    (torch_pin,) = [s.version for s in requirements["torch"].specifier if s.operator == "=="]
    args, problems, installs = {}, [], []
    base = None
    for instruction, rest in instructions(text):
        if instruction == "ARG":
            name, _, default = rest.partition("=")
            if default:
                args[name.strip()] = default.strip().strip('"')
        elif instruction == "FROM":
            base = substitute(rest.split()[0], args)
        elif instruction == "RUN":
            installs += pip_installs(substitute(rest, args))
    match = BASE.match(base or "")
    if match is None:
        return [f"the base image {base!r} is not an official rayproject/ray:<version>-<python> image"]
    if match["ray"] != ray_version:
        problems.append(f"the base image has Ray {match['ray']}, the project installs Ray {ray_version}")
    if match["python"] != python_tag:
        problems.append(f"the base image has Python {match['python']}, the project runs on {python_tag}")
    packages = [Requirement(w) for words in installs for w in install_targets(words) if w != "."]
    if not any("." in install_targets(words) for words in installs):
        problems.append("no `pip install .`: the image does not install the project itself")
    torch = [r for r in packages if r.name.lower() == "torch"]
    if not torch or any(str(r.specifier) != f"=={torch_pin}" for r in torch):
        problems.append(f"torch is not pinned to {torch_pin} as in pyproject.toml: {[str(r) for r in torch]}")
    for r in packages:
        if r.name.lower() == "ray" and str(r.specifier) != f"=={ray_version}":
            problems.append(f"the install changes Ray to {r.specifier}, not the base image's {ray_version}")
    repeated = sorted({r.name for r in packages} & (set(requirements) - {"torch", "ray"}))
    if repeated:
        problems.append(f"dependencies repeated from pyproject.toml: {repeated}")
    if not any(i == "COPY" and re.match(r"(--\S+\s+)*\.\s", rest) for i, rest in instructions(text)):
        problems.append("the project is not copied into the image (COPY . ...)")
    return problems


PYTHON_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"


def test_the_dockerfile_matches_the_installed_ray_python_and_pins():
    assert dockerfile_problems(DOCKERFILE.read_text(), ray.__version__, PYTHON_TAG) == []


@pytest.mark.parametrize("old,new,needle", [
    ("ARG RAY_VERSION=2.60.0", "ARG RAY_VERSION=2.59.0", "the base image has Ray 2.59.0"),
    ("ARG PYTHON_TAG=py311", "ARG PYTHON_TAG=py310", "the base image has Python py310"),
    ('"ray[default,serve]==${RAY_VERSION}" .', '"ray[default,serve]==${RAY_VERSION}" fairfleet', "does not install the project"),
    ("ARG TORCH_VERSION=2.13.0", "ARG TORCH_VERSION=2.12.0", "torch is not pinned to"),
    ('"ray[default,serve]==${RAY_VERSION}" .', '"ray[default,serve]==${RAY_VERSION}" faiss-cpu pydantic .', "repeated"),
    ("FROM rayproject/ray:", "FROM python:3.11 AS x\n# rayproject/ray:", "not an official rayproject/ray"),
])
def test_a_drifted_dockerfile_is_caught(old, new, needle):
    text = DOCKERFILE.read_text()
    assert old in text, old
    problems = dockerfile_problems(text.replace(old, new), ray.__version__, PYTHON_TAG)
    assert any(needle in p for p in problems), problems


def test_the_build_context_leaves_out_the_venv_and_outputs():
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "runs", ".cache"} <= ignored
