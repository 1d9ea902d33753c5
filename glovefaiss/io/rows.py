"""Row files: Parquet, JSONL (one JSON object a line) or plain text (one item a line).

The one reader behind query files (``glovefaiss query --queries``, the build's
``--tuning-queries``), training data (:mod:`glovefaiss.train.data`) and evaluation inputs
(:mod:`glovefaiss.io.beir`). Parquet is recognised by its magic bytes, JSONL by the suffix
``.jsonl``, ``.ndjson`` or ``.json``, CSV with a header row by ``.csv`` (``.tsv``: tab-separated);
anything else is plain text where the caller accepts it, JSONL where it does not. Ids are in a column ``id`` or ``_id`` (BEIR's name), texts in ``text``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError, QueryError

ID_COLUMNS = ("id", "_id")
TEXT_COLUMN = "text"
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv", ".tsv")  # with a header row; .tsv tab-separated


def is_parquet(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def read_rows(path: str | Path, *, lines: bool = False, blank_lines: bool = False) -> list[dict]:
    """Every row of ``path`` as a dict; with ``lines``, a plain-text file gives ``{"id": n, "text": line}``
    for each non-blank line (n counts from 1), and for blank ones too with ``blank_lines``. An empty
    file gives no rows; the caller decides if that is an error."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    if is_parquet(path):
        return pq.read_table(path).to_pylist()
    if path.suffix.lower() == ".parquet":
        raise DataError(f"{path} is not a readable Parquet file (it does not start with PAR1); "
                        "give a Parquet file, or name a text or JSONL file .txt or .jsonl")
    if path.suffix.lower() in CSV_SUFFIXES:
        return _read_csv(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is neither Parquet nor UTF-8 text ({e.reason} at byte {e.start}); "
                        "give a Parquet, JSONL or text file") from None
    if lines and path.suffix.lower() not in JSONL_SUFFIXES:
        return [{"id": n, TEXT_COLUMN: line} for n, line in enumerate(text.splitlines(), 1)
                if blank_lines or line.strip()]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: each line must be a JSON object")
        rows.append(row)
    return rows


def _read_csv(path: Path) -> list[dict]:
    # Every value stays a string (no guessing: "007" is not 7, "2024-01-01" not a date); ids are
    # made ints only when every one is written as one, as a JSONL file would give them. TSV has no
    # quoting (STS-style text holds unbalanced quotes); CSV quotes may hold commas and newlines.
    import csv

    tsv = path.suffix.lower() == ".tsv"
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: a byte-order mark is not header text
            reader = csv.DictReader(f, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
            rows = []
            for r in reader:
                if None in r:  # more fields than the header names: a text with an unquoted comma
                    raise DataError(f"{path}:{reader.line_num}: more fields than the header's "
                                    f"{len(reader.fieldnames)}; quote texts that hold a comma")
                rows.append(r)
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); give a UTF-8 CSV file") from None
    except csv.Error as e:
        raise DataError(f"{path} is not a readable CSV file ({e})") from None
    for name in ID_COLUMNS:
        if rows and name in rows[0]:
            for r in rows:
                if not (r.get(name) or "").strip():
                    r[name] = None  # an empty field is no id (read_queries names the row)
            if all(r[name] is not None and _INT.fullmatch(r[name]) for r in rows):
                for r in rows:
                    r[name] = int(r[name])
    return rows


_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def column(rows: Sequence[dict], names: Sequence[str], path: str | Path) -> str:
    """The first of ``names`` that the first row has."""
    for name in names:
        if name in rows[0]:
            return name
    wanted = " or ".join(repr(n) for n in names)
    raise DataError(f"{path} has no {wanted} column; columns present: {', '.join(rows[0])}")


def ids_and_texts(rows: Sequence[dict], path: str | Path, *, title: bool = False) -> tuple[list[Any], list[str]]:
    """(ids, texts) of ``rows``: id from ``id``/``_id``, text from ``text`` (a missing value is "").

    ``title``: a non-empty ``title`` is joined before the text with a space, as BEIR's dense
    retrievers do.
    """
    id_col = column(rows, ID_COLUMNS, path)
    text_col = column(rows, (TEXT_COLUMN,), path)
    ids, texts = [], []
    for n, row in enumerate(rows, 1):
        if row.get(id_col) is None:
            raise DataError(f"{path}: row {n} has no {id_col!r}")
        ids.append(row[id_col])
        text = row.get(text_col) or ""
        if title:
            text = " ".join(x for x in ((row.get("title") or "").strip(), text.strip()) if x)
        texts.append(text)
    return ids, texts


def read_texts(path: str | Path, *, title: bool = False, lines: bool = False) -> tuple[list[Any], list[str]]:
    """(ids, texts) of a row file (see :func:`read_rows` and :func:`ids_and_texts`); no rows is an error."""
    rows = read_rows(path, lines=lines)
    if not rows:
        raise DataError(f"{path} has no rows")
    return ids_and_texts(rows, path, title=title)


def read_queries(path: str | Path, *, blank_lines: bool = False) -> tuple[list[Any], list[str]]:
    """(ids, texts) of a query file: Parquet, JSONL or CSV with ``id`` (or ``_id``) and ``text``, or plain
    text (ids = line numbers; blank lines left out, or kept as empty texts with ``blank_lines``).
    Errors are :class:`QueryError`."""
    path = Path(path)
    if not path.is_file():
        raise QueryError(f"query file not found: {path}")
    try:
        rows = read_rows(path, lines=True, blank_lines=blank_lines)
    except DataError as e:
        raise QueryError(str(e)) from None
    if not rows:
        raise QueryError(f"{path} has no queries")
    try:
        return ids_and_texts(rows, path)
    except DataError as e:
        columns_missing = TEXT_COLUMN not in rows[0] or not any(c in rows[0] for c in ID_COLUMNS)
        hint = ("; a .csv or .tsv query file needs a header row naming id and text (a file of one query a line: "
                "name it .txt)" if path.suffix.lower() in CSV_SUFFIXES else "")
        raise QueryError(f"{e}; query files need 'id' (or '_id') and 'text'{hint}" if columns_missing else str(e)) \
            from None
