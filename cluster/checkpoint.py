"""Checkpoints without pickle: a state tree (dicts, lists, numbers, strings, None, numpy arrays,
torch tensors) stored as one ``<name>.npz``: the arrays, plus everything else as a JSON header
(with a format version) in the entry ``__header__``. On shared storage whoever can write a run
folder must not be able to run code in the next job, which a pickle would allow; JSON and
``allow_pickle=False`` arrays cannot. One file, so one atomic write: header and arrays always match.

Layout of a run's ``checkpoint/`` folder::

    round-000010/aggregator.npz, workers/<worker>.npz
    latest.json     {"format": ..., "version": 1, "round": 10, "folder": "round-000010"}

``latest.json`` is written last, so it only ever names a round whose files are all there.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np

from cluster.storage import Storage, StorageError

FORMAT = "fairfleet-checkpoint"
VERSION = 1
LATEST = "latest.json"
_HEADER = "__header__"
_ARRAY, _TENSOR, _ITEMS, _TUPLE = "__array__", "__tensor__", "__items__", "__tuple__"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or written by something else."""


def encode(tree: Any, arrays: dict[str, np.ndarray], where: str = "state") -> Any:
    """The JSON-able form of ``tree``; its arrays (and torch tensors, e.g. in an optimizer's
    state) are moved into ``arrays`` under fresh keys."""
    if isinstance(tree, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = tree
        return {_ARRAY: key}
    if _is_tensor(tree):
        key = f"a{len(arrays)}"
        arrays[key] = tree.detach().cpu().numpy()
        return {_TENSOR: key}
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, dict):
        if all(isinstance(k, str) for k in tree):
            return {k: encode(v, arrays, f"{where}.{k}") for k, v in tree.items()}
        return {_ITEMS: [[encode(k, arrays, where), encode(v, arrays, f"{where}[{k!r}]")] for k, v in tree.items()]}
    if isinstance(tree, tuple):
        return {_TUPLE: [encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(tree)]}
    if isinstance(tree, list):
        return [encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(tree)]
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"{where}: cannot checkpoint a {type(tree).__name__}")


def decode(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(tree, dict):
        if len(tree) == 1:
            ((marker, value),) = tree.items()
            if marker == _ARRAY:
                return arrays[value]
            if marker == _TENSOR:
                import torch

                return torch.from_numpy(np.array(arrays[value]))
            if marker == _ITEMS:
                return {decode(k, arrays): decode(v, arrays) for k, v in value}
            if marker == _TUPLE:
                return tuple(decode(v, arrays) for v in value)
        return {k: decode(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [decode(v, arrays) for v in tree]
    return tree


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def write_state(folder: Storage, name: str, kind: str, state: Any) -> None:
    arrays: dict[str, np.ndarray] = {}
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, "state": encode(state, arrays)}
    header = np.frombuffer(json.dumps(payload).encode("utf-8"), dtype=np.uint8)
    folder.write_npz(f"{name}.npz", **{_HEADER: header}, **arrays)


def read_state(folder: Storage, name: str, kind: str) -> Any:
    where = folder.describe(f"{name}.npz")
    try:
        arrays = folder.read_npz(f"{name}.npz")
    except StorageError as exc:
        raise CheckpointError(str(exc)) from None
    if _HEADER not in arrays:
        raise CheckpointError(f"{where}: not a FairFleet checkpoint (no header)")
    try:
        header = json.loads(arrays.pop(_HEADER).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where}: corrupt checkpoint header ({exc})") from None
    _check_header(header, where)
    if header.get("kind") != kind:
        raise CheckpointError(f"{where}: a {header.get('kind')!r} checkpoint, not a {kind!r} one")
    try:
        return decode(header["state"], arrays)
    except KeyError as exc:
        raise CheckpointError(f"{where}: checkpoint arrays missing ({exc})") from None


def _read_header(folder: Storage, name: str) -> dict:
    try:
        header = folder.read_json(name)
    except StorageError as exc:
        raise CheckpointError(str(exc)) from None
    _check_header(header, folder.describe(name))
    return header


def _check_header(header: Any, where: str) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a FairFleet checkpoint")
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"{where}: checkpoint format version {header.get('version')}, this FairFleet reads version {VERSION}"
        )


def round_folder(checkpoint: Storage, round_index: int) -> Storage:
    return checkpoint / f"round-{round_index:06d}"


def commit(checkpoint: Storage, round_index: int, keep: int = 2) -> None:
    """Point ``latest.json`` at ``round_index``'s folder, then drop all but the newest ``keep``."""
    folder = round_folder(checkpoint, round_index).name
    checkpoint.write_json(LATEST, {"format": FORMAT, "version": VERSION, "round": round_index, "folder": folder})
    rounds = sorted(n for n in checkpoint.list() if n.startswith("round-"))
    for stale in rounds[:-keep]:
        if stale != folder:
            checkpoint.delete(stale)


def latest(checkpoint: Storage) -> Optional[Storage]:
    """The folder of the last committed round, or None when no checkpoint was ever committed."""
    if not checkpoint.exists(LATEST):
        return None
    header = _read_header(checkpoint, LATEST)
    folder = header.get("folder")
    if not isinstance(folder, str) or not folder.startswith("round-"):
        raise CheckpointError(f"{checkpoint.describe(LATEST)}: names no round folder")
    return checkpoint / folder
