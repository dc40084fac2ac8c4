"""The documentation's table of guarantees names the test or check that holds each one: every name
must still exist, or the table promises something nothing runs."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def _guarantee_table() -> str:
    return (REPO_ROOT / "docs" / "concepts" / "guarantees.md").read_text()


def test_every_test_the_guarantees_name_exists():
    missing, named, last = [], 0, None
    for found in re.finditer(r"`(tests/[^`:]+)(?:::([^`]+))?`|`::([^`]+)`", _guarantee_table()):
        path = found.group(1) or last
        last = path
        name = found.group(2) or found.group(3)
        file = REPO_ROOT / path
        named += 1
        if not file.exists() or (name and f"def {name}(" not in file.read_text()):
            missing.append(f"{path}::{name}" if name else path)
    assert named >= 15 and missing == []


def test_every_check_the_guarantees_name_is_a_flag_of_its_job():
    checks = re.findall(r"`python jobs/(\w+)\.py [^`]*--check\b", _guarantee_table())
    assert len(checks) >= 2
    for job in checks:
        assert '"--check"' in (REPO_ROOT / "jobs" / f"{job}.py").read_text(), job
