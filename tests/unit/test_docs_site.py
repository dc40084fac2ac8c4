"""The README and the documentation site: the README stays a first screen with the two commands
that CI runs, the site builds with no broken link, and product text carries no development
history."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
# What a user cannot act on: where work was tracked, not what the product does.
HISTORY = re.compile(
    r"\b(issue|stop) #?\d+\b|\bthis (stop|session)\b|\bbisect|\bthe issue\b|\bdevice machine\b",
    re.IGNORECASE,
)


def _fenced_commands(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_the_readme_is_a_first_screen_with_the_two_commands_first():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    commands = _fenced_commands(text)
    assert "fairfleet sim --config configs/demo.yaml" in commands[0]
    assert commands[1].endswith("-m pytest")
    # The first command block comes before any other section's text.
    assert text.index("## Two commands") < text.index("## ", text.index("## Two commands") + 3)


def test_ci_runs_the_readme_test_command_exactly():
    test_command = _fenced_commands(README.read_text())[1]
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert test_command in ci


def _product_texts() -> list[Path]:
    texts = [README, *sorted((REPO_ROOT / "docs").rglob("*.md")), *sorted((REPO_ROOT / "configs").rglob("*.yaml"))]
    return [p for p in texts if "docs/changelog.md" not in p.as_posix()]


def test_product_text_speaks_of_the_product_not_of_its_development():
    found = []
    for path in _product_texts():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = re.sub(r"Ray issues? #?\d+(, #?\d+)*", "", line)  # upstream bug reports are product facts
            if HISTORY.search(line):
                found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:100]}")
    assert found == []


def test_the_site_builds_strictly(tmp_path: Path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        mkdocs = shutil.which("mkdocs")
    if mkdocs is None:
        pytest.fail("mkdocs is not installed: it is part of the test extra (pip install -e '.[test]')")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "results" / "index.html").exists()


def test_every_results_page_is_written_by_the_job_its_command_names():
    """A results page is the output of ``python jobs/<job>.py ... --report docs/results/<page>.md``,
    named on the page itself, for a job that takes ``--report``: none is assembled by hand."""
    pages = sorted(p for p in (REPO_ROOT / "docs" / "results").glob("*.md") if p.name != "index.md")
    assert len(pages) >= 20
    for page in pages:
        command = re.search(r"^\| command \| `python jobs/([a-z0-9_]+)\.py ([^`]*)` \|$", page.read_text(), re.M)
        assert command, f"{page.name}: no job command in its header"
        assert f"--report docs/results/{page.name}" in command.group(2), f"{page.name}: not written by its command"
        job = (REPO_ROOT / "jobs" / f"{command.group(1)}.py").read_text()
        assert "add_report_argument" in job or '"--report"' in job, f"{page.name}: {command.group(1)} has no --report"
