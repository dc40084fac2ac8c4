"""Atomic writes on this machine's disk: the written file itself is renamed into place, so a
reader sees the old file or the whole new one, and nothing else is left in the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster.atomic import atomic_path


def test_the_written_file_is_renamed_into_place(tmp_path: Path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        written = tmp.stat().st_ino
        assert target.read_bytes() == b"old", "the target changed before the block ended"
    # A rename keeps the inode; a copy would make a new file and leave the temporary one behind.
    assert target.stat().st_ino == written
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_a_writer_that_appends_a_suffix_writes_the_same_file(tmp_path: Path):
    target = tmp_path / "arrays.npz"
    with atomic_path(target, suffix=".npz") as tmp:
        np.savez(tmp, x=np.arange(3))  # adds '.npz' unless the name already ends with it
    with np.load(target) as arrays:
        assert arrays["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz"]
