"""Scored sentence pairs (``sentence1, sentence2, score``) from CSV or TSV: the one reader that
training data (:mod:`glovefaiss.training_data`) and STS evaluation (:mod:`glovefaiss.evaluate`) share.

A first row whose third field is not a number is a header and must name the three columns (any
order, case and surrounding spaces ignored); without a header the first three columns are taken.
TSV is read without quote handling: STS-B's own TSV files hold unbalanced quotes in sentences.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DataError

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
