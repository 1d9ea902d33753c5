"""Training data for the two-tower model, and the tokenizer that maps texts to model vocabulary ids.

Three shapes of data, detected from the path (:func:`load_training_data`):

* **pairs** (:class:`PairData`): (query, positive[, negative]) rows from Parquet or JSONL with
  columns ``query``, ``positive``, optional ``negative`` (``anchor`` is accepted for ``query``);
* **BEIR** directories (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``), also a
  :class:`PairData`: every judged (query, document) pair with score > 0, the whole corpus as the
  document pool (document text = title + " " + text). A directory means its ``train`` split; a
  ``qrels/<split>.tsv`` file inside one means that split;
* **scored** sentence pairs (:class:`ScoredData`): ``sentence1, sentence2, score`` from CSV
  without header (STS-B), CSV/TSV with a header naming those columns, Parquet or JSONL.

No torch at import: only :meth:`Tokenizer.__call__` and :meth:`TokenizedTexts.batch` need it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import TokeniserConfig
from ..errors import ConfigError, DataError
from ..io import beir
from ..io.rows import JSONL_SUFFIXES, is_parquet, read_rows
from ..io.scored import COLUMNS as SCORED_COLUMNS
from ..io.scored import read_scored_csv, scored_from_rows
from ..text.tokeniser import Tokeniser

log = logging.getLogger(__name__)

PAD = "<pad>"  # the same as embeddings.PAD (not imported: that module imports torch)


# --------------------------------------------------------------------------------------------
# Tokenizer: text → model vocabulary ids


class TokenizedTexts:
    """Texts as flat model ids + offsets; ``batch(rows)`` pads a selection into a LongTensor."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray):
        self.ids = ids
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, rows: Sequence[int] | np.ndarray):
        """LongTensor (len(rows), Lmax) right-padded with 0."""
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        out = np.zeros((len(rows), int(lengths.max(initial=0))), dtype=np.int64)
        if lengths.sum():
            take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
            out[np.arange(out.shape[1]) < lengths[:, None]] = self.ids[take]
        return torch.from_numpy(out)


class Tokenizer:
    """The tokeniser rules plus a model vocabulary (entry 0 is ``<pad>``): texts → ids.

    Tokens not in the vocabulary are dropped, as the numpy query path drops unknown words.
    """

    def __init__(self, tokeniser: Tokeniser | TokeniserConfig, vocab: Sequence[str] | pa.Array):
        self.tokeniser = tokeniser if isinstance(tokeniser, Tokeniser) else Tokeniser(tokeniser)
        words = vocab if isinstance(vocab, pa.Array) else pa.array(list(vocab), pa.string())
        if len(words) == 0 or words[0].as_py() != PAD:
            raise ConfigError(f"a model vocabulary starts with {PAD!r}")
        self.words: pa.Array = words

    @property
    def vocab(self) -> list[str]:
        return self.words.to_pylist()

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, texts: Iterable[Sequence[str] | pa.Array], tokeniser: Tokeniser | TokeniserConfig,
              vectors: Any = None) -> Tokenizer:
        """A vocabulary of every token in ``texts`` (lists of strings), most frequent first.

        With ``vectors`` (``.words``), tokens the vectors lack are left out: they would be
        zero rows excluded from the mean anyway. Ties in frequency are broken by the word.
        """
        tok = tokeniser if isinstance(tokeniser, Tokeniser) else Tokeniser(tokeniser)
        counts: dict[str, int] = {}
        for group in texts:
            arr = group if isinstance(group, pa.Array) else pa.array(list(group), pa.string())
            if not len(arr):
                continue
            vc = pc.value_counts(pc.list_flatten(tok.tokenise_arrow(arr)))
            for w, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
                counts[w] = counts.get(w, 0) + c
        words = sorted(counts, key=lambda w: (-counts[w], w))
        if vectors is not None and words:
            arr = pa.array(words, pa.string())
            vw = vectors.words.combine_chunks() if isinstance(vectors.words, pa.ChunkedArray) else vectors.words
            present = pc.is_in(arr, value_set=vw.cast(pa.string())).to_numpy(zero_copy_only=False)
            missing = len(words) - int(present.sum())
            if missing:
                log.info("%d of %d training words are not in %s and are left out of the vocabulary",
                         missing, len(words), getattr(vectors, "source", "the word vectors"))
            words = [w for w, keep in zip(words, present) if keep]
        words = [w for w in words if w != PAD]
        return cls(tok, [PAD] + words)

    def encode_texts(self, texts: Sequence[str] | pa.Array) -> TokenizedTexts:
        """Tokenise and look up many texts at once (Arrow path)."""
        arr = texts if isinstance(texts, pa.Array) else pa.array(list(texts), pa.string())
        tokens = self.tokeniser.tokenise_arrow(arr)
        lengths = pc.list_value_length(tokens).fill_null(0).to_numpy().astype(np.int64)
        return self.lookup(pc.list_flatten(tokens), lengths)

    def lookup(self, tokens: pa.Array, lengths: np.ndarray) -> TokenizedTexts:
        """Already tokenised texts (flat tokens, tokens per text) → model ids, unknown words dropped."""
        rows = pc.index_in(tokens, value_set=self.words).fill_null(-1)
        rows = rows.to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        known = rows > 0  # drops unknown words (-1) and a literal "<pad>" token (0)
        known_offsets = np.concatenate([[0], np.cumsum(known)])[offsets]
        return TokenizedTexts(rows[known], known_offsets.astype(np.int64))

    def __call__(self, texts: Sequence[str] | str):
        """LongTensor (B, Lmax) of ids, right-padded with 0 (what ``TwoTower.encode_*`` take)."""
        if isinstance(texts, str):
            texts = [texts]
        return self.encode_texts(texts).batch(np.arange(len(texts)))


