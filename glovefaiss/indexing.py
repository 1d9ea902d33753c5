"""Build the FAISS index of an index directory from its shards: choose, train, fill, tune."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import index as faiss_index
from .config import BuildConfig
from .shards import ShardReader, iter_shard_vectors
from .tune import exact_topk, tune

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
                with_ids: bool, seed: int = 0, queries: np.ndarray | None = None) -> tuple[Any, dict]:
    """Create the index ``bc`` asks for over every shard vector; tune it if it is approximate.

    ``queries``: the vectors to tune with (default: a sample of the documents themselves, which
    flatters recall: a document sits in its own IVF cell).
    """
    reader = ShardReader(directory, shards)
    n = reader.num_rows
    kind, key = resolve_index(bc, n, dim)
    index = faiss_index.make_index(dim, key, with_ids)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    if not index.is_trained:
        nlist = faiss_index.nlist_for(n)
        m = min(n, max(50_000, 40 * nlist))  # faiss asks for at least 39 points per list
        sample = _sample_rows(reader, np.sort(rng.choice(n, m, replace=False)))
        logger.info("training %s on %d of %d vectors", key, len(sample), n)
        faiss_index.train(index, sample, seed)
    t_train = time.perf_counter() - t0
    faiss_index.add_all(index, ((v, lab if with_ids else None) for v, lab in _chunks(reader, with_ids)))
    t_add = time.perf_counter() - t0 - t_train
    info: dict[str, Any] = {"type": kind, "key": key, "requested": bc.index_key or bc.index,
                            "params": {}, "train_s": round(t_train, 3), "add_s": round(t_add, 3)}
    if faiss_index.family(index) != "flat":
        if queries is None:
            queries = _sample_rows(reader, np.sort(rng.choice(n, min(n, bc.tune_queries), replace=False)))
        queries = np.ascontiguousarray(queries[np.any(queries != 0, axis=1)], dtype=np.float32)
        truth = exact_topk(_chunks(reader, with_ids), queries, bc.tune_k)
        tuning = tune(index, queries, truth, bc.tune_k, bc.target_recall)
        info["params"] = tuning.params
        info["tuning"] = tuning.to_dict()
        info["tune_s"] = round(time.perf_counter() - t0 - t_train - t_add, 3)
    return index, info
