"""BEIR data sets: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` in one directory.

The one reader behind ``glovefaiss eval retrieval`` (:mod:`glovefaiss.evaluation.retrieval`)
and training on BEIR data (:mod:`glovefaiss.train.data`). Corpus and queries are row files
(:mod:`glovefaiss.io.rows`: JSONL or Parquet) with ``_id`` (or ``id``), ``text`` and an
optional ``title``, joined before the text. Ids are strings.

Judgments (qrels) come as TSV with the header ``query-id corpus-id score`` (BEIR), as TREC
qrels ``qid iteration docid score`` (4 columns, tab- or space-separated, no header), or as
Parquet/JSONL with columns named as BEIR's (or ``qid``, ``doc_id``, ``relevance`` ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ..errors import DataError
from .rows import JSONL_SUFFIXES, column, is_parquet, read_rows, read_texts

Qrels = dict[str, dict[str, int]]

QUERY_COLUMNS = ("query-id", "query_id", "qid")
DOC_COLUMNS = ("corpus-id", "corpus_id", "doc_id", "docid")
SCORE_COLUMNS = ("score", "relevance", "rel")


class Judgment(NamedTuple):
    """One qrels line; ``where`` is ``path:line`` (or ``path:row``) for messages."""

    query_id: str
    doc_id: str
    score: float
    where: str


def splits(directory: str | Path) -> list[str]:
    """Names of the qrels splits of a BEIR directory (``qrels/*.tsv``), sorted."""
    qrels = Path(directory) / "qrels"
    return sorted(p.stem for p in qrels.glob("*.tsv")) if qrels.is_dir() else []


def qrels_file(directory: str | Path, split: str) -> Path:
    """``directory/qrels/<split>.tsv``, after checking that it exists."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory; a BEIR data set has corpus.jsonl, queries.jsonl and qrels/")
    path = directory / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise DataError(f"{directory} is not a BEIR directory with a '{split}' split (qrels/{split}.tsv missing; "
                        f"splits present: {', '.join(splits(directory)) or 'none'})")
    return path


def read_corpus(path: str | Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of a corpus file; text = title + " " + text."""
    ids, texts = read_texts(path, title=True)
    return [str(i) for i in ids], texts


def read_queries(path: str | Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of a queries file (a title, where one is given, is joined as in the corpus)."""
    return read_corpus(path)


def judgments(path: str | Path) -> Iterator[Judgment]:
    """The judgments of a qrels file in file order (duplicates included)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"qrels file not found: {path}")
    if is_parquet(path) or path.suffix.lower() in JSONL_SUFFIXES:
        rows = read_rows(path)
        if rows:
            q, d, s = (column(rows, names, path) for names in (QUERY_COLUMNS, DOC_COLUMNS, SCORE_COLUMNS))
            for n, row in enumerate(rows, 1):
                yield Judgment(str(row[q]), str(row[d]), _score(row[s], f"{path}:{n}"), f"{path}:{n}")
        return
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) == 1:
                parts = line.split()  # TREC qrels are often space-separated
            if len(parts) == 4:  # TREC: qid iteration docid score
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise DataError(f"{path}:{n}: want 3 tab-separated fields (query-id, corpus-id, score) "
                                f"or 4 (TREC: query-id, iteration, doc-id, score), got {len(parts)}")
            try:
                score = float(parts[2])
            except ValueError:
                if n == 1:
                    continue  # the header
                raise DataError(f"{path}:{n}: score {parts[2]!r} is not a number") from None
            yield Judgment(parts[0], parts[1], score, f"{path}:{n}")


def _score(value, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: score {value!r} is not a number") from None


def read_qrels(path: str | Path) -> Qrels:
    """``{query id: {doc id: judgment}}``; judgments are whole numbers (trec_eval's gains)."""
    qrels: Qrels = {}
    for j in judgments(path):
        qrels.setdefault(j.query_id, {})[j.doc_id] = int(j.score)
    return qrels
