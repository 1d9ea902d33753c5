"""Choose an index's search parameters for a recall target, measured against exact search.

Also the queries to tune with: windows of a corpus's documents (like a user's short queries)
or a file of the user's own queries.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
import pyarrow as pa

from ..errors import ConfigError, QueryError
from . import faiss_ops as faiss_index

if TYPE_CHECKING:
    from ..io.corpus import Corpus
    from ..tower.encoder import TextEncoder

logger = logging.getLogger(__name__)

NPROBES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096)
EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
K_FACTORS = (1, 2, 4, 8, 16, 32, 64)
PLATEAU = 0.002  # recall gains smaller than this are not worth a costlier setting
# A setting passes when recall's one-sided 95% lower bound (mean - Z * standard error over the
# held-out queries) reaches the target: the mean alone passes, half the time, settings that
# fall short on the next sample of queries.
Z = 1.645
# Below this many tuning queries the bound is too loose to trust (a few perfect queries pass any setting).
FEW_QUERIES = 100


@dataclass
class Tuning:
    """The setting kept, what it reached, and every setting tried."""

    params: dict
    recall: float
    recall_lower_bound: float
    target_recall: float
    k: int
    queries: int
    reached: bool
    p50_ms: float | None = None
    p99_ms: float | None = None
    batch_qps: float | None = None
    tried: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def exact_topk(chunks, queries: np.ndarray, k: int) -> np.ndarray:
    """Labels of the exact inner-product top-k, merged over (vectors, labels) chunks."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_l = np.full((len(queries), k), -1, dtype=np.int64)
    for vectors, labels in chunks:
        s, i = faiss.knn(queries, np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(vectors)),
                         metric=faiss.METRIC_INNER_PRODUCT)
        lab = labels[i] if labels is not None else i
        s_all = np.concatenate([best_s, s], axis=1)
        l_all = np.concatenate([best_l, lab], axis=1)
        order = np.argsort(-s_all, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(s_all, order, axis=1)
        best_l = np.take_along_axis(l_all, order, axis=1)
    return best_l


def recall_per_query(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|found ∩ truth| / k for each query."""
    k = truth.shape[1]
    hits = [len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) for f, t in zip(found, truth)]
    return np.asarray(hits, dtype=np.float64) / k


def knn_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k: how much of the exact top-k a search finds.

    Not the evaluation metric recall@k (:mod:`glovefaiss.evaluation.retrieval`), which counts
    judged-relevant documents.
    """
    return float(np.mean(recall_per_query(found, truth)))




def lower_bound(per_query: np.ndarray) -> float:
    """One-sided 95% lower confidence bound of the mean recall."""
    if len(per_query) < 2:
        return float(np.mean(per_query))
    return float(np.mean(per_query) - Z * np.std(per_query, ddof=1) / np.sqrt(len(per_query)))


def warn_if_few(queries: np.ndarray) -> None:
    """Log that a recall measured on fewer than ``FEW_QUERIES`` queries is rough (once per tuning)."""
    if len(queries) < FEW_QUERIES:
        logger.warning("tuning on only %d queries: the recall reached is a rough estimate", len(queries))


def _latency(index: faiss.Index, queries: np.ndarray, k: int, n: int = 200) -> tuple[float, float]:
    """Single-query p50/p99 in ms on one thread."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        times = []
        for q in queries[:n]:
            t = time.perf_counter()
            index.search(q[None, :], k)
            times.append(time.perf_counter() - t)
    finally:
        faiss.omp_set_num_threads(threads)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def _grid(fam: str, nlist: int) -> list[list[dict]]:
    """Candidate settings as lines of increasing cost; a line stops at the first that reaches the target."""
    nprobes = [p for p in NPROBES if p <= nlist] or [nlist]
    if fam == "ivf":
        return [[{"nprobe": p} for p in nprobes]]
    if fam == "ivf-refine":
        return [[{"nprobe": p, "k_factor": kf} for p in nprobes] for kf in K_FACTORS]
    if fam == "hnsw":
        return [[{"efSearch": ef} for ef in EF_SEARCH]]
    return [[{}]]


def tune(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, k: int = 10,
         target_recall: float = 0.95) -> Tuning:
    """The fastest setting reaching ``target_recall`` (recall@k of ``queries`` against ``truth``).

    Reaching means that the lower confidence bound of the recall (see ``Z``) is at the target,
    so that other queries of the same kind reach it too. Each line of the grid is walked until the target is met; the candidates that meet it are
    timed (one thread, single queries) and the fastest is kept. If none meets it, the cheapest
    setting within ``PLATEAU`` of the best recall is kept and ``reached`` is False; a line stops
    early once two more steps gain less than ``PLATEAU``.
    """
    fam = faiss_index.family(index)
    tried, winners = [], []
    best: tuple[float, dict, float] = (-1.0, {}, -1.0)
    for line in _grid(fam, faiss_index.nlist_of(index)):
        history: list[float] = []
        for params in line:
            faiss_index.set_params(index, params)
            _, found = index.search(queries, k)
            per_query = recall_per_query(found, truth)
            r, lb = float(per_query.mean()), lower_bound(per_query)
            tried.append({**params, "recall": round(r, 4), "recall_lower_bound": round(lb, 4)})
            history.append(r)
            if r > best[0] + PLATEAU:  # on a plateau, the cheaper setting is the better one
                best = (r, params, lb)
            if lb >= target_recall:
                winners.append((r, params, lb))
                break
            if len(history) >= 3 and history[-1] - history[-3] < PLATEAU:
                break  # quantisation, not the search, limits recall now: more cost buys nothing
    if winners:
        timed = []
        for r, params, lb in winners:
            faiss_index.set_params(index, params)
            p50, p99 = _latency(index, queries, k)
            timed.append((p50, p99, r, params, lb))
            next(t for t in tried if all(t.get(key) == v for key, v in params.items()))["p50_ms"] = round(p50, 4)
        p50, p99, r, params, lb = min(timed, key=lambda t: t[0])
        reached = True
    else:
        r, params, lb = best
        reached = False
        faiss_index.set_params(index, params)
        p50, p99 = _latency(index, queries, k)
        logger.warning("recall@%d target %.3f not reached: best %.3f, lower bound %.3f (short by %.3f) with %s",
                       k, target_recall, r, lb, target_recall - lb, params or "exact search")
    faiss_index.set_params(index, params)
    t = time.perf_counter()
    index.search(queries, k)
    qps = len(queries) / (time.perf_counter() - t)
    return Tuning(params=params, recall=round(r, 4), recall_lower_bound=round(lb, 4), target_recall=target_recall,
                  k=k, queries=len(queries),
                  reached=reached, p50_ms=round(p50, 4), p99_ms=round(p99, 4), batch_qps=round(qps, 1), tried=tried)


WINDOW_QUERIES = "windows of 2-8 words from sampled documents"  # the tuning queries' source, as recorded


def window_sample(num_rows: int, n: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """(sorted rows of the documents to cut ``n`` window queries from, the generator that cuts them)."""
    rng = np.random.default_rng([seed, 11])
    return np.sort(rng.choice(num_rows, min(2 * n, num_rows), replace=False)), rng


def window_queries(texts: list[str], encoder: TextEncoder, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` query vectors, each a random window of 2-8 tokens of one of ``texts``."""
    queries = []
    for tokens in encoder.tokeniser.tokenise_arrow(pa.array(texts, pa.string())).to_pylist():
        if tokens:
            length = int(rng.integers(2, 9))
            start = int(rng.integers(0, max(1, len(tokens) - length + 1)))
            queries.append(" ".join(tokens[start:start + length]))
    vectors = encoder.encode(pa.array(queries, pa.string()))
    return vectors[np.any(vectors != 0, axis=1)][:n]


def corpus_window_queries(corpus: Corpus, encoder: TextEncoder, n: int, seed: int) -> np.ndarray:
    """Query vectors like a user's: windows of 2-8 tokens from documents sampled (seeded) from the corpus."""
    rows, rng = window_sample(corpus.num_rows, n, seed)
    texts: list[str] = []
    pos = 0
    for _, batch in corpus.batches(65536):
        lo, hi = np.searchsorted(rows, [pos, pos + len(batch)])
        if hi > lo:
            texts += batch.take(pa.array(rows[lo:hi] - pos)).to_pylist()
        pos += len(batch)
    return window_queries(texts, encoder, n, rng)


def file_tuning_queries(path: str | Path, encoder: TextEncoder, n: int, seed: int) -> tuple[np.ndarray, str]:
    """(vectors, description) of up to ``n`` queries of a query file (a seeded sample when it holds more)."""
    from ..io.rows import read_queries

    try:
        _, texts = read_queries(path)
    except QueryError as e:
        raise ConfigError(f"--tuning-queries: {e}") from None
    vectors = encoder.encode(pa.array(texts, pa.string()))
    vectors = vectors[np.any(vectors != 0, axis=1)]
    if not len(vectors):
        raise ConfigError(f"--tuning-queries: none of the {len(texts)} queries in {path} has a word in the vocabulary")
    if len(vectors) > n:
        vectors = vectors[np.sort(np.random.default_rng([seed, 12]).choice(len(vectors), n, replace=False))]
    return vectors, f"{len(vectors)} queries from {path}"