# --------------------------------------------------------------------------------------------
# Data sets


@dataclass
class PairData:
    """(query, relevant document[, negative]) pairs over lists of unique texts.

    ``pairs[i] = (query index, document index)``; ``negatives[i]`` a document index or -1.
    ``documents`` is the pool that random and hard negatives come from.
    """

    queries: list[str]
    documents: list[str]
    pairs: np.ndarray
    negatives: np.ndarray | None = None
    source: str = ""
    query_ids: list | None = None
    document_ids: list | None = None
    kind: str = field(default="pairs", init=False)

    def __len__(self) -> int:
        return len(self.pairs)

    def relevant(self) -> dict[int, set[int]]:
        rel: dict[int, set[int]] = {}
        for q, d in self.pairs.tolist():
            rel.setdefault(q, set()).add(d)
        return rel

    def texts(self) -> list[list[str]]:
        return [self.queries, self.documents]

    def split_queries(self, fraction: float, seed: int) -> tuple[PairData, PairData]:
        """(rest, held out): ``fraction`` of the distinct queries (seeded) and all their pairs held out."""
        qs = np.unique(self.pairs[:, 0])
        rng = np.random.default_rng(seed)
        n_out = max(1, int(round(fraction * len(qs))))
        if n_out >= len(qs):
            raise DataError(f"cannot hold out {fraction:.0%} of {len(qs)} queries and keep some to train on")
        held = np.zeros(len(self.queries), dtype=bool)
        held[rng.choice(qs, n_out, replace=False)] = True
        mask = held[self.pairs[:, 0]]
        return self._subset(~mask, "train part"), self._subset(mask, "held-out part")

    def _subset(self, mask: np.ndarray, what: str) -> PairData:
        return PairData(self.queries, self.documents, self.pairs[mask],
                        None if self.negatives is None else self.negatives[mask],
                        f"{self.source} ({what})", self.query_ids, self.document_ids)

    @classmethod
    def from_triplets(cls, rows: Sequence[Sequence[str]], source: str = "triplets") -> PairData:
        """From (query, positive) or (query, positive, negative) tuples of strings."""
        q_index: dict[str, int] = {}
        d_index: dict[str, int] = {}
        pairs, negs = [], []
        has_neg = bool(rows) and all(len(r) >= 3 and r[2] for r in rows)
        for r in rows:
            if len(r) < 2 or not isinstance(r[0], str) or not isinstance(r[1], str):
                raise DataError(f"{source}: each row needs a query and a positive text, got {r!r}")
            q = q_index.setdefault(r[0], len(q_index))
            d = d_index.setdefault(r[1], len(d_index))
            pairs.append((q, d))
            if has_neg:
                negs.append(d_index.setdefault(r[2], len(d_index)))
        if not pairs:
            raise DataError(f"{source} has no training pairs")
        return cls(list(q_index), list(d_index), np.asarray(pairs, dtype=np.int64),
                   np.asarray(negs, dtype=np.int64) if has_neg else None, source)


