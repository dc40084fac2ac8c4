"""The storage layer on a local folder and on a real S3-compatible server (moto)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from cluster.storage import Storage, StorageError
from tests.conftest import REPO_ROOT


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return Storage(tmp_path / "store")
    make_bucket = request.getfixturevalue("s3_server")
    return Storage(make_bucket(f"unit-{tmp_path.name.lower().replace('_', '-')}")) / "prefix"


def test_round_trips_every_format(root):
    run = root / "run-1"
    run.write_text("notes.txt", "héllo")
    run.write_json("summary.json", {"auc": np.float32(0.5), "rounds": np.int64(3), "ids": np.arange(2)})
    run.write_parquet("t/rounds.parquet", pa.table({"round": [1, 2], "loss": [0.5, 0.25]}))
    run.write_npz("shards/w0.npz", clients=np.arange(5), vectors=np.ones((5, 2), np.float32))
    assert run.read_text("notes.txt") == "héllo"
    assert run.read_json("summary.json") == {"auc": 0.5, "rounds": 3, "ids": [0, 1]}
    assert run.read_parquet("t/rounds.parquet").to_pydict() == {"round": [1, 2], "loss": [0.5, 0.25]}
    arrays = run.read_npz("shards/w0.npz")
    np.testing.assert_array_equal(arrays["clients"], np.arange(5))
    assert arrays["vectors"].dtype == np.float32
    assert run.list() == ["notes.txt", "shards", "summary.json", "t"]
    assert run.list("shards") == ["w0.npz"] and run.list("absent") == []
    assert run.exists("shards/w0.npz") and not run.exists("shards/w1.npz")
    run.delete("shards")
    assert not run.exists("shards/w0.npz")


def test_travels_as_its_uri(root):
    again = pickle.loads(pickle.dumps(root / "a"))
    assert again == root / "a"
    again.write_text("x.txt", "1")
    assert (root / "a").read_text("x.txt") == "1"
    assert (root / "a" / "x.txt").read_text() == "1"


def test_missing_and_corrupt_files_name_the_file(root):
    with pytest.raises(StorageError, match="missing.json: no such file"):
        root.read_json("missing.json")
    root.write_text("bad.npz", "not an npz")
    with pytest.raises(StorageError, match=r"bad\.npz: not a readable \.npz"):
        root.read_npz("bad.npz")
    root.write_text("bad.parquet", "nope")
    with pytest.raises(StorageError, match=r"bad\.parquet: not a readable Parquet"):
        root.read_parquet("bad.parquet")
    root.write_text("bad.json", "{")
    with pytest.raises(StorageError, match=r"bad\.json: not valid JSON"):
        root.read_json("bad.json")


def test_local_writes_leave_no_temporary_files(tmp_path):
    store = Storage(tmp_path)
    store.write_text("a.txt", "1")
    store.write_text("a.txt", "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]

    (tmp_path / "taken").mkdir()  # renaming a file onto a non-empty folder fails
    (tmp_path / "taken" / "kept.txt").write_text("kept")
    with pytest.raises(OSError):
        store.write_bytes("taken", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "taken"]
    assert (tmp_path / "taken" / "kept.txt").read_text() == "kept"


def test_relative_paths_resolve_on_the_caller(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Storage("runs")
    assert store.uri == str(tmp_path / "runs")
    assert store.local_path == tmp_path / "runs"


def test_credentials_never_appear_in_messages():
    store = Storage("s3://KEY:SECRET@bucket/p?endpoint_override=127.0.0.1:1&scheme=http")
    assert "SECRET" not in str(store) and "SECRET" not in repr(store)
    assert "SECRET" in store.uri  # what actors receive still works


class Unserializable:
    """A payload that cannot become bytes: its write fails after the target was named."""


def test_a_failed_write_keeps_the_previous_file(root):
    root.write_bytes("state.bin", b"previous")
    with pytest.raises(TypeError):
        root.write_bytes("state.bin", Unserializable())
    with pytest.raises(TypeError, match="cannot write Unserializable"):
        root.write_json("state.bin", {"x": Unserializable()})
    assert root.read_bytes("state.bin") == b"previous"
    assert root.list() == ["state.bin"], "a temporary file was left visible"


_FULL_DISK = """
import resource, signal, sys
from cluster.storage import Storage

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    Storage(sys.argv[1]).write_bytes("state.bin", b"\\0" * (1 << 20))
except OSError as exc:
    print(exc)
"""


def test_a_local_write_that_fails_midway_keeps_the_previous_file(tmp_path):
    """The disk refuses the new file after 64 KiB (a full disk, as far as the writer can tell):
    the old file must stay whole, so it may never be opened for writing itself. The limit is
    set in a child process: in this one it would also stop other threads' writes (Ray's logs)."""
    previous = bytes(range(256)) * 4
    Storage(tmp_path).write_bytes("state.bin", previous)
    child = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == 0 and "too large" in child.stdout, child.stdout + child.stderr
    assert (tmp_path / "state.bin").read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_a_place_that_cannot_be_written_is_a_storage_error_naming_it(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    blocked = Storage(tmp_path / "a-file" / "runs")
    with pytest.raises(StorageError, match="a-file/runs/.*cannot write"):
        blocked.check_writable()
    with pytest.raises(StorageError, match="cannot write"):
        blocked.write_text("x.txt", "hello")
    Storage(tmp_path / "fine").check_writable()
    assert Storage(tmp_path / "fine").list() == [], "the check leaves nothing behind"


def test_fl_sim_refuses_a_bad_storage_at_once_with_one_line(tmp_path, capsys):
    from jobs.lib.cli import run_guarded
    from jobs.fl_sim import main

    (tmp_path / "a-file").write_text("not a folder")
    code = run_guarded(main, ["--config", "configs/demo.yaml", "--storage", str(tmp_path / "a-file" / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "a-file/runs" in err and "cannot write" in err, err


def test_a_locations_parent_keeps_its_scheme_query_and_credentials():
    """A results page's folder is its location's parent: on an object store the endpoint and any
    credentials must survive (the printed form redacts them, the location itself must not)."""
    assert Storage("s3://key:secret@bucket/docs/a.md?endpoint_override=h:9000").parent.uri == \
        "s3://key:secret@bucket/docs?endpoint_override=h:9000"
    assert Storage("file:///srv/docs/a.md").parent.uri == "file:///srv/docs"
    assert Storage("/srv/docs/a.md").parent == Storage("/srv/docs")
