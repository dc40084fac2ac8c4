"""The ``fairfleet`` command: every job under one name, from any directory, with the job's own
options, help and exit codes; and where relative config and data paths point."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from configs import ConfigError, load_config
from configs.loader import CONFIG_DIR, PROJECT_DIR
from jobs.lib.command import main, packaged_serve_config
from jobs.lib.commands import COMMANDS, EXAMPLES, GROUPS
from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent
SMALL_WORLD = ["--set", "data.synthetic.n_users=200", "--set", "data.synthetic.target_interactions=3000"]


def _fairfleet(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "fairfleet"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- the registry
def test_the_registry_names_every_job_module_once_and_nothing_else():
    modules = {p.stem for p in (REPO_ROOT / "jobs").glob("*.py")} - {"__init__", "__main__"}
    listed = [c.module for c in COMMANDS]
    assert sorted(listed) == sorted(modules)
    names = [c.name for c in COMMANDS]
    assert len(set(names)) == len(names) and "serve" not in names
    assert all(c.name.split()[0] in GROUPS for c in COMMANDS if " " in c.name)
    assert all(c.summary and "\n" not in c.summary for c in COMMANDS)


def test_every_example_names_a_command():
    firsts = {c.name.split()[0] for c in COMMANDS} | {"serve"}
    for line, what in EXAMPLES:
        assert line.startswith("fairfleet ") and line.split()[1] in firsts and what


# --------------------------------------------------------------------------- top-level help
def test_help_lists_every_command_quickly_from_any_directory(tmp_path):
    started = time.perf_counter()
    result = _fairfleet("--help", cwd=tmp_path, timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert f"{command.name}  " in result.stdout and command.summary in result.stdout
    assert "serve  " in result.stdout and "fairfleet sim --set fl.rounds=20" in result.stdout
    assert elapsed < 10, f"fairfleet --help took {elapsed:.1f} s"


def test_help_imports_no_job_code(tmp_path):
    """What keeps --help fast: no job module, and none of Ray, torch or pydantic, is imported."""
    probe = ("import sys\nfrom jobs.lib.command import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "light = {'jobs', 'jobs.lib', 'jobs.lib.command', 'jobs.lib.commands'}\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'ray', 'torch', 'pydantic', 'numpy'} "
             "or (m.split('.')[0] in {'jobs', 'cluster', 'configs', 'actors', 'serve'} and m not in light))\n"
             "print('HEAVY', heavy)\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_python_dash_m_jobs_is_the_same_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jobs", "--help"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "bench synthetic" in result.stdout


def test_bench_help_lists_the_benchmarks(capsys):
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fairfleet bench")
    for command in COMMANDS:
        if command.name.startswith("bench "):
            assert f"  {command.name.split()[1]}  " in out and command.summary in out


def test_an_unknown_command_exits_2_with_one_line_naming_the_commands(capsys):
    assert main(["simulate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'simulate'" in err
    for name in ["sim", "world", "retrieval-eval", "bench", "serve"]:
        assert name in err
    assert main(["bench", "speed"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'speed'" in err and "synthetic" in err


def test_no_command_prints_the_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().out


# --------------------------------------------------------------------------- each job's help
@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_each_command_shows_its_jobs_help_under_its_own_name(command, capsys, monkeypatch):
    parsers: list[argparse.ArgumentParser] = []
    parse_args = argparse.ArgumentParser.parse_args

    def recording(self, *args, **kwargs):
        parsers.append(self)
        return parse_args(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", recording)
    argv_before = list(sys.argv)
    with pytest.raises(SystemExit) as exited:
        main([*command.name.split(), "--help"])
    assert exited.value.code == 0
    assert sys.argv == argv_before
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fairfleet {command.name} ")
    (parser,) = parsers
    assert parser.description and parser.description.rstrip().endswith((".", "?")), parser.description
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        assert action.help, f"{command.name}: {action.option_strings or action.dest} has no help text"
        for option in action.option_strings:
            assert option in out


def test_a_job_failing_on_bad_input_exits_2_through_the_command(tmp_path, capsys):
    """As ``python jobs/download_movielens.py`` does: the message, no traceback."""
    code = main(["download", "ml-100k", "--base-url", "http://127.0.0.1:9/", "--cache-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


# --------------------------------------------------------------------------- from another directory
def test_world_runs_from_another_directory_on_the_packaged_config(tmp_path):
    out = tmp_path / "runs"
    result = _fairfleet("world", "--config", "configs/demo.yaml", *SMALL_WORLD,
                        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--storage", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run,) = out.iterdir()
    assert run.name.startswith("world-demo-")
    assert json.loads((run / "summary.json").read_text())["config_hash"]
    assert "heterogeneity" in result.stdout


def test_a_missing_config_names_the_paths_tried(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["world", "--config", "configs/nope.yaml"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "configs" / "nope.yaml") in err and str(PROJECT_DIR / "configs" / "nope.yaml") in err


# --------------------------------------------------------------------------- where paths point
def test_a_relative_config_path_falls_back_to_the_project_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("configs/demo.yaml").name == "demo"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("name: mine\n")
    assert load_config("configs/demo.yaml").name == "mine"  # the current directory comes first
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_a_packaged_configs_data_path_is_found_beside_the_project(tmp_path, monkeypatch):
    written = "../shared/datasets/ml-100k"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert str(load_config("configs/ml100k.yaml").data.path) == os.path.normpath(PROJECT_DIR / written)
    # given on the command line, a relative path stays the user's own
    assert str(load_config("configs/ml100k.yaml", ["data.path=../mine"]).data.path) == "../mine"
    (tmp_path / "shared" / "datasets" / "ml-100k").mkdir(parents=True)
    assert str(load_config("configs/ml100k.yaml").data.path) == written  # there relative to cwd: kept
    own = tmp_path / "own.yaml"
    own.write_text("data: {source: movielens, path: ../nowhere/ml-100k}\n")
    assert str(load_config(own).data.path) == "../nowhere/ml-100k"  # a config of one's own: cwd-relative


def test_from_the_project_folder_a_packaged_config_is_unchanged(monkeypatch):
    monkeypatch.chdir(PROJECT_DIR)
    assert str(load_config("configs/ml100k.yaml").data.path) == "../shared/datasets/ml-100k"


# --------------------------------------------------------------------------- serve
def test_serve_help_names_the_default_config_and_serve_runs_options(capsys):
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fairfleet serve") and "retriever_synthetic.yaml" in out and "--address" in out


def test_serve_runs_serve_run_on_the_packaged_config_from_anywhere(tmp_path, monkeypatch):
    from ray.serve.scripts import run

    calls = []

    def fake_main(args, prog_name, standalone_mode):
        calls.append((list(args), prog_name))
        raise SystemExit(0)

    monkeypatch.setattr(run, "main", fake_main)
    monkeypatch.chdir(tmp_path)
    assert packaged_serve_config().is_file() and packaged_serve_config().parent == CONFIG_DIR / "serve"
    assert main(["serve", "--address", "local"]) == 0
    assert calls[-1] == ([str(packaged_serve_config()), "--address", "local"], "fairfleet serve")
    assert main(["serve", "--non-blocking", "configs/serve/retriever_kuberay.yaml"]) == 0
    assert calls[-1][0] == ["--non-blocking", str(PROJECT_DIR / "configs/serve/retriever_kuberay.yaml")]


def test_serve_with_a_missing_config_exits_2_naming_the_paths_tried(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "configs/serve/nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "configs/serve/nope.yaml") in err and str(PROJECT_DIR / "configs/serve/nope.yaml") in err
