"""Fetch an official GroupLens MovieLens archive: checksum-verified, cached, extracted atomically.

urllib is used rather than requests or pooch because it also opens ``file://`` addresses,
which lets the tests exercise the whole path offline against an archive they build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from cluster.atomic import atomic_path

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
ARCHIVES = ("ml-100k", "ml-1m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest")
_RATING_FILES = ("u.data", "ratings.dat", "ratings.csv")
_DONE_MARKER = ".fairfleet-verified"


class DownloadError(RuntimeError):
    """The archive could not be fetched, verified or unpacked; the message says which and why."""


def fetch_movielens(
    name: str,
    cache_dir: Path,
    base_url: str = GROUPLENS_BASE_URL,
    sha256: Optional[str] = None,
    md5: Optional[str] = None,
    timeout_s: float = 60.0,
) -> Path:
    """The folder holding ``name``'s files, downloading and verifying the archive if needed.

    The expected checksum is ``sha256`` or ``md5`` when given, else the ``<archive>.md5`` file
    GroupLens publishes beside each archive. An unverifiable archive is never extracted.
    """
    if name not in ARCHIVES:
        raise DownloadError(f"unknown MovieLens archive {name!r}; known: {', '.join(ARCHIVES)}")
    cache_dir = Path(cache_dir)
    target = cache_dir / name
    if (target / _DONE_MARKER).exists():
        return _data_folder(target)

    url = base_url.rstrip("/") + f"/{name}.zip"
    archive = cache_dir / "archives" / f"{name}.zip"
    if not archive.exists():
        _download(url, archive, timeout_s)
    algorithm, expected = _expected_checksum(url, sha256, md5, timeout_s)
    actual = _file_digest(archive, algorithm)
    if actual != expected:
        archive.unlink(missing_ok=True)  # a corrupt download must not be reused
        raise DownloadError(f"{url}: {algorithm} mismatch: expected {expected}, got {actual}; the archive was deleted")
    _extract(archive, target, f"{algorithm}:{actual}")
    return _data_folder(target)


def _download(url: str, dest: Path, timeout_s: float) -> None:
    try:
        with (
            atomic_path(dest) as tmp,
            tmp.open("wb") as out,
            urllib.request.urlopen(url, timeout=timeout_s) as response,
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DownloadError(f"{url}: download failed: {exc}") from None


def _expected_checksum(url: str, sha256: Optional[str], md5: Optional[str], timeout_s: float) -> tuple[str, str]:
    if sha256:
        return "sha256", sha256.strip().lower()
    if md5:
        return "md5", md5.strip().lower()
    checksum_url = url + ".md5"
    try:
        with urllib.request.urlopen(checksum_url, timeout=timeout_s) as response:
            text = response.read().decode("ascii", "replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DownloadError(
            f"{checksum_url}: cannot fetch the published checksum ({exc}); pass sha256= or md5= to verify"
        ) from None
    # The file reads either "<hex>  name.zip" or "MD5 (name.zip) = <hex>".
    tokens = [
        t for t in text.replace("=", " ").split() if len(t) == 32 and all(c in "0123456789abcdefABCDEF" for c in t)
    ]
    if not tokens:
        raise DownloadError(f"{checksum_url}: no MD5 digest found in {text[:80]!r}")
    return "md5", tokens[0].lower()


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(archive: Path, target: Path, verified: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            root = staging.resolve()
            for member in zf.namelist():
                if not (staging / member).resolve().is_relative_to(root):
                    raise DownloadError(f"{archive}: member {member!r} would unpack outside the cache folder")
            zf.extractall(staging)
        (staging / _DONE_MARKER).write_text(verified + "\n")
        if target.exists():
            shutil.rmtree(target)  # an earlier, unverified attempt
        os.rename(staging, target)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive}: not a valid zip archive: {exc}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _data_folder(target: Path) -> Path:
    for rating_file in _RATING_FILES:
        found = sorted(target.rglob(rating_file))
        if found:
            return found[0].parent
    raise DownloadError(f"{target}: the archive holds none of {', '.join(_RATING_FILES)}")
