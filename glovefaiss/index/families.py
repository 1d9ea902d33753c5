"""Build the FAISS index of an index directory from its shards: choose, train, fill, tune."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import BuildConfig
from . import faiss_ops as faiss_index
from .shards import ShardReader, iter_shard_vectors
from .tuning import QuerySet, exact_topk, tune, warn_if_few

logger = logging.getLogger(__name__)


def _chunks(reader: ShardReader, with_ids: bool):
    start = 0
    for ids, vectors in iter_shard_vectors(reader):
        labels = ids.to_numpy() if with_ids else np.arange(start, start + len(ids), dtype=np.int64)
        start += len(ids)
        yield vectors, labels


def _sample_rows(reader: ShardReader, rows: np.ndarray) -> np.ndarray:
    """Vectors at sorted global ``rows``, gathered in one pass over the shards."""
    out, start = [], 0
    for _, vectors in iter_shard_vectors(reader):
        lo, hi = np.searchsorted(rows, [start, start + len(vectors)])
        out.append(vectors[rows[lo:hi] - start])
        start += len(vectors)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def resolve_index(bc: BuildConfig, n: int, dim: int) -> tuple[str, str]:
    """(kind, FAISS factory key) that ``bc`` asks for over ``n`` vectors of ``dim``."""
    if bc.index_key:
        return "custom", bc.index_key
    kind = faiss_index.choose_kind(n, dim, faiss_index.parse_bytes(bc.max_index_memory)) if bc.index == "auto" \
        else bc.index
    return kind, faiss_index.factory_key(kind, n, dim)


def build_index(directory: Path, shards: list[dict], dim: int, bc: BuildConfig,
                with_ids: bool, seed: int = 0, queries: QuerySet | np.ndarray | None = None,
                fill: Callable[[Any], None] | None = None) -> tuple[Any, dict]:
    """Create the index ``bc`` asks for over every shard vector; tune it if it is approximate.

    ``queries``: the vectors to tune with (default: a sample of the documents themselves, which
    flatters recall: a document sits in its own IVF cell). With ``index: auto``, when the tuned
    single-query p50 exceeds ``bc.auto_latency_ms``, other families (see
    :func:`.faiss_ops.alternatives`) are built and tuned too, and the fastest one that reaches the
    target is kept (or, if none does, the one with the highest recall); all are recorded.
    ``fill(index)`` adds every shard vector, in row order, to a trained empty index (default:
    here; an engine can add parts elsewhere and merge them).
    """
    reader = ShardReader(directory, shards)
    n = reader.num_rows
    kind, key = resolve_index(bc, n, dim)
    rng = np.random.default_rng(seed)
    index, info = _build_one(reader, kind, key, dim, with_ids, seed, rng, fill)
    info["requested"] = bc.index_key or bc.index
    if faiss_index.family(index) == "flat":
        return index, info
    if queries is None:
        queries = _sample_rows(reader, np.sort(rng.choice(n, min(n, bc.tune_queries), replace=False)))
    queries, truth = _tuning_set(reader, with_ids, queries, bc)
    auto = bc.index == "auto" and not bc.index_key
    alternatives = faiss_index.alternatives(kind, n, dim, faiss_index.parse_bytes(bc.max_index_memory)) if auto else []
    # With other families to try, walking this one past the latency budget only prices it out.
    budget = bc.auto_latency_ms if alternatives else None
    _tune_into(index, info, queries, truth, bc, budget)
    if not auto:
        return index, info
    best_index, best = index, info
    slow = info["tuning"]["p50_ms"] > bc.auto_latency_ms or not info["tuning"]["reached"]
    tried = [info]
    for alt in (alternatives if slow else []):
        logger.info("index %s needs %.2f ms per query at recall %.3f; trying %s too", key,
                    info["tuning"]["p50_ms"], info["tuning"]["recall"], alt)
        # The first family's centroids serve the alternative (same list count): no second k-means.
        alt_index, alt_info = _build_one(reader, alt, faiss_index.factory_key(alt, n, dim), dim, with_ids, seed,
                                         np.random.default_rng(seed), fill, centroids=faiss_index.centroids_of(index))
        alt_info["requested"] = bc.index
        _tune_into(alt_index, alt_info, queries, truth, bc)
        tried.append(alt_info)
        if _better(alt_info["tuning"], best["tuning"]):
            best_index, best = alt_index, alt_info
    if budget is not None and not best["tuning"]["reached"]:
        # No family reached the target: the first one's walk, given up at the budget, goes on.
        _tune_into(index, info, queries, truth, bc)
        if _better(info["tuning"], best["tuning"]):
            best_index, best = index, info
    if len(tried) > 1:
        best = {**best, "candidates": [_summary(t) for t in tried]}
    return best_index, best


def retune(index, directory: Path, shards: list[dict], bc: BuildConfig, with_ids: bool,
           queries: QuerySet | np.ndarray) -> dict:
    """Tune ``index`` again against exact search over ``shards`` (after documents were added).

    Returns ``{"params", "params_by_length", "tuning", "tune_s"}``; the index is left set to the new parameters.
    """
    queries, truth = _tuning_set(ShardReader(directory, shards), with_ids, queries, bc)
    info: dict = {}
    _tune_into(index, info, queries, truth, bc)
    return info


def _tuning_set(reader: ShardReader, with_ids: bool, queries: QuerySet | np.ndarray,
                bc: BuildConfig) -> tuple[QuerySet, np.ndarray]:
    """(queries with a known word, their exact top-``tune_k`` labels over every shard vector)."""
    qs = QuerySet.of(queries).known()
    qs = QuerySet(np.ascontiguousarray(qs.vectors, dtype=np.float32), qs.tokens)
    warn_if_few(qs.vectors)
    return qs, exact_topk(_chunks(reader, with_ids), qs.vectors, bc.tune_k)


def _build_one(reader: ShardReader, kind: str, key: str, dim: int, with_ids: bool, seed: int,
               rng: np.random.Generator, fill: Callable[[Any], None] | None = None,
               centroids: np.ndarray | None = None) -> tuple[Any, dict]:
    """A trained and filled index of ``key`` (training on a seeded sample of the shard vectors).

    ``fill``: adds the shard vectors to the trained index (default: here, shard by shard; the
    Ray engine fills parts on its workers). ``centroids``: IVF centroids to reuse when the index
    has that many lists (then only the codes, e.g. PQ, are trained, on a smaller sample).
    """
    n = reader.num_rows
    index = faiss_index.make_index(dim, key, with_ids)
    t0 = time.perf_counter()
    reused = centroids is not None and faiss_index.give_centroids(index, centroids)
    if not index.is_trained:
        nlist = faiss_index.nlist_for(n)
        m = min(n, 50_000 if reused else max(50_000, 40 * nlist))  # faiss asks for at least 39 points per list
        vectors = _sample_rows(reader, np.sort(rng.choice(n, m, replace=False)))
        logger.info("training %s on %d of %d vectors", key, len(vectors), n)
        faiss_index.train(index, vectors, seed)
    t_train = time.perf_counter() - t0
    if fill is not None:
        fill(index)
    else:
        faiss_index.add_all(index, ((v, lab if with_ids else None) for v, lab in _chunks(reader, with_ids)))
    t_add = time.perf_counter() - t0 - t_train
    info = {"type": kind, "key": key, "params": {}, "train_s": round(t_train, 3), "add_s": round(t_add, 3)}
    if reused:
        info["centroids"] = "reused from the first family"
    return index, info


def _tune_into(index, info: dict, queries: QuerySet, truth: np.ndarray, bc: BuildConfig,
               budget_ms: float | None = None) -> None:
    t0 = time.perf_counter()
    tuning = tune(index, queries, truth, bc.tune_k, bc.target_recall, budget_ms)
    info["params"] = tuning.params
    # Index.search gives each query the setting of its length; without lengths, every query gets params.
    info["params_by_length"] = tuning.params_by_length
    info["tuning"] = tuning.to_dict()
    info["tune_s"] = round(time.perf_counter() - t0, 3)


def _better(a: dict, b: dict) -> bool:
    """Tuning ``a`` beats ``b``: it reaches the target and is faster, or neither reaches and ``a`` recalls more."""
    if a["reached"] != b["reached"]:
        return a["reached"]
    if a["reached"]:
        return a["p50_ms"] < b["p50_ms"]
    return a["recall"] > b["recall"]


def _summary(info: dict) -> dict:
    t = info["tuning"]
    return {"type": info["type"], "key": info["key"], "params": info["params"], "recall": t["recall"],
            "recall_lower_bound": t["recall_lower_bound"], "reached": t["reached"], "p50_ms": t["p50_ms"],
            "train_s": info["train_s"], "add_s": info["add_s"], "tune_s": info["tune_s"], "tried": t["tried"]}
