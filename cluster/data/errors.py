"""Errors raised for input a user can fix: they name the file and, where known, the line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


class DataFormatError(ValueError):
    """A data file is missing, empty or malformed."""

    def __init__(self, path: Path | str, reason: str, line: Optional[int] = None):
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {reason}")
