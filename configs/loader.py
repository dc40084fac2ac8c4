"""Load a :class:`SimConfig` from YAML plus ``--set a.b=value`` overrides.

Every failure becomes a :class:`ConfigError` whose message names the file and the field path,
so a job can print it and exit with code 2 before it writes anything.

Where relative paths point:

* a config file's path is read relative to the current directory, and, when no such file is
  there, relative to the project folder (the folder that holds ``configs/``), so
  ``--config configs/demo.yaml`` names the packaged preset from any directory;
* a relative ``data.path`` written in a packaged config (a file in ``configs/``) is found the same
  way: in the current directory when it exists there, else relative to the project folder;
* every other relative path, a ``data.path`` given with ``--set`` or written in a config of your
  own included, and ``storage`` (where the outputs go), is relative to the current directory.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml
from pydantic import ValidationError

from configs.fl_schema import BARE_NAME_KEYS, TAGGED_UNIONS
from configs.schema import SimConfig
from configs.suggest import kinds_with, suggestion

CONFIG_DIR = Path(__file__).resolve().parent
PROJECT_DIR = CONFIG_DIR.parent


class ConfigError(ValueError):
    """A config file, an override or a value is wrong; the message says what and where."""


def find_config(path: str | Path) -> Path:
    """``path`` itself when it exists or is absolute, else the same relative path under the project
    folder when a file is there; otherwise ``path`` unchanged (reading it then says where it looked)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    packaged = PROJECT_DIR / path
    return packaged if packaged.exists() else path


def _not_found(path: Path) -> str:
    if path.is_absolute():
        return f"{path}: config file not found"
    return (
        f"{path}: config file not found (looked for {Path.cwd() / path} and, in the project folder, "
        f"{PROJECT_DIR / path})"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(_not_found(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, path: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if loaded is None:
        # An empty file is valid YAML and would silently run every default: say so.
        warnings.warn(f"{path}: the config file is empty, so every setting takes its default", stacklevel=2)
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(loaded).__name__}")
    return loaded


def apply_override(tree: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Return a copy of ``tree`` with ``a.b.0.c=value`` applied; the value is parsed as YAML."""
    key, sep, raw_value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{assignment}': expected KEY=VALUE, e.g. fl.rounds=5")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{assignment}': value is not valid YAML: {exc}") from None
    parts = key.strip().split(".")
    result = copy.deepcopy(tree)
    node: Any = result
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, where, assignment)]
        elif isinstance(node, dict):
            if part in BARE_NAME_KEYS and isinstance(node.get(part), str):
                node[part] = {BARE_NAME_KEYS[part]: node[part]}
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override '{assignment}': '{where}' is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key, assignment)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override '{assignment}': '{'.'.join(parts[:-1])}' is a value, not a section")
    return result


def _list_index(node: list, part: str, where: str, assignment: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"override '{assignment}': '{where}' needs an index below {len(node)}")
    return int(part)


def _format_validation(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} invalid setting(s)"]
    for err in exc.errors():
        loc, tag = _untagged(err["loc"])
        path = ".".join(str(p) for p in loc) or "(root)"
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = (
                f"unknown key (not a setting of kind {tag!r})" if tag else "unknown key (not a setting of this section)"
            )
            kinds = kinds_with(SimConfig, tuple(loc), tag)
            hint = None if kinds else suggestion(SimConfig, tuple(loc), tag)
            if kinds:
                reason += f"; {loc[-1]} is a setting of kind {' or '.join(repr(k) for k in kinds)}"
            elif hint:
                reason += f"; did you mean {hint}?"
        shown = err.get("input")
        suffix = "" if err["type"] == "extra_forbidden" or isinstance(shown, dict) else f" (got {shown!r})"
        lines.append(f"  {path}: {reason}{suffix}")
    return "\n".join(lines)


def _untagged(loc: tuple) -> tuple[tuple, Optional[str]]:
    """An error's location without the member tag pydantic puts after a tagged union's field,
    and that tag (the member's kind), if any."""
    for i, part in enumerate(loc[:-1]):
        if part in TAGGED_UNIONS and loc[i + 1] in TAGGED_UNIONS[part]:
            return loc[: i + 1] + loc[i + 2 :], loc[i + 1]
    return loc, None


def _merge(defaults: Any, given: Any) -> Any:
    """Sections merge key by key; a value or a list given in the file replaces the default."""
    if isinstance(defaults, dict) and isinstance(given, dict):
        merged = dict(defaults)
        for key, value in given.items():
            merged[key] = _merge(defaults.get(key), value) if key in defaults else value
        return merged
    return given


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> SimConfig:
    """Read ``path`` (or the defaults when None), apply overrides in order, validate.

    The file is laid over the defaults first, so an override can reach into a default list
    (``tiers.profiles.0.share=2``) that the file does not spell out. Relative paths are found as
    the module docstring says.
    """
    if path is None:
        return _validate({}, "defaults", overrides)
    file = find_config(path)
    return _validate(_anchor_data_path(_read_yaml(file), file), str(file), overrides)


def _anchor_data_path(given: dict[str, Any], file: Path) -> dict[str, Any]:
    """A packaged config's relative ``data.path`` means the data beside the project (the
    MovieLens presets' ``../shared/...``), wherever the job is started: when it is not there
    relative to the current directory, it is made absolute under the project folder. From the
    project folder itself nothing changes, so neither do the resolved config and its hash."""
    data = given.get("data")
    packaged = CONFIG_DIR in file.resolve().parents
    if not packaged or not isinstance(data, dict) or not isinstance(data.get("path"), str):
        return given
    written = Path(os.path.expandvars(os.path.expanduser(data["path"])))
    if written.is_absolute() or written.exists() or Path.cwd().resolve() == PROJECT_DIR:
        return given
    return {**given, "data": {**data, "path": os.path.normpath(PROJECT_DIR / written)}}


def load_config_text(text: str, source: str, overrides: Iterable[str] = ()) -> SimConfig:
    """As ``load_config``, for YAML read from elsewhere (a run folder in object storage);
    ``source`` names it in messages."""
    return _validate(_parse_yaml(text, source), source, overrides)


def _validate(given: dict[str, Any], source: str, overrides: Iterable[str]) -> SimConfig:
    overrides = list(overrides)
    tree = _merge(SimConfig().model_dump(mode="json"), given)
    for assignment in overrides:
        tree = apply_override(tree, assignment)
    if overrides:
        source += " with --set " + " ".join(overrides)
    try:
        return SimConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source)) from None


def config_hash(cfg: SimConfig) -> str:
    """A short, stable identity for a resolved config: stored in every result table. Where the
    files go (``storage``) and where the actors run (``fl.runtime``) are no part of what was
    computed, so they are left out."""
    canonical = json.dumps(
        cfg.model_dump(mode="json", exclude={"storage": True, "fl": {"runtime"}}), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def preset_paths() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.yaml"))