@dataclass
class ScoredData:
    """Sentence pairs with graded similarity scores (STS-style)."""

    first: list[str]
    second: list[str]
    scores: np.ndarray
    source: str = ""
    kind: str = field(default="scored", init=False)

    def __len__(self) -> int:
        return len(self.scores)

    def texts(self) -> list[list[str]]:
        return [self.first, self.second]

    def scaled_scores(self, low: float, high: float) -> np.ndarray:
        """Scores mapped to [0, 1] with the range ``[low, high]`` (the training data's)."""
        span = high - low
        return ((self.scores - low) / span if span > 0 else np.ones_like(self.scores)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Readers


def data_kind(path: str | Path) -> str:
    """``pairs`` or ``scored``: what :func:`load_training_data` would read, from the path and the
    first row's columns only (to choose a recipe before reading everything)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"training data not found: {path}")
    if path.is_dir() or path.suffix.lower() == ".tsv" and path.parent.name == "qrels":
        return "pairs"
    if path.suffix.lower() in (".csv", ".tsv"):
        return "scored"
    if is_parquet(path):
        import pyarrow.parquet as pq

        cols = set(pq.read_schema(path).names)
    else:
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "{}")
        try:
            cols = set(json.loads(first))
        except (ValueError, TypeError):
            cols = set()
    return "scored" if set(SCORED_COLUMNS) <= cols else "pairs"


def load_training_data(path: str | Path) -> PairData | ScoredData:
    """Read training or validation data; the shape is detected from the path and the columns."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"training data not found: {path}")
    if path.is_dir():
        return read_beir(path, "train")
    if path.suffix.lower() == ".tsv" and path.parent.name == "qrels" and (path.parent.parent / "corpus.jsonl").is_file():
        return read_beir(path.parent.parent, path.stem)
    if path.suffix.lower() in (".csv", ".tsv"):
        return ScoredData(*read_scored_csv(path), str(path))
    if not (is_parquet(path) or path.suffix.lower() in JSONL_SUFFIXES):
        raise DataError(f"{path}: training data must be Parquet, JSONL, CSV, TSV or a BEIR directory")
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path} has no rows")
    cols = set(rows[0])
    if set(SCORED_COLUMNS) <= cols:
        return ScoredData(*scored_from_rows(rows, path), str(path))
    qcol = "query" if "query" in cols else "anchor" if "anchor" in cols else None
    if qcol and "positive" in cols:
        neg = "negative" if "negative" in cols else None
        return PairData.from_triplets([(r[qcol], r["positive"]) + ((r[neg],) if neg else ()) for r in rows],
                                      source=str(path))
    raise DataError(
        f"{path}: cannot tell what this data is (columns: {', '.join(sorted(cols)) or 'none'}); "
        "pairs need 'query' (or 'anchor') and 'positive' (optionally 'negative'), scored pairs 'sentence1', 'sentence2' and 'score'; "
        "for a corpus of plain documents (id, text), train with --self-supervised"
    )


def read_beir(directory: str | Path, split: str = "train") -> PairData:
    """Judged (query, document) pairs of one qrels split, in file order; the whole corpus is the document pool."""
    directory = Path(directory)
    qrels_path = beir.qrels_file(directory, split)
    doc_ids, documents = beir.read_corpus(directory / "corpus.jsonl")
    query_ids, queries = beir.read_queries(directory / "queries.jsonl")
    query_index = {q: i for i, q in enumerate(query_ids)}
    doc_index = {d: i for i, d in enumerate(doc_ids)}
    pairs = []
    for j in beir.judgments(qrels_path):
        if j.score <= 0:
            continue
        if j.query_id not in query_index:
            raise DataError(f"{j.where}: query {j.query_id!r} is not in queries.jsonl")
        if j.doc_id not in doc_index:
            raise DataError(f"{j.where}: document {j.doc_id!r} is not in corpus.jsonl")
        pairs.append((query_index[j.query_id], doc_index[j.doc_id]))
    if not pairs:
        raise DataError(f"{qrels_path} has no relevant (score > 0) judgments")
    return PairData(queries, documents, np.asarray(pairs, dtype=np.int64), None, f"{directory} ({split})",
                    query_ids, doc_ids)
