"""The queries an approximate index is tuned with: windows cut from sampled documents (of the
corpus, or of the texts stored in the shards: the same queries), or a user's query file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import ConfigError, QueryError
from .shards import TextStore
from .tuning import QuerySet, encode_queries

if TYPE_CHECKING:
    from ..io.corpus import Corpus
    from ..tower.encoder import TextEncoder

WINDOW_QUERIES = "windows of 1-3 and 4-12 tokens and whole documents, from sampled documents"  # as recorded


def window_sample(num_rows: int, n: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """(sorted rows of the documents to cut ``n`` tuning queries from, the generator that cuts them)."""
    rng = np.random.default_rng([seed, 11])
    return np.sort(rng.choice(num_rows, min(2 * n, num_rows), replace=False)), rng


def window_queries(texts: list[str], encoder: TextEncoder, n: int, rng: np.random.Generator) -> QuerySet:
    """Up to ``n`` queries cut from ``texts`` in turn: a window of 1-3 tokens, one of 4-12, the whole text.

    The lengths users send, from one word to a whole document (a "more like this" query); the
    order of ``texts`` is shuffled first so that each kind samples the whole corpus.
    """
    token_lists = encoder.tokeniser.tokenise_arrow(pa.array(texts, pa.string())).to_pylist()
    queries = []
    for i, tokens in enumerate(token_lists[j] for j in rng.permutation(len(token_lists))):
        if not tokens:
            continue
        kind = i % 3
        if kind == 2:
            queries.append(" ".join(tokens))
            continue
        length = int(rng.integers(1, 4)) if kind == 0 else int(rng.integers(4, 13))
        start = int(rng.integers(0, max(1, len(tokens) - length + 1)))
        queries.append(" ".join(tokens[start:start + length]))
    qs = encode_queries(queries, encoder).known()
    return qs.take(np.arange(min(n, len(qs))))


def corpus_window_queries(corpus: Corpus, encoder: TextEncoder, n: int, seed: int) -> QuerySet:
    """Queries like a user's (see :func:`window_queries`) from documents sampled (seeded) from the corpus."""
    rows, rng = window_sample(corpus.num_rows, n, seed)
    texts: list[str] = []
    pos = 0
    for _, batch in corpus.batches(65536):
        lo, hi = np.searchsorted(rows, [pos, pos + len(batch)])
        if hi > lo:
            texts += batch.take(pa.array(rows[lo:hi] - pos)).to_pylist()
        pos += len(batch)
    return window_queries(texts, encoder, n, rng)


def file_tuning_queries(path: str | Path, encoder: TextEncoder, n: int, seed: int) -> tuple[QuerySet, str]:
    """(queries, description) of up to ``n`` queries of a query file (a seeded sample when it holds more)."""
    from ..io.rows import read_queries

    try:
        _, texts = read_queries(path)
    except QueryError as e:
        raise ConfigError(f"--tuning-queries: {e}") from None
    qs = encode_queries([str(t) for t in texts], encoder).known()
    if not len(qs):
        raise ConfigError(f"--tuning-queries: none of the {len(texts)} queries in {path} has a word in the vocabulary")
    if len(qs) > n:
        qs = qs.take(np.sort(np.random.default_rng([seed, 12]).choice(len(qs), n, replace=False)))
    return qs, f"{len(qs)} queries from {path}"


def stored_window_queries(directory: Path, shards: list[dict], encoder: TextEncoder, n: int,
                          seed: int) -> np.ndarray:
    """Window queries cut from the texts stored in ``shards``: the same as those of a corpus of these rows."""
    rows, rng = window_sample(sum(s["rows"] for s in shards), n, seed)
    return window_queries(TextStore(directory, shards).take(rows), encoder, n, rng)
