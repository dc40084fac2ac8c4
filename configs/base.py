"""What every config section shares: strictness (unknown keys are errors, values frozen) and
storage locations that may be local paths or URIs."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _location(value):
    """A local path (``~`` and ``$VARS`` expanded) or a URI, kept as a string: a URI is no Path."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and "://" not in value:
        value = os.path.expandvars(os.path.expanduser(value))
    return value


Location = Annotated[str, BeforeValidator(_location)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
