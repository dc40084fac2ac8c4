""" "Did you mean" for an unknown config key: a close spelling among the keys of its own section,
or, for a key that lives in another section (``fl.worker_num_cpus`` belongs under
``fl.runtime``), the full path where a setting of that name is."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Iterator, Optional

from pydantic import BaseModel


def suggestion(root: type[BaseModel], loc: tuple, tag: Optional[str] = None) -> Optional[str]:
    """A hint for the unknown key at ``loc`` (its section's path, then the key), or None.
    ``tag``: the kind of the tagged-union member the section is, when it is one."""
    *section, key = (str(part) for part in loc)
    fields = _section_fields(root, section, tag) - {key}  # the key itself is no hint, whatever kind has it
    close = difflib.get_close_matches(key, sorted(fields), n=1, cutoff=0.75)
    if close:
        return ".".join([*section, close[0]])
    here = ".".join(str(part) for part in loc)
    elsewhere = sorted(path for path in _paths(root) if path.rsplit(".", 1)[-1] == key and path != here)
    return " or ".join(elsewhere[:3]) or None


def kinds_with(root: type[BaseModel], loc: tuple, tag: Optional[str]) -> list[str]:
    """The other kinds of a tagged-union section that do have the unknown key at ``loc``
    (``fl.strategy.phi`` under fedavg: cali3f has it), so the message can say which kind to pick."""
    if tag is None:
        return []
    *section, key = (str(part) for part in loc)
    models = _section_models(root, section)
    return sorted({str(_kind_of(m)) for m in models if key in m.model_fields and _kind_of(m) not in (tag, None)})


def _section_models(root: type[BaseModel], section: list[str]) -> list[type[BaseModel]]:
    """The models a section path can hold (several where a tagged union stands on the way)."""
    models = [root]
    for part in section:
        models = [
            sub
            for model in models
            if part in model.model_fields
            for sub in _models_in(model.model_fields[part].annotation)
        ]
    return models


def _section_fields(root: type[BaseModel], section: list[str], tag: Optional[str]) -> set[str]:
    models = _section_models(root, section)
    if tag is not None:
        models = [m for m in models if _kind_of(m) in (tag, None)] or models
    return {name for model in models for name in model.model_fields}


def _kind_of(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("kind")
    return field.default if field is not None else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None:
        return []
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        args = args[:1]
    elif origin not in (typing.Union, types.UnionType, list, tuple, dict):
        return []
    return [model for arg in args for model in _models_in(arg)]


def _paths(model: type[BaseModel], prefix: str = "", depth: int = 0) -> Iterator[str]:
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path
        if depth < 4:
            for sub in _models_in(field.annotation):
                yield from _paths(sub, f"{path}.", depth + 1)
