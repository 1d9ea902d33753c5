"""Pseudo (query, positive) pairs from an unlabelled corpus, and vocabulary growth, for
self-supervised training (:mod:`glovefaiss.train.selfsup`).

A corpus is tokenised once into model ids (:class:`Documents`): each document is its title's
tokens then its text's, known tokens only. The model vocabulary is every corpus word the word
vectors have, plus, with vocabulary growth, every other corpus word seen at least
``grow_min_count`` times; a grown word's row starts as the mean vector of the known words within
``grow_window`` positions of its occurrences. Pairs are drawn per document with a numpy
Generator, vectorised (:func:`make_pairs`): positions, not texts, so a batch is a gather.
No torch here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import SelfSupervisedConfig
from ..errors import ConfigError, DataError
from ..io.rows import JSONL_SUFFIXES, is_parquet
from ..text.tokeniser import Tokeniser
from .data import PAD, TokenizedTexts, Tokenizer

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Reading a corpus


@dataclass
class CorpusTexts:
    """Document ids, texts and optional titles (string arrays of one length)."""

    ids: pa.Array
    texts: pa.Array
    titles: pa.Array | None
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: np.ndarray) -> CorpusTexts:
        idx = pa.array(rows)
        return CorpusTexts(self.ids.take(idx), self.texts.take(idx),
                           None if self.titles is None else self.titles.take(idx), self.source)


def read_corpus_texts(path: str | Path, id_column: str | None = None, text_column: str | None = None,
                      title_column: str | None = None) -> CorpusTexts:
    """A Parquet or JSONL corpus, or a BEIR directory's ``corpus.jsonl`` (``_id``, ``title``, ``text``).

    ``id_column`` defaults to ``id`` (or ``_id``), ``text_column`` to ``text``; ``title_column``
    defaults to ``title`` when the corpus has one. Missing texts and titles read as "".
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "corpus.jsonl").is_file():
            raise DataError(f"{path} is a directory without corpus.jsonl; give a Parquet or JSONL corpus file")
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise DataError(f"corpus not found: {path}")
    if is_parquet(path):
        table = pq.read_table(path)
    elif path.suffix.lower() in JSONL_SUFFIXES:
        import pyarrow.json as pj

        try:
            table = pj.read_json(path)
        except pa.ArrowInvalid as e:
            raise DataError(f"{path}: not valid JSON lines ({str(e).splitlines()[0]})") from None
    else:
        raise DataError(f"{path}: a corpus must be Parquet, JSONL or a BEIR directory")
    names = table.column_names
    id_col = id_column or next((c for c in ("id", "_id") if c in names), "id")
    text_col = text_column or "text"
    title_col = title_column or ("title" if "title" in names else None)
    for col, flag in ((id_col, "--id-column"), (text_col, "--text-column"), (title_col, "--title-column")):
        if col is not None and col not in names:
            raise DataError(f"{path} has no column '{col}'; columns present: {', '.join(names)}; choose one with {flag}")
    if table.num_rows == 0:
        raise DataError(f"{path} has no rows")

    def strings(col: str) -> pa.Array:
        return pc.fill_null(table.column(col).combine_chunks().cast(pa.string()), "")

    return CorpusTexts(strings(id_col), strings(text_col), strings(title_col) if title_col else None, str(path))


# --------------------------------------------------------------------------------------------
# Tokenised documents and vocabulary growth


@dataclass
class Documents:
    """Known model ids of every document (title tokens first) and how many of them are the title's."""

    tokens: TokenizedTexts
    title_lengths: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.tokens.offsets)

    def __len__(self) -> int:
        return len(self.title_lengths)


@dataclass
class Growth:
    """Grown words (model ids ``first_id`` ..) and their starting rows."""

    words: list[str]
    rows: np.ndarray
    first_id: int
    occurrences: int

    @property
    def ids(self) -> np.ndarray:
        return np.arange(self.first_id, self.first_id + len(self.words), dtype=np.int64)


def _sorted_words(words: pa.Array, counts: np.ndarray) -> pa.Array:
    """Words by count (most first), ties by the word: the same order whatever the input order."""
    t = pa.table({"word": words, "count": pa.array(counts, pa.int64())})
    order = pc.sort_indices(t, sort_keys=[("count", "descending"), ("word", "ascending")])
    return words.take(order)


