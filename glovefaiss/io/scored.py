"""Scored sentence pairs (``sentence1, sentence2, score``): the one reader that training data
(:mod:`glovefaiss.train.data`) and STS evaluation (:mod:`glovefaiss.evaluation.sts`) share.

CSV or TSV: a first row whose third field is not a number is a header and must name the three columns (any
order, case and surrounding spaces ignored); without a header the first three columns are taken.
TSV is read without quote handling: STS-B's own TSV files hold unbalanced quotes in sentences.
Parquet or JSONL (:func:`~glovefaiss.io.rows.read_rows`): the columns so named, else the first three.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DataError
from .rows import JSONL_SUFFIXES, is_parquet, read_rows

COLUMNS = ("sentence1", "sentence2", "score")


def read_scored_csv(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """``(first, second, scores)`` of a CSV (``.tsv``: tab-separated) file of scored pairs."""
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: a byte-order mark is not header text
        reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        rows = [r for r in reader if r]
    if not rows:
        raise DataError(f"{path} has no rows")
    if len(rows[0]) < 3:
        sep = "tab" if delimiter == "\t" else "comma"
        raise DataError(f"{path}: want 3 {sep}-separated columns (sentence1, sentence2, score), but the first line has "
                        f"{len(rows[0])}")
    try:
        float(rows[0][2])
        header = None
    except (ValueError, IndexError):
        header = [c.strip().lower() for c in rows[0]]
        rows = rows[1:]
    if header is None:
        cols = (0, 1, 2)
    else:
        try:
            cols = tuple(header.index(c) for c in COLUMNS)
        except ValueError:
            raise DataError(f"{path}: the header must name 'sentence1', 'sentence2' and 'score' "
                            f"(found: {', '.join(header)}); or give a file without header") from None
    first, second, scores = [], [], []
    for n, r in enumerate(rows, 2 if header else 1):
        try:
            first.append(r[cols[0]])
            second.append(r[cols[1]])
            scores.append(float(r[cols[2]]))
        except (IndexError, ValueError):
            raise DataError(f"{path}:{n}: expected sentence1, sentence2, score; got {r[:4]!r}") from None
    if not scores:
        raise DataError(f"{path} has no rows")
    return first, second, np.asarray(scores, dtype=np.float64)


def scored_from_rows(rows: list[dict], path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """``(first, second, scores)`` of rows with columns ``sentence1, sentence2, score`` (else the first three)."""
    if not rows:
        raise DataError(f"{path} has no rows")
    names = list(rows[0])
    cols = COLUMNS if all(c in names for c in COLUMNS) else tuple(names[:3])
    if len(cols) < 3:
        raise DataError(f"{path}: want columns sentence1, sentence2, score; got {', '.join(names)}")
    try:
        scores = np.asarray([float(r[cols[2]]) for r in rows], dtype=np.float64)
    except (TypeError, ValueError, KeyError):
        raise DataError(f"{path}: every row needs a numeric {cols[2]!r}") from None
    return ([str(r.get(cols[0]) or "") for r in rows], [str(r.get(cols[1]) or "") for r in rows], scores)


def read_scored(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """``(first, second, scores)`` of a Parquet, JSONL (by suffix), CSV or TSV file of scored pairs."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs file not found: {path}")
    if is_parquet(path) or path.suffix.lower() in JSONL_SUFFIXES:
        return scored_from_rows(read_rows(path), path)
    return read_scored_csv(path)
