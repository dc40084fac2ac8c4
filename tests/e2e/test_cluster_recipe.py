"""The README's "Run on a Ray cluster" recipe, run as a new user would paste it.

The bash block between ``<!-- cluster-recipe:start -->`` and ``<!-- cluster-recipe:end -->`` in
README.md (or in the file named by ``$FAIRFLEET_RECIPE_FILE``) runs unchanged, in the repository
root where the README's install command made ``.venv``, on a fresh machine of its own:

- new PID, network and mount namespaces (``unshare``): the recipe's ``ray start --head`` takes the
  default ports and its ``ray stop`` ends every Ray process it can see, which here is only its own;
  no other Ray cluster of this machine is seen or touched;
- a private tmpfs on /tmp/ray (so Ray's sessions are its own; not on all of /tmp, where the
  checkout itself may live) and a private, empty HOME (so ``~/.ray/auth_token`` and the data
  cache are its own, as on a machine that never ran Ray);
- an environment with nothing the recipe does not set up itself: no venv on PATH, no ``RAY_*``;
- ``runs/`` of the repository is, inside the namespace only, a folder of this test bind-mounted
  over it, so the run folder the recipe writes to ``$PWD/runs`` is checked here and nothing is
  left in the checkout.

Checked: every command succeeds (the block runs under ``set -eo pipefail``), the job SUCCEEDED,
the run folder with summary.json is where the recipe puts it, the jobs API answered the token
with the job list (``curl -f``: any HTTP error fails the recipe), and after ``ray stop`` nothing
but the namespace's own shell is left. Skipped with the reason where ``unshare`` is not permitted
or ``curl``, ``ip`` or ``.venv`` is missing; ``FAIRFLEET_REQUIRE_MULTINODE=1`` turns the skip into
a failure. 60 s on two lightly shared cores, up to 105 s under heavy load (a new head, the world
built afresh, 60 rounds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from configs import load_config
from tests.conftest import REPO_ROOT

START, END = "<!-- cluster-recipe:start -->", "<!-- cluster-recipe:end -->"
MARK = "@@recipe@@"
UNSHARE = ["unshare", "--kill-child", "--pid", "--fork", "--mount-proc", "--net", "--mount",
           "--propagation", "private"]

# Runs as PID 1 of the new namespaces: $1 the repository, $2 the folder seen as its runs/, $3 the recipe.
# The recipe is eval'd in this shell, as a pasted block runs in the user's; a DEBUG trap marks each
# command in the log. Afterwards it waits (up to 20 s) for every other process of the namespace to end.
WRAPPER = r"""
repo=$1 runs=$2 recipe=$3
ip link set lo up
mount --bind "$runs" "$repo/runs"
mkdir -p /tmp/ray
mount -t tmpfs fairfleet-recipe-ray /tmp/ray
mkdir -p "$HOME"
cd "$repo"
echo "MARK begin"
trap 'echo "MARK cmd $BASH_COMMAND"' DEBUG
set -eo pipefail
eval "$recipe"
set +eo pipefail
trap - DEBUG
echo "MARK end"
for attempt in $(seq 100); do
    left=()
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = 1 ] && continue
        stat=""; read -r stat 2>/dev/null < "$p/stat" || continue
        left+=("$stat")
    done
    [ ${#left[@]} -eq 0 ] && break
    sleep 0.2
done
echo "MARK left ${#left[@]}"
for stat in "${left[@]}"; do echo "MARK process $stat"; done
""".replace("MARK", MARK)


def recipe_text() -> tuple[Path, str]:
    """The block's bash, from $FAIRFLEET_RECIPE_FILE if set, else from README.md."""
    path = Path(os.environ.get("FAIRFLEET_RECIPE_FILE") or REPO_ROOT / "README.md")
    text = path.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, f"{path}: one {START} … {END} block expected"
    inside = text.split(START, 1)[1].split(END, 1)[0]
    blocks = re.findall(r"^```bash\n(.*?)^```$", inside, re.S | re.M)
    assert len(blocks) == 1, f"{path}: one ```bash block expected between the markers"
    return path, blocks[0]


def _unavailable() -> str:
    """Why the recipe cannot run isolated here ('' when it can)."""
    missing = [tool for tool in ("unshare", "ip", "curl") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    if not (REPO_ROOT / ".venv" / "bin" / "activate").exists():
        return f"no {REPO_ROOT / '.venv'} (the README's install command creates it)"
    probe = subprocess.run([*UNSHARE, "bash", "-c", "ip link set lo up && mkdir -p /tmp/ray && mount -t tmpfs probe /tmp/ray"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"unshare (PID, network and mount namespaces) is not permitted here: {probe.stderr.strip()}"
    return ""


def _fresh_environment(home: Path) -> dict:
    """What a new login has: this PATH without any folder that holds a `ray` (the venv's bin, or
    another environment's), an empty HOME of its own, no RAY_* and no virtualenv."""
    folders = [f for f in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
               if f and not (Path(f) / "ray").exists() and Path(f) != Path(sys.executable).parent]
    env = {"PATH": os.pathsep.join(folders), "HOME": str(home), "LANG": os.environ.get("LANG", "C.UTF-8")}
    assert shutil.which("ray", path=env["PATH"]) is None
    return env


def _sections(log: str) -> list[tuple[str, str]]:
    """(command, what it printed) for every command the DEBUG trap marked."""
    sections, command, lines = [], None, []
    for line in log.splitlines():
        if line.startswith(f"{MARK} "):
            if command is not None:
                sections.append((command, "\n".join(lines)))
            command, lines = line[len(MARK) + 1:], []
        else:
            lines.append(line)
    if command is not None:
        sections.append((command, "\n".join(lines)))
    return sections


def _recipe_lines(bash: str) -> list[str]:
    """The recipe's commands, one per line (continuations joined, comments and blank lines left out)."""
    joined = re.sub(r"\\\n\s*", " ", bash)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _printed_by(sections: list[tuple[str, str]], bash: str, start: str) -> str:
    """Everything printed by the recipe's line that starts with ``start``: from its first command
    to the first command of the next line (the later parts of its pipeline included). Commands are
    matched by their first two words, as bash's trap shows them re-spaced."""
    starts = {tuple(line.split()[:2]) for line in _recipe_lines(bash)}
    out, inside = [], False
    for command, printed in sections:
        words = tuple(command.split()[1:3]) if command.startswith("cmd ") else None
        if not inside and command.startswith(f"cmd {start}"):
            inside = True
        elif inside and (words is None or words in starts):
            break
        if inside:
            out.append(printed)
    assert inside, f"no `{start}` command ran"
    return "\n".join(out)


@pytest.fixture(scope="module")
def isolation():
    reason = _unavailable()
    if reason:
        if os.environ.get("FAIRFLEET_REQUIRE_MULTINODE") == "1":
            pytest.fail(reason + " and FAIRFLEET_REQUIRE_MULTINODE=1")
        pytest.skip(reason)


def test_the_recipe_block_is_short_and_self_contained():
    path, bash = recipe_text()
    lines = [line for line in bash.splitlines() if line.strip()]
    assert len(lines) <= 16, f"{path}: the recipe has {len(lines)} lines"
    assert lines[0].startswith("source .venv/bin/activate"), "the venv's ray and python come first"
    assert "ray stop" in lines[-1]


def test_the_readmes_cluster_recipe_runs_as_written_on_a_fresh_machine(isolation, tmp_path):
    _, bash = recipe_text()
    runs = tmp_path / "runs"  # seen as <repo>/runs inside the namespace
    runs.mkdir()
    mount_point = REPO_ROOT / "runs"  # ignored by git; the default storage, so usually there already
    created = not mount_point.exists()
    mount_point.mkdir(exist_ok=True)
    log_path = tmp_path / "recipe.log"
    started = time.time()
    try:
        with log_path.open("w") as log:
            process = subprocess.Popen([*UNSHARE, "bash", "-c", WRAPPER, "fairfleet-recipe", str(REPO_ROOT),
                                        str(runs), bash], env=_fresh_environment(tmp_path / "home"), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                returncode = process.wait(timeout=420)
            except subprocess.TimeoutExpired:
                process.kill()  # --kill-child: the namespace's PID 1 goes too, and with it every process in it
                process.wait(timeout=30)
                raise
    finally:
        if created:
            try:
                mount_point.rmdir()
            except OSError:
                pass
    wall_s = time.time() - started
    log = log_path.read_text()
    print(f"the recipe ran in {wall_s:.0f} s (log: {log_path})")
    assert returncode == 0, f"the recipe failed (exit {returncode}):\n{log[-5000:]}"
    sections = _sections(log)

    # The job succeeded, and its run folder is in the repository's runs/ (``runs`` here), complete.
    submitted = _printed_by(sections, bash, "ray job submit")
    assert re.search(r"Job '\S+' succeeded", submitted), submitted[-3000:]
    folders = sorted(runs.glob("fl-demo-*"))
    assert len(folders) == 1, f"run folders in {REPO_ROOT / 'runs'}: {[f.name for f in folders]}"
    (run,) = folders
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == load_config(REPO_ROOT / "configs" / "demo.yaml").fl.rounds
    assert (run / "rounds.parquet").exists()
    assert "summary.json" in _printed_by(sections, bash, "ls").split()

    # The jobs API answered the token (curl -f) with the job list.
    jobs = json.loads(_printed_by(sections, bash, "curl").strip())
    (job,) = [j for j in jobs if "jobs/fl_sim.py" in j["entrypoint"]]
    assert job["status"] == "SUCCEEDED" and job["driver_exit_code"] == 0, job
    assert job["entrypoint"].endswith(f"--config configs/demo.yaml --storage {REPO_ROOT}/runs"), job["entrypoint"]

    # After `ray stop`, nothing of the cluster is left in the namespace.
    (left,) = re.findall(rf"^{MARK} left (\d+)$", log, re.M)
    remaining = re.findall(rf"^{MARK} process (.*)$", log, re.M)
    assert left == "0", f"still running after ray stop: {remaining}"