def _base_words(vectors) -> pa.Array:
    words = vectors.words.combine_chunks() if isinstance(vectors.words, pa.ChunkedArray) else vectors.words
    return words.cast(pa.string())


def tokenise_corpus(corpus: CorpusTexts, tokeniser: Tokeniser, vectors, cfg: SelfSupervisedConfig
                    ) -> tuple[Tokenizer, Documents, Growth]:
    """The model vocabulary (corpus words the vectors have, then grown words), the documents as
    its ids, and the grown words' starting rows (none when ``cfg.grow_min_count`` is 0)."""
    if cfg.grow_min_count < 0 or cfg.grow_window < 1:
        raise ConfigError("self_supervised.grow_min_count must be 0 or more and grow_window at least 1")
    n = len(corpus)
    titles = corpus.titles if corpus.titles is not None else pa.array([""] * n, pa.string())
    # Tokens never cross a space, so "title text" tokenises as the title's tokens then the text's.
    joined = pc.binary_join_element_wise(titles, corpus.texts, " ")
    tokens = tokeniser.tokenise_arrow(joined)
    lengths = pc.list_value_length(tokens).fill_null(0).to_numpy().astype(np.int64)
    title_tokens = pc.list_value_length(tokeniser.tokenise_arrow(titles)).fill_null(0).to_numpy().astype(np.int64)
    flat = pc.list_flatten(tokens).cast(pa.string())
    base = _base_words(vectors)
    g = pc.index_in(flat, value_set=base).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    g[pc.equal(flat, PAD).to_numpy(zero_copy_only=False)] = -1

    counts = np.bincount(g[g >= 0], minlength=len(base))
    present = np.flatnonzero(counts)
    known_words = _sorted_words(base.take(pa.array(present)), counts[present])
    grown = pa.array([], pa.string())
    if cfg.grow_min_count:
        vc = pc.value_counts(flat.filter(pa.array(g < 0)))
        keep = vc.field("counts").to_numpy() >= cfg.grow_min_count
        grown = _sorted_words(vc.field("values").filter(pa.array(keep)), vc.field("counts").to_numpy()[keep])
    words = pa.concat_arrays([pa.array([PAD], pa.string()), known_words, grown])
    tokenizer = Tokenizer(tokeniser, words)

    # Model id of every token: one lookup over the flat tokens, grown words included.
    mid = pc.index_in(flat, value_set=words).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    known = mid > 0
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    known_before = np.concatenate([[0], np.cumsum(known)])
    doc_offsets = known_before[offsets].astype(np.int64)
    title_end = offsets[:-1] + np.minimum(title_tokens, lengths)
    title_lengths = (known_before[title_end] - known_before[offsets[:-1]]).astype(np.int64)
    docs = Documents(TokenizedTexts(mid[known], doc_offsets), title_lengths)

    first_id = 1 + len(known_words)
    rows = np.zeros((0, np.asarray(vectors.matrix).shape[1]), np.float32)
    occurrences = 0
    if len(grown):
        doc_of_token = np.repeat(np.arange(n), lengths)
        is_grown = mid >= first_id
        occurrences = int(is_grown.sum())
        rows = context_rows(mid - first_id, is_grown, g, doc_of_token, np.asarray(vectors.matrix), len(grown),
                            cfg.grow_window)
    growth = Growth(grown.to_pylist(), rows, first_id, occurrences)
    log.info("self-supervised corpus: %d documents, %d tokens, %d known; %d model words, %d grown "
             "(min count %d, %d occurrences)", n, len(flat), int(known.sum()), len(words) - 1, len(grown),
             cfg.grow_min_count, occurrences)
    return tokenizer, docs, growth


