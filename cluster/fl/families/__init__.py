"""Model families as plug-ins of the one FL engine. A family is one folder here: its model maths
(``model.py``, torch-free, and ``net.py``), its setup from the config, its server half (``ops.py``:
``ModelOps``, the cost model, settings, merge and FedAvg over ``ClientUpdate`` arrays, evaluation
summary) and its device half (``worker.py``: a ``WorkerCore`` that trains, evaluates and names the
vector a device is clustered by), with its local training and upload encoding beside them. Its
``__init__.py`` exports ``FAMILY`` (``base.Family``); ``family_of`` finds it by ``model.kind``.

Adding a family is a folder here and its ``model.kind`` values in ``configs/``; nothing else in the
engine, the actors or the jobs changes."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from cluster.fl.families.base import Family

__all__ = ["Family", "families", "family_of"]


@cache
def families() -> tuple[Family, ...]:
    """Every family folder's ``FAMILY``, in folder-name order."""
    found = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.ispkg:
            found.append(importlib.import_module(f"{__name__}.{module.name}").FAMILY)
    return tuple(found)


def family_of(model_kind: str) -> Family:
    """The family whose models include ``model_kind`` (``model.kind``); ValueError naming the
    known kinds when none does."""
    for family in families():
        if model_kind in family.model_kinds:
            return family
    known = sorted(kind for family in families() for kind in family.model_kinds)
    raise ValueError(f"no model family has model.kind {model_kind!r}; the known kinds: {known}")
