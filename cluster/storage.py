"""One place where every file a job writes or reads at run time lives: a local path (an NFS mount
is one), ``file://``, ``s3://bucket/prefix?endpoint_override=...&region=...`` or ``gs://...``.

On a cluster each node has its own disk, so a path on the driver means nothing to an actor on
another node; a ``Storage`` travels as its URI string and every process opens it for itself.
Filesystems come from ``pyarrow.fs`` (the layer Ray Train/Tune's ``storage_path`` stands on).

Writes are atomic: on a filesystem a temporary name then a rename; on an object store one
complete put of a payload already serialized in memory, so a failure never leaves half an
object under the real name.
"""

from __future__ import annotations

import builtins
import io
import json
import posixpath
import uuid
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

LOCAL_SCHEMES = ("", "file")


class StorageError(OSError):
    """A storage location that cannot be opened or a file in it that is missing or unreadable."""


def _split(uri: str) -> tuple[str, str, str, str]:
    parts = urlsplit(uri)
    return parts.scheme, parts.netloc, parts.path, parts.query


@lru_cache(maxsize=64)
def _filesystem(scheme: str, netloc: str, query: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, the path of the URI's authority inside it); cached, since opening an object
    store client costs far more than a file operation."""
    if scheme in LOCAL_SCHEMES:
        return pafs.LocalFileSystem(), ""
    location = f"{scheme}://{netloc}" + (f"?{query}" if query else "")
    try:
        return pafs.FileSystem.from_uri(location)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise StorageError(f"cannot open storage {_redact(location)}: {exc}") from None


def _redact(uri: str) -> str:
    """The URI without credentials, for messages."""
    scheme, netloc, path, query = _split(uri)
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "") if scheme else uri


class Storage:
    """A folder in some filesystem. Cheap to create and to pickle (only its URI travels)."""

    def __init__(self, location: str | Path):
        location = str(location)
        scheme, netloc, path, query = _split(location)
        if len(scheme) == 1:  # a Windows drive letter is a path, not a scheme
            scheme = ""
        if scheme == "":
            # Resolved here, on the process that was given it (the driver), before any actor sees it.
            location = str(Path(location).expanduser().resolve())
            path = location
        elif scheme == "file":
            path = path or "/"
        self.uri = location.rstrip("/") if len(location) > 1 else location
        self._scheme, self._netloc, self._query = scheme, netloc, query
        self._path = path.rstrip("/") or "/"

    def __reduce__(self):
        return (Storage, (self.uri,))

    def __repr__(self) -> str:
        return f"Storage({_redact(self.uri)!r})"

    def __str__(self) -> str:
        return _redact(self.uri)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Storage) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    # ------------------------------------------------------------------ locations
    def __truediv__(self, name: str) -> "Storage":
        """A sub-folder (or a file's location, for ``read_*("")``)."""
        name = str(name).strip("/")
        if not name:
            return self
        if self._scheme == "":
            return Storage(posixpath.join(self.uri, name))
        base = f"{self._scheme}://{self._netloc}{posixpath.join(self._path, name)}"
        return Storage(base + (f"?{self._query}" if self._query else ""))

    @property
    def parent(self) -> "Storage":
        """The folder that holds this location (a file's folder), on the same filesystem."""
        folder = posixpath.dirname(self._path) or "."
        if self._scheme == "":
            return Storage(folder)
        return Storage(f"{self._scheme}://{self._netloc}{folder}" + (f"?{self._query}" if self._query else ""))

    @property
    def name(self) -> str:
        return posixpath.basename(self._path)

    @property
    def is_local(self) -> bool:
        return self._scheme in LOCAL_SCHEMES

    @property
    def local_path(self) -> Optional[Path]:
        """The folder on this machine's filesystem (local paths, NFS mounts), else None."""
        return Path(self._path) if self.is_local else None

    def _fs_path(self, rel: str = "") -> tuple[pafs.FileSystem, str]:
        fs, authority = _filesystem(self._scheme, self._netloc, self._query)
        root = authority + self._path if authority else self._path
        rel = str(rel).strip("/")
        return fs, (posixpath.join(root, rel) if rel else root)

    def describe(self, rel: str = "") -> str:
        """The file's location for messages: no credentials, no connection options."""
        target = self / rel if rel else self
        return str(target).split("?", 1)[0]

    # ------------------------------------------------------------------ queries
    def exists(self, rel: str = "") -> bool:
        fs, path = self._fs_path(rel)
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def list(self, rel: str = "") -> list[str]:
        """Names directly inside the folder ``rel`` (sorted); empty when it does not exist."""
        fs, path = self._fs_path(rel)
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(posixpath.basename(i.path) for i in infos)

    # ------------------------------------------------------------------ bytes
    def read_bytes(self, rel: str = "") -> bytes:
        fs, path = self._fs_path(rel)
        try:
            with fs.open_input_stream(path) as handle:
                return handle.read()
        except FileNotFoundError:
            raise StorageError(f"{self.describe(rel)}: no such file") from None
        except OSError as exc:
            if fs.get_file_info(path).type == pafs.FileType.NotFound:
                raise StorageError(f"{self.describe(rel)}: no such file") from None
            raise StorageError(f"{self.describe(rel)}: cannot read ({exc})") from None

    def write_bytes(self, rel: str, data: bytes) -> None:
        # Checked before any stream opens: an object store's stream that fails in Python still
        # completes its upload when it closes, putting an empty or partial object under the name.
        view = memoryview(data)
        try:
            self._write(rel, view)
        except StorageError:
            raise
        except OSError as exc:  # no such folder, no permission, a full disk: name the place
            raise StorageError(f"{self.describe(rel)}: cannot write ({exc})") from None

    def check_writable(self) -> None:
        """StorageError naming this place unless a file can be written and removed here: asked
        before a job's long first phase, so a bad location fails in a second, not at the end."""
        probe = f".fairfleet-write-check-{uuid.uuid4().hex}"
        self.write_bytes(probe, b"")
        try:
            self.delete(probe)
        except OSError as exc:
            raise StorageError(f"{self.describe(probe)}: written but cannot be removed ({exc})") from None

    def _write(self, rel: str, data: memoryview) -> None:
        fs, path = self._fs_path(rel)
        if not self.is_local:
            with fs.open_output_stream(path) as handle:  # one put: visible only once complete
                handle.write(data)
            return
        parent = posixpath.dirname(path)
        fs.create_dir(parent, recursive=True)
        tmp = posixpath.join(parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with fs.open_output_stream(tmp) as handle:
                handle.write(data)
            fs.move(tmp, path)  # rename: atomic on one filesystem, NFS included
        except BaseException:
            if fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                fs.delete_file(tmp)
            raise

    def delete(self, rel: str = "") -> None:
        """Remove a file or a folder and everything under it; nothing when it is absent."""
        fs, path = self._fs_path(rel)
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif kind != pafs.FileType.NotFound:
            fs.delete_file(path)

    # ------------------------------------------------------------------ formats
    def read_text(self, rel: str = "") -> str:
        return self.read_bytes(rel).decode("utf-8")

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def read_json(self, rel: str = "") -> Any:
        text = self.read_text(rel)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.describe(rel)}: not valid JSON ({exc})") from None

    def write_json(self, rel: str, payload: Any) -> None:
        self.write_text(rel, json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n")

    # builtins.list: inside this class a bare ``list`` names the method above.
    def read_parquet(self, rel: str = "", columns: Optional[builtins.list[str]] = None) -> pa.Table:
        fs, path = self._fs_path(rel)
        try:
            return pq.read_table(path, filesystem=fs, columns=columns)
        except FileNotFoundError:
            raise StorageError(f"{self.describe(rel)}: no such file") from None
        except (pa.ArrowInvalid, OSError) as exc:
            raise StorageError(f"{self.describe(rel)}: not a readable Parquet file ({exc})") from None

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        self.write_bytes(rel, buffer.getvalue().to_pybytes())

    def read_npz(self, rel: str = "") -> dict[str, np.ndarray]:
        """Every array of an .npz file (no pickled objects: a file cannot run code on load)."""
        data = self.read_bytes(rel)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                return {name: arrays[name] for name in arrays.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise StorageError(f"{self.describe(rel)}: not a readable .npz file ({exc})") from None

    def write_npz(self, rel: str, **arrays: np.ndarray) -> None:
        buffer = io.BytesIO()
        # numpy's default, named so an array's name cannot be taken for this keyword.
        np.savez(buffer, allow_pickle=True, **arrays)
        self.write_bytes(rel, buffer.getvalue())


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (Path, Storage)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def as_storage(location: "Storage | str | Path") -> Storage:
    return location if isinstance(location, Storage) else Storage(location)
