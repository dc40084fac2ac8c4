"""The GroupLens download helper, exercised offline against a file:// archive the test builds."""

import hashlib
import zipfile
from pathlib import Path

import pytest

from cluster.data.download import DownloadError, fetch_movielens
from cluster.data.movielens import load_movielens
from tests.unit.movielens_fixtures import write_100k


def _publish(tmp_path: Path, md5_text: str | None = "auto") -> tuple[str, Path]:
    site = tmp_path / "site"
    site.mkdir()
    src = write_100k(tmp_path / "src" / "ml-100k")
    archive = site / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(src.iterdir()):
            zf.write(file, f"ml-100k/{file.name}")
    if md5_text == "auto":
        md5_text = f"{hashlib.md5(archive.read_bytes()).hexdigest()}  ml-100k.zip\n"
    if md5_text is not None:
        (site / "ml-100k.zip.md5").write_text(md5_text)
    return site.as_uri(), archive


def test_fetch_verifies_extracts_and_caches(tmp_path: Path):
    base_url, archive = _publish(tmp_path)
    folder = fetch_movielens("ml-100k", tmp_path / "cache", base_url=base_url)
    assert (folder / "u.data").exists()
    assert load_movielens(folder).n_users == 3
    archive.unlink()  # the second call must not need the network at all
    assert fetch_movielens("ml-100k", tmp_path / "cache", base_url=base_url) == folder


def test_explicit_sha256(tmp_path: Path):
    base_url, archive = _publish(tmp_path, md5_text=None)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    folder = fetch_movielens("ml-100k", tmp_path / "cache", base_url=base_url, sha256=digest)
    assert (folder / "u.item").exists()


def test_checksum_mismatch_extracts_nothing(tmp_path: Path):
    base_url, _ = _publish(tmp_path, md5_text="0" * 32 + "  ml-100k.zip\n")
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch_movielens("ml-100k", tmp_path / "cache", base_url=base_url)
    assert not (tmp_path / "cache" / "ml-100k").exists()
    assert not (tmp_path / "cache" / "archives" / "ml-100k.zip").exists()


def test_unverifiable_archive_is_refused(tmp_path: Path):
    base_url, _ = _publish(tmp_path, md5_text=None)
    with pytest.raises(DownloadError, match="cannot fetch the published checksum"):
        fetch_movielens("ml-100k", tmp_path / "cache", base_url=base_url)
    assert not (tmp_path / "cache" / "ml-100k").exists()


def test_unknown_archive_and_missing_url(tmp_path: Path):
    with pytest.raises(DownloadError, match="unknown MovieLens archive"):
        fetch_movielens("ml-7", tmp_path)
    with pytest.raises(DownloadError, match="download failed"):
        fetch_movielens("ml-1m", tmp_path / "cache", base_url=(tmp_path / "nowhere").as_uri())


def test_cli_prints_folder_and_rejects_bad_checksum(tmp_path: Path, capsys):
    from jobs.download_movielens import main
    from jobs.lib.cli import run_guarded

    base_url, _ = _publish(tmp_path)
    assert run_guarded(main, ["ml-100k", "--cache-dir", str(tmp_path / "c1"), "--base-url", base_url]) == 0
    assert capsys.readouterr().out.strip().endswith("ml-100k")
    assert run_guarded(main, ["ml-100k", "--cache-dir", str(tmp_path / "c2"), "--base-url", base_url, "--md5", "0" * 32]) == 2
    assert "mismatch" in capsys.readouterr().err
