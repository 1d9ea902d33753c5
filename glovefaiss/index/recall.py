"""How much of the exact top-k an index directory's search finds, per query-length bucket."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import QueryError
from .search import Index
from .shards import ShardReader, TextStore, iter_shard_vectors
from .tuning import TIE, QuerySet, bucket_recall, encode_queries, exact_topk, recall_per_query
from .tuning_queries import window_queries, window_sample

logger = logging.getLogger(__name__)


def shard_rows(directory: Path, shards: list[dict]):
    """(vectors, row numbers) of every shard, in row order: the exact reference's input."""
    start = 0
    for ids, vectors in iter_shard_vectors(ShardReader(directory, shards)):
        yield vectors, np.arange(start, start + len(ids), dtype=np.int64)
        start += len(ids)


def index_recall(directory: str | Path, texts: list[str] | None = None, k: int = 10, n: int = 1000,
                 seed: int | None = None) -> dict:
    """Recall@k of the index in ``directory`` against exact search over its own shard vectors.

    ``texts``: the queries; None samples ``n`` like the build's default tuning queries (windows of
    1-3 and 4-12 tokens and whole documents) from the stored texts, which then must be stored.
    ``seed``: of that sample; None gives the build's seed + 1, so that these are not the very
    queries the build tuned on.
    Returns ``{"k", "queries", "recall", "buckets": {name: {"queries", "recall", "recall_lower_bound"}},
    "left_out": {"empty": ..., "no_known_word": ...}}``: queries of ``texts`` not measured.
    """
    if k <= 0:
        raise QueryError(f"k must be at least 1, got {k}")
    if n <= 0:
        raise QueryError(f"n must be at least 1, got {n}")
    directory = Path(directory)
    idx = Index.load(directory)
    m = idx.manifest
    if k > len(idx):
        raise QueryError(f"k must be at most the index's {len(idx):,} documents, got {k}; give a smaller k (-k)")
    left_out = {"empty": 0, "no_known_word": 0}
    if texts is None:
        if not m.store_text:
            raise QueryError(f"{directory} stores no texts to sample queries from; give a query file (--queries)")
        if seed is None:
            seed = int((m.config or {}).get("seed") or 0) + 1
        rows, rng = window_sample(len(idx), n, seed)
        qs = window_queries(TextStore(directory, m.shards).take(rows), idx.encoder, n, rng)
    else:
        given = [str(t) for t in texts if t is not None and str(t).strip()]
        left_out["empty"] = len(texts) - len(given)
        if not given:
            raise QueryError("every query is empty; give some text to search for")
        qs = encode_queries(given, idx.encoder).known()
        left_out["no_known_word"] = len(given) - len(qs)
    if not len(qs):
        raise QueryError("none of the queries has a word in the vocabulary")
    truth = exact_topk(shard_rows(directory, m.shards), qs.vectors, k)
    return {**recall_of(idx, qs, k, truth, ShardReader(directory, m.shards).vectors_at), "left_out": left_out}


def recall_of(idx: Index, qs: QuerySet, k: int, truth_rows: np.ndarray, vectors_at=None) -> dict:
    """Recall@k of ``idx.search_vectors`` on ``qs`` (each query with the setting of its length, as
    :meth:`Index.search` does) against exact top-k row numbers.

    ``vectors_at(rows)``: the stored vectors of shard rows. With it, a hit outside the exact top k
    whose exact score ties the k-th (a duplicate document) counts as found.
    """
    known = qs.tokens if np.all(qs.tokens >= 0) else None
    found = idx.search_vectors(qs.vectors, k, tokens=known).rows
    tied = None if vectors_at is None else _tied(found, truth_rows, qs.vectors, vectors_at)
    per_query = recall_per_query(found, truth_rows, tied)
    return {"k": k, "queries": len(qs), "recall": round(float(per_query.mean()), 4),
            "buckets": bucket_recall(per_query, qs.buckets(), k)}


def _tied(found: np.ndarray, truth: np.ndarray, queries: np.ndarray, vectors_at) -> np.ndarray:
    """Found slots whose exact score reaches the k-th exact score (scores from the stored vectors)."""
    rows = np.concatenate([truth[:, -1:], found], axis=1)  # one read of the shards for both
    scores = np.full(rows.shape, -np.inf, dtype=np.float32)
    at = rows >= 0
    if at.any():
        q = np.broadcast_to(queries[:, None, :], (*rows.shape, queries.shape[1]))[at]
        scores[at] = np.einsum("ij,ij->i", vectors_at(rows[at]), q)
    kth = scores[:, :1]
    kth[~np.isfinite(kth)] = np.inf  # fewer than k documents: nothing ties
    return scores[:, 1:] >= kth - TIE
