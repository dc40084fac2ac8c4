"""Delimited text files: a fast columnar path for big rating files, an exact path for errors.

Rating files reach 25M lines, so they are parsed by pyarrow's multi-threaded CSV reader. When
that reader rejects a file its message rarely names the line, so we re-scan the file in plain
Python to find the first bad line and report ``file:line: reason``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from cluster.data.errors import DataFormatError

RATING_COLUMNS = ("user", "item", "rating", "timestamp")
_RATING_TYPES = {"user": pa.int64(), "item": pa.int64(), "rating": pa.float64(), "timestamp": pa.int64()}
_RATING_CONVERTERS: dict[str, Callable[[str], object]] = {
    "user": int,
    "item": int,
    "rating": float,
    "timestamp": int,
}


def require_nonempty(path: Path) -> None:
    if not path.exists():
        raise DataFormatError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataFormatError(path, "file is empty")


def read_ratings(path: Path, separator: str, header: bool) -> dict[str, np.ndarray]:
    """Columns user, item (int64), rating (float64), timestamp (int64) of a rating file."""
    require_nonempty(path)
    data = path.read_bytes()
    if len(separator) > 1:
        # pyarrow takes one-byte delimiters only; ML-1M's '::' never occurs inside a rating row.
        data = data.replace(separator.encode(), b"\t")
        delimiter = "\t"
    else:
        delimiter = separator
    read_options = pacsv.ReadOptions(column_names=list(RATING_COLUMNS), skip_rows=1 if header else 0)
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=read_options,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=_RATING_TYPES, strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        _raise_first_bad_line(path, separator, header, RATING_COLUMNS, _RATING_CONVERTERS, fallback=str(exc))
        raise AssertionError("unreachable") from exc
    if table.num_rows == 0:
        raise DataFormatError(path, "no rating rows")
    columns = {name: table.column(name) for name in RATING_COLUMNS}
    for name, column in columns.items():
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataFormatError(path, f"missing value in column '{name}'", line=data_line_number(path, row, header))
    arrays = {name: column.to_numpy() for name, column in columns.items()}
    for name in ("user", "item"):
        negative = np.flatnonzero(arrays[name] < 0)
        if len(negative):
            raise DataFormatError(
                path,
                f"{name} id must be >= 0, got {arrays[name][negative[0]]}",
                line=data_line_number(path, int(negative[0]), header),
            )
    bad_rating = np.flatnonzero(~np.isfinite(arrays["rating"]))
    if len(bad_rating):
        raise DataFormatError(
            path, "rating is not a finite number", line=data_line_number(path, int(bad_rating[0]), header)
        )
    return arrays


def _raise_first_bad_line(
    path: Path,
    separator: str,
    header: bool,
    names: Sequence[str],
    converters: dict[str, Callable[[str], object]],
    fallback: str,
) -> None:
    for line_no, fields in iter_fields(path, separator, header, encoding="latin-1", quoted=False):
        if len(fields) != len(names):
            raise DataFormatError(
                path, f"expected {len(names)} fields separated by {separator!r}, got {len(fields)}", line=line_no
            )
        for name, value in zip(names, fields):
            try:
                converters[name](value)
            except ValueError:
                kind = "an integer" if converters[name] is int else "a number"
                raise DataFormatError(path, f"field '{name}' is not {kind}: {value!r}", line=line_no) from None
    raise DataFormatError(path, f"cannot parse: {fallback}")


def iter_fields(
    path: Path, separator: str, header: bool, encoding: str, quoted: bool
) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, fields) for every non-blank data line."""
    require_nonempty(path)
    with path.open("r", encoding=encoding, newline="") as handle:
        if quoted:
            reader = csv.reader(handle, delimiter=separator)
            for fields in reader:
                if reader.line_num == 1 and header:
                    continue
                if fields:
                    yield reader.line_num, fields
            return
        for line_no, line in enumerate(handle, start=1):
            if line_no == 1 and header:
                continue
            stripped = line.rstrip("\r\n")
            if stripped:
                yield line_no, stripped.split(separator)


def data_line_number(path: Path, row: int, header: bool) -> int:
    """The 1-based line of data row ``row`` (blank lines are skipped by the fast reader)."""
    seen = -1
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line_no == 1 and header:
                continue
            if line.strip():
                seen += 1
                if seen == row:
                    return line_no
    return line_no


def parse_int(path: Path, line_no: int, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(path, f"field '{name}' is not an integer: {value!r}", line=line_no) from None