def context_rows(word: np.ndarray, is_target: np.ndarray, base_row: np.ndarray, doc_of_token: np.ndarray,
                 matrix: np.ndarray, n_words: int, window: int) -> np.ndarray:
    """(n_words, D) float32: for each target word, the mean vector of the tokens with a vector
    (``base_row`` >= 0) within ``window`` positions of its occurrences in the same document; zero
    for a word that never has such a neighbour. One vectorised pass per offset."""
    pos = np.flatnonzero(is_target)
    target = word[pos]
    sums = np.zeros((n_words, matrix.shape[1]), np.float64)
    counts = np.zeros(n_words, np.float64)
    for k in range(-window, window + 1):
        if k == 0:
            continue
        p = pos + k
        ok = (p >= 0) & (p < len(base_row))
        src, p, w = pos[ok], p[ok], target[ok]
        ok = (doc_of_token[p] == doc_of_token[src]) & (base_row[p] >= 0)
        np.add.at(sums, w[ok], matrix[base_row[p[ok]]])
        counts += np.bincount(w[ok], minlength=n_words)
    return (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Pairs


@dataclass(frozen=True)
class Pairs:
    """One pseudo pair per document of ``docs``: the query is the known tokens
    ``start .. start + length`` of the document, the positive the rest of it."""

    docs: np.ndarray
    start: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return len(self.docs)

    def slice(self, s: slice) -> Pairs:
        return Pairs(self.docs[s], self.start[s], self.length[s])

    def concat(self, other: Pairs) -> Pairs:
        return Pairs(*(np.concatenate([a, b]) for a, b in
                       ((self.docs, other.docs), (self.start, other.start), (self.length, other.length))))


def eligible(documents: Documents) -> np.ndarray:
    """Documents a pair can be made of: at least 2 known tokens."""
    return np.flatnonzero(documents.lengths >= 2)


def make_pairs(documents: Documents, docs: np.ndarray, rng: np.random.Generator, cfg: SelfSupervisedConfig,
               titles: bool = True) -> Pairs:
    """A pair for each of ``docs`` (in that order; documents with fewer than 2 known tokens must
    not be among them): a span of ``span_min..span_max`` tokens, at most ``max_fraction`` of the
    document (at least 1), uniformly placed; with probability ``p_title`` (where ``titles`` and
    the document has a title shorter than itself) the title instead."""
    if not 1 <= cfg.span_min <= cfg.span_max or not 0 < cfg.max_fraction < 1 or not 0 <= cfg.p_title <= 1:
        raise ConfigError("self_supervised needs 1 <= span_min <= span_max, 0 < max_fraction < 1, 0 <= p_title <= 1")
    docs = np.asarray(docs, dtype=np.int64)
    n_tokens = documents.lengths[docs]
    cap = np.maximum(1, np.floor(n_tokens * cfg.max_fraction).astype(np.int64))
    length = np.minimum(rng.integers(cfg.span_min, cfg.span_max + 1, len(docs)), cap)
    start = np.floor(rng.random(len(docs)) * (n_tokens - length + 1)).astype(np.int64)
    if titles and cfg.p_title > 0:
        tl = documents.title_lengths[docs]
        use = (rng.random(len(docs)) < cfg.p_title) & (tl > 0) & (tl < n_tokens)
        start = np.where(use, 0, start)
        length = np.where(use, tl, length)
    return Pairs(docs, start, length)


def spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions ``starts[i] + arange(lengths[i])``, concatenated."""
    ends = np.cumsum(lengths)
    return np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)


def pair_ids(documents: Documents, pairs: Pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(query ids, query lengths, positive ids, positive lengths), flat: what the bag encoders take."""
    off = documents.tokens.offsets
    ids = documents.tokens.ids
    q = ids[spans(off[pairs.docs] + pairs.start, pairs.length)]
    n_tokens = documents.lengths[pairs.docs]
    pos = spans(off[pairs.docs], n_tokens)
    rel = pos - np.repeat(off[pairs.docs], n_tokens)
    in_span = (rel >= np.repeat(pairs.start, n_tokens)) & (rel < np.repeat(pairs.start + pairs.length, n_tokens))
    return q, pairs.length, ids[pos[~in_span]], n_tokens - pairs.length


def pair_texts(tokenizer: Tokenizer, documents: Documents, pairs: Pairs) -> list[tuple[str, str]]:
    """The pairs as (query, positive) texts of model words (to read or test them)."""
    q, ql, p, pl = pair_ids(documents, pairs)

    def join(ids: np.ndarray, lengths: np.ndarray) -> list[str]:
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        return pc.binary_join(pa.ListArray.from_arrays(offsets, tokenizer.words.take(pa.array(ids))), " ").to_pylist()

    return list(zip(join(q, ql), join(p, pl)))
