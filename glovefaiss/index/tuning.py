"""Choose an index's search parameters for a recall target, measured against exact search.

Also the queries to tune with: windows of a corpus's documents (like a user's short queries)
or a file of the user's own queries.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import faiss
import numpy as np
import pyarrow as pa

from . import faiss_ops as faiss_index
from .faiss_warm import single_query_view
from .info import params_text

if TYPE_CHECKING:
    from ..tower.encoder import TextEncoder

logger = logging.getLogger(__name__)

NPROBES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096)
EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# 128: whole Zipf documents, whose neighbours are nearly tied, fell short at 64 over 1,000 lists (0.92)
K_FACTORS = (1, 2, 4, 8, 16, 32, 64, 128)
PLATEAU = 0.002  # recall gains smaller than this are not worth a costlier setting
# A setting passes when recall's one-sided 95% lower bound (see lower_bound) over the held-out
# queries reaches the target: the mean alone passes, half the time, settings that fall short on
# the next sample of queries.
Z = 1.645
# Below this many tuning queries the bound is too loose to trust (a few perfect queries pass any setting).
FEW_QUERIES = 100


@dataclass
class Tuning:
    """The setting kept, what it reached (overall and per token-count bucket), and every setting tried.

    ``params``: one setting for queries of any length (of unknown length, e.g. a document's own
    vector), reaching ``uniform_recall_lower_bound`` in the worst bucket at ``uniform_p50_ms``;
    ``params_by_length``: each bucket's own cheapest setting, ``[{"max_tokens", "params"}]`` in
    bucket order (the last ``max_tokens`` None), empty when the queries' lengths are unknown.
    ``buckets``, ``recall``, ``recall_lower_bound`` (the worst bucket's bound), ``p50_ms`` and
    ``short_buckets`` (bound below the target) are with each bucket's own setting.
    """

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
    buckets: dict = field(default_factory=dict)
    short_buckets: list = field(default_factory=list)
    tried: list = field(default_factory=list)
    params_by_length: list = field(default_factory=list)
    uniform_p50_ms: float | None = None
    uniform_recall_lower_bound: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def exact_topk(chunks, queries: np.ndarray, k: int) -> np.ndarray:
    """Labels of the exact inner-product top-k, merged over (vectors, labels) chunks."""
    return exact_neighbours(chunks, queries, k, with_vectors=False)[0]


def exact_neighbours(chunks, queries: np.ndarray, k: int,
                     with_vectors: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(labels, vectors, scores) of the exact inner-product top-k, merged over (vectors, labels) chunks.

    ``vectors`` is (queries, k, dim), zeros where a slot is empty; None without ``with_vectors``.
    """
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_l = np.full((len(queries), k), -1, dtype=np.int64)
    best_v = None
    for vectors, labels in chunks:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with faiss_index.blas_scoring():
            s, i = faiss.knn(queries, vectors, min(k, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)
        lab = labels[i] if labels is not None else i
        s_all = np.concatenate([best_s, s], axis=1)
        l_all = np.concatenate([best_l, lab], axis=1)
        order = np.argsort(-s_all, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(s_all, order, axis=1)
        best_l = np.take_along_axis(l_all, order, axis=1)
        if with_vectors:
            if best_v is None:
                best_v = np.zeros((len(queries), k, vectors.shape[1]), dtype=np.float32)
            v_all = np.concatenate([best_v, vectors[i]], axis=1)
            best_v = np.take_along_axis(v_all, order[:, :, None], axis=1)
    return best_l, best_v, best_s


def recall_per_query(found: np.ndarray, truth: np.ndarray, tied: np.ndarray | None = None) -> np.ndarray:
    """|found ∩ truth| / k for each query.

    ``tied`` (bool, found's shape): the found slots whose exact score reaches the k-th exact score.
    They count as found too: a duplicate of the k-th neighbour is as near as it is.
    """
    k = truth.shape[1]
    if tied is None:
        hits = [len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) for f, t in zip(found, truth)]
    else:
        hits = []
        for f, t, tie in zip(found.tolist(), truth.tolist(), tied.tolist()):
            true = set(t)
            hits.append(min(k, sum(1 for x, x_tied in zip(f, tie) if x >= 0 and (x in true or x_tied))))
    return np.asarray(hits, dtype=np.float64) / k


# Exact scores this close count as the same: one float32 dot product of unit vectors against another.
TIE = 1e-6


def tied_hits(index: faiss.Index, scores: np.ndarray, found: np.ndarray, kth: np.ndarray | None,
              rows: np.ndarray) -> np.ndarray | None:
    """The hits of a search whose score ties or beats the k-th exact score (``kth[rows]``), when
    ``index`` scores exactly (flat vectors, or re-ranked on them); None otherwise.

    A corpus of repeated documents has more exact neighbours at the k-th score than k: any of them
    is as near, and counting only the exact search's picks made recall look far short (0.73 for
    IVF-Flat on a corpus of sentences repeated 76 times each).
    """
    if kth is None or not faiss_index.scores_exactly(index):
        return None
    return (found >= 0) & (scores >= kth[rows][:, None] - TIE)


def knn_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k: how much of the exact top-k a search finds.

    Not the evaluation metric recall@k (:mod:`glovefaiss.evaluation.retrieval`), which counts
    judged-relevant documents.
    """
    return float(np.mean(recall_per_query(found, truth)))




def lower_bound(per_query: np.ndarray, k: int) -> float:
    """One-sided 95% lower confidence bound of the mean recall@k of ``per_query`` recalls.

    The lower of the normal bound (mean minus Z standard errors) and the Wilson bound over the
    n x k neighbour slots: with few queries the spread seen can be nil (3 queries all at 1.0),
    and the normal bound alone would then claim 1.0.
    """
    n = len(per_query)
    if n == 0:
        return 0.0
    p = float(np.mean(per_query))
    normal = p - Z * float(np.std(per_query, ddof=1)) / np.sqrt(n) if n >= 2 else p
    m = n * k
    wilson = (p + Z * Z / (2 * m) - Z * np.sqrt(p * (1 - p) / m + Z * Z / (4 * m * m))) / (1 + Z * Z / m)
    return float(min(normal, wilson))


def warn_if_few(queries: np.ndarray) -> None:
    """Log that a recall measured on fewer than ``FEW_QUERIES`` queries is rough (once per tuning)."""
    if len(queries) < FEW_QUERIES:
        logger.warning("tuning on only %d queries: the recall reached is a rough estimate", len(queries))


def single_query_ms(index: faiss.Index, queries: np.ndarray, k: int, params=None) -> np.ndarray:
    """Single-query latencies in ms on one thread, each query timed once (``params``: SearchParameters,
    or a list of them taking turns: query i with ``params[i % len(params)]``), searched as a warmed
    :class:`~.search.Index` searches one query."""
    index = single_query_view(index)
    turns = params if isinstance(params, list) else [params]
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        times = np.empty(len(queries))
        for i, q in enumerate(queries):
            p = turns[i % len(turns)]
            t = time.perf_counter()
            index.search(q[None, :], k, params=p)
            times[i] = time.perf_counter() - t
    finally:
        faiss.omp_set_num_threads(threads)
    return times * 1e3


def nprobe_grid(nlist: int) -> list[int]:
    """The nprobe values tuning tries over ``nlist`` lists, cheapest first."""
    return [p for p in NPROBES if p <= nlist] or [nlist]


def _grid(fam: str, nlist: int) -> list[list[dict]]:
    """Candidate settings as lines of increasing cost; a line stops at the first that reaches the target.

    Lines with re-ranking go from the deepest re-ranking down: a shallower one never needs fewer
    probes, so each line starts where the one before it stopped (see :func:`tune`).
    """
    nprobes = nprobe_grid(nlist)
    if fam == "ivf":
        return [[{"nprobe": p} for p in nprobes]]
    if fam == "ivf-refine":
        return [[{"nprobe": p, "k_factor": kf} for p in nprobes] for kf in reversed(K_FACTORS)]
    if fam == "hnsw":
        return [[{"efSearch": ef} for ef in EF_SEARCH]]
    return [[{}]]


def bucket_recall(per_query: np.ndarray, buckets: dict[str, np.ndarray], k: int) -> dict[str, dict]:
    """{bucket: {"queries", "recall", "recall_lower_bound"}} of per-query recalls@``k``."""
    return {name: {"queries": len(rows), "recall": round(float(per_query[rows].mean()), 4),
                   "recall_lower_bound": round(lower_bound(per_query[rows], k), 4)} for name, rows in buckets.items()}


def _timing_rows(buckets: dict[str, np.ndarray], per_bucket: int) -> np.ndarray:
    """Up to ``per_bucket`` queries of each bucket (the first ones: the sets are already shuffled)."""
    return np.concatenate([rows[:per_bucket] for rows in buckets.values()])


def _split_p50(lat: np.ndarray, buckets: dict[str, np.ndarray], per_bucket: int) -> dict[str, float]:
    """{bucket: p50} of latencies timed on :func:`_timing_rows` of ``buckets``."""
    out, offset = {}, 0
    for name, rows in buckets.items():
        m = min(len(rows), per_bucket)
        out[name] = round(float(np.median(lat[offset:offset + m])), 4)
        offset += m
    return out


def _best_short(tried: list[dict], target_recall: float) -> dict:
    """With no setting reaching the target everywhere: the one reaching it in the most buckets, and
    among those the first tried (the cheapest) within ``PLATEAU`` of their best worst-bucket recall."""
    full = max(len(e["buckets"]) for e in tried)
    tried = [e for e in tried if len(e["buckets"]) == full]

    def reached(e):
        return sum(b["recall_lower_bound"] >= target_recall for b in e["buckets"].values())

    def worst(e):
        return min(b["recall"] for b in e["buckets"].values())

    most = max(reached(e) for e in tried)
    pool = [e for e in tried if reached(e) == most]
    top = max(worst(e) for e in pool)
    return next(e for e in pool if worst(e) >= top - PLATEAU)


TIME_PER_BUCKET = 40  # single queries timed per bucket for each setting tried (the tuning curve)
TIME_KEPT_PER_BUCKET = 200  # and for each passing setting of a bucket, timed again side by side (see tune)
PARAM_KEYS = ("nprobe", "k_factor", "efSearch")
LINE_KEYS = ("k_factor",)  # the parameters fixed along one line of the grid (see _grid)


PRICED_OUT = 1.25  # a bucket leaves a line once it is this much slower than its best setting so far


def _walk(index: faiss.Index, vectors: np.ndarray, truth: np.ndarray, buckets: dict[str, np.ndarray], k: int,
          target_recall: float, budget_ms: float | None = None, least_nprobe: int = 0,
          kth: np.ndarray | None = None) -> list[dict]:
    """Every setting tried, walking the grid's lines (see :func:`_grid`) for the buckets still reachable.

    A line starts at the earliest setting where a bucket met the target in the line before and
    stops at the first setting where every bucket walked meets it (or once recall stalls); a bucket that fell short in a line
    is not walked in shallower ones. Only the walked buckets' queries are searched and timed.
    Settings cost more along a line, so a bucket short of the target leaves it once its p50 is
    ``PRICED_OUT`` times that of its best setting so far (or of ``budget_ms``, before it has one):
    nothing further along can be its fastest. The first line starts at ``least_nprobe`` probes.
    """
    fam = faiss_index.family(index)
    stall = 3 if fam == "hnsw" else 2  # HNSW's recall on single words can stall for two steps, then jump
    # Each bucket's queries in a seeded random order: a screening part (a prefix) is then a random
    # sample whatever order the queries came in (a query file, documents in corpus order).
    rng = np.random.default_rng(0)
    buckets = {name: rows[rng.permutation(len(rows))] for name, rows in buckets.items()}
    tried: list[dict] = []
    best_ms: dict[str, float] = {}
    grid = _grid(fam, faiss_index.nlist_of(index))
    first = next((pos for pos, params in enumerate(grid[0]) if params.get("nprobe", 0) >= least_nprobe), 0)
    active, start = list(buckets), dict.fromkeys(buckets, first)
    for line in grid:
        history: list[float] = []
        was_screened = False
        reached_at: dict[str, int] = {}
        walking = list(active)
        for pos in range(min(start[name] for name in active), len(line)):
            walked = {name: buckets[name] for name in walking}
            params = line[pos]
            faiss_index.set_params(index, params)
            mean, per_bucket = _screened_recall(index, vectors, truth, walked, k, target_recall, kth)
            timing = vectors[_timing_rows(walked, TIME_PER_BUCKET)]
            for name, p50 in _split_p50(single_query_ms(index, timing, k), walked, TIME_PER_BUCKET).items():
                per_bucket[name]["p50_ms"] = p50
            tried.append(curve_entry(params, mean, per_bucket))
            for name, b in per_bucket.items():
                if b["recall_lower_bound"] >= target_recall:
                    reached_at.setdefault(name, pos)
                    best_ms[name] = min(best_ms.get(name, b["p50_ms"]), b["p50_ms"])
            if all(b["recall_lower_bound"] >= target_recall for b in per_bucket.values()):
                break  # one setting for every bucket at once (a bucket may dip below after reaching)
            # A mean over a screening part beside one over all queries differs by sampling alone, and
            # would read as progress or as a stall: the history restarts when the measured set changes.
            screened = any(b["queries"] < len(walked[name]) for name, b in per_bucket.items())
            if history and screened != was_screened:
                history = []
            was_screened = screened
            history.append(float(np.mean([b["recall"] for b in per_bucket.values()])))
            if len(history) > stall and history[-1] - history[-1 - stall] < PLATEAU:
                break  # quantisation, not the search, limits recall now: more cost buys nothing
            cap = {name: best_ms.get(name, budget_ms) for name in walking}
            still = [name for name in walking if name in reached_at or cap[name] is None
                     or per_bucket[name]["p50_ms"] <= PRICED_OUT * cap[name]]
            if all(name in reached_at for name in still):
                break
            if still != walking:  # a mean over other buckets: its history says nothing now
                walking, history = still, []
        # shallower re-ranking than a line where a bucket fell short cannot do better for it
        active = [name for name in active if name in reached_at]
        start = reached_at
        if not active:
            break
    return tried


def curve_entry(params: dict, recall: float, buckets: dict[str, dict]) -> dict:
    """One setting of a tuning curve: its parameters, mean recall, the worst bucket's lower bound,
    the buckets' figures (each with ``p50_ms``) and the median of their p50s."""
    return {**params, "recall": round(recall, 4),
            "recall_lower_bound": min(b["recall_lower_bound"] for b in buckets.values()), "buckets": buckets,
            "p50_ms": round(float(np.median([b["p50_ms"] for b in buckets.values()])), 4)}


def _params_of(entry: dict) -> dict:
    """The search parameters of a curve entry."""
    return {key: v for key, v in entry.items() if key in PARAM_KEYS}


SCREEN = 4  # a setting is searched first with a quarter of each bucket's queries,
SCREEN_MIN = 50  # when that quarter holds this many (fewer queries are cheap to search in full anyway)
Z_SCREEN = 3.0  # and left there when even its recall plus 3 standard errors misses the target in every bucket


def _screen_part(rows: np.ndarray) -> np.ndarray:
    """The first quarter of a bucket's (shuffled) queries; all of them when a quarter is under ``SCREEN_MIN``."""
    return rows[:len(rows) // SCREEN] if len(rows) // SCREEN >= SCREEN_MIN else rows


def _screened_recall(index: faiss.Index, vectors: np.ndarray, truth: np.ndarray, walked: dict[str, np.ndarray],
                     k: int, target_recall: float, kth: np.ndarray | None = None) -> tuple[float, dict[str, dict]]:
    """(mean recall, :func:`bucket_recall` per bucket) of ``walked`` buckets' queries (each in random
    order) at the index's setting.

    Most settings of a walk are far short of the target; a quarter of the queries (see
    :func:`_screen_part`) shows that, and their entries then count those queries only. The full set is
    searched only when some bucket might reach the target, so every setting that passes was
    measured on all its bucket's queries (the screened quarter is not searched twice).
    """
    part = {name: _screen_part(rows) for name, rows in walked.items()}
    if not all(len(part[name]) < len(walked[name]) for name in walked):
        return _recall_of(index, vectors, truth, walked, k, kth)
    first = _per_query_recall(index, vectors, truth, part, k, kth)
    mean, per_bucket = _figures(first, k)
    if all(b["recall"] + Z_SCREEN / Z * (b["recall"] - b["recall_lower_bound"]) < target_recall
           for b in per_bucket.values()):
        return mean, per_bucket
    rest = _per_query_recall(index, vectors, truth, {name: rows[len(part[name]):] for name, rows in walked.items()}, k,
                             kth)
    return _figures({name: np.concatenate([first[name], rest[name]]) for name in walked}, k)


def _recall_of(index: faiss.Index, vectors: np.ndarray, truth: np.ndarray, buckets: dict[str, np.ndarray],
               k: int, kth: np.ndarray | None = None) -> tuple[float, dict[str, dict]]:
    """(mean recall, :func:`bucket_recall` per bucket) of ``buckets``' queries at the index's setting."""
    return _figures(_per_query_recall(index, vectors, truth, buckets, k, kth), k)


def _per_query_recall(index: faiss.Index, vectors: np.ndarray, truth: np.ndarray, buckets: dict[str, np.ndarray],
                      k: int, kth: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each bucket's per-query recall@k, its queries (rows of ``vectors``) searched in one batch
    (hits tied with the k-th exact score counted as found, given ``kth``: see :func:`tied_hits`)."""
    rows = np.concatenate(list(buckets.values()))
    scores, found = index.search(vectors[rows], k)
    per_query = recall_per_query(found, truth[rows], tied_hits(index, scores, found, kth, rows))
    return dict(zip(buckets, np.split(per_query, np.cumsum([len(r) for r in buckets.values()])[:-1])))


def _figures(per_query: dict[str, np.ndarray], k: int) -> tuple[float, dict[str, dict]]:
    """(mean over every query, :func:`bucket_recall` per bucket) of per-query recalls@``k`` by bucket."""
    every = np.concatenate(list(per_query.values()))
    starts = np.cumsum([0] + [len(r) for r in per_query.values()])
    local = {name: np.arange(starts[i], starts[i + 1]) for i, name in enumerate(per_query)}
    return float(every.mean()), bucket_recall(every, local, k)


def _first_per_line(entries: list[dict]) -> list[dict]:
    """The first of ``entries`` (in the order tried) on each line of the grid: further along a line
    a setting only costs more, whatever the timing noise says."""
    first: dict[tuple, dict] = {}
    for e in entries:
        first.setdefault(tuple((key, e[key]) for key in LINE_KEYS if key in e), e)
    return list(first.values())


def short_message(k: int, target_recall: float, buckets: dict[str, dict], short: list[str]) -> str:
    """The line saying which buckets (``short``, of a tuning's ``buckets``) fall short of the target."""
    worst = min(buckets[name]["recall_lower_bound"] for name in short)
    return (f"recall@{k} target {target_recall:.3f} not reached in {', '.join(short)}: lower bound {worst:.3f} "
            f"(short by {target_recall - worst:.3f}) with "
            + ", ".join(f"{params_text(buckets[name]['params'], 'exact search')} ({name})" for name in short))


def tune(index: faiss.Index, queries: QuerySet | np.ndarray, truth: np.ndarray, k: int = 10,
         target_recall: float = 0.95, budget_ms: float | None = None, short_level: int = logging.WARNING,
         least_nprobe: int = 0) -> Tuning:
    """The fastest settings whose recall@k reaches ``target_recall``: one for every token-count bucket
    of ``queries`` at once, and each bucket's own.

    Reaching means that the lower confidence bound of the recall (see ``Z``) is at the target, so
    that other queries of that length reach it too. Every setting tried is timed (one thread,
    single queries: the tuning curve) and the fastest that meets it is kept. If none meets it, the
    cheapest setting within ``PLATEAU`` of the best worst-bucket recall is kept and ``reached`` is
    False; a line stops early once two more steps (three for HNSW) gain less than ``PLATEAU``.
    ``budget_ms``: give up on a bucket whose p50 passes it before it reaches the target (see
    :func:`_walk`), when a faster family will be tried anyway. ``short_level``: the log level of
    the line naming short buckets (a candidate among several says it at INFO). ``least_nprobe``:
    no setting with fewer probes is tried, as none could reach the target (see :mod:`.families`).
    """
    qs = QuerySet.of(queries)
    vectors = np.ascontiguousarray(qs.vectors, dtype=np.float32)
    buckets = qs.buckets()
    tried = _walk(index, vectors, truth, buckets, k, target_recall, budget_ms, least_nprobe, qs.kth)
    full = [e for e in tried if len(e["buckets"]) == len(buckets)]
    winners = [e for e in full if e["recall_lower_bound"] >= target_recall]
    if not winners:  # the choice among short settings is made on all queries, not screening parts
        for e in tried:
            if any(b["queries"] < len(buckets[name]) for name, b in e["buckets"].items()):
                faiss_index.set_params(index, _params_of(e))
                mean, again = _recall_of(index, vectors, truth, {name: buckets[name] for name in e["buckets"]}, k,
                                         qs.kth)
                for name, b in again.items():
                    e["buckets"][name].update(b)  # their p50s stay
                e.update(curve_entry(_params_of(e), mean, e["buckets"]))
    uniform = min(winners, key=lambda e: e["p50_ms"]) if winners else _best_short(tried, target_recall)
    params = _params_of(uniform)
    faiss_index.set_params(index, params)
    per_bucket, own, searchers, kept_lat = {}, {}, {}, []
    for name, rows in buckets.items():
        # The bucket's passing settings (the first on each line) timed again, taking turns over its
        # queries: the walk timed them minutes apart, and the machine's speed drifts more than they differ.
        cands = _first_per_line([e for e in tried if name in e["buckets"]
                                 and e["buckets"][name]["recall_lower_bound"] >= target_recall]) or [uniform]
        made = [faiss_index.search_parameters(index, _params_of(e)) for e in cands]
        lat = single_query_ms(index, vectors[rows[:TIME_KEPT_PER_BUCKET * len(cands)]], k, made)
        turns = [lat[i::len(cands)] for i in range(len(cands))]
        j = int(np.argmin([np.median(t) if len(t) else np.inf for t in turns]))  # a tiny bucket may time only some
        own[name], searchers[name] = _params_of(cands[j]), made[j]
        per_bucket[name] = {key: v for key, v in cands[j]["buckets"][name].items() if key != "p50_ms"}
        per_bucket[name].update(params=own[name], p50_ms=round(float(np.median(turns[j])), 4))
        kept_lat.append(turns[j])
    lat = np.concatenate(kept_lat)
    t = time.perf_counter()
    searched = {name: index.search(vectors[rows], k, params=searchers[name]) for name, rows in buckets.items()}
    qps = len(vectors) / (time.perf_counter() - t)
    # Each bucket's figures over all its queries (the walk may have screened a short setting on a part).
    for name, rows in buckets.items():
        scores, found = searched[name]
        tied = tied_hits(index, scores, found, qs.kth, rows)
        per_bucket[name].update(bucket_recall(recall_per_query(found, truth[rows], tied),
                                              {name: np.arange(len(rows))}, k)[name])
    short = [name for name, b in per_bucket.items() if b["recall_lower_bound"] < target_recall]
    if short:
        logger.log(short_level, "%s", short_message(k, target_recall, per_bucket, short))
    recall = sum(b["recall"] * b["queries"] for b in per_bucket.values()) / len(vectors)
    return Tuning(params=params, recall=round(recall, 4),
                  recall_lower_bound=min(b["recall_lower_bound"] for b in per_bucket.values()),
                  target_recall=target_recall, k=k, queries=len(vectors), reached=not short,
                  p50_ms=round(float(np.percentile(lat, 50)), 4), p99_ms=round(float(np.percentile(lat, 99)), 4),
                  batch_qps=round(qps, 1), buckets=per_bucket, short_buckets=short, tried=tried,
                  params_by_length=by_length(own, params), uniform_p50_ms=uniform["p50_ms"],
                  uniform_recall_lower_bound=uniform["recall_lower_bound"])


def by_length(own: dict[str, dict], default: dict) -> list[dict]:
    """``[{"max_tokens", "params"}]`` over ``BUCKETS`` from {bucket: params} (missing buckets: ``default``);
    [] when the buckets are not token-count buckets."""
    if not any(name in own for name, _, _ in BUCKETS):
        return []
    return [{"max_tokens": hi, "params": own.get(name, default)} for name, _, hi in BUCKETS]


# Token-count buckets of tuning and evaluation queries: (name, fewest tokens, most tokens or None).
BUCKETS = (("1-3 tokens", 1, 3), ("4-12 tokens", 4, 12), ("13+ tokens", 13, None))


@dataclass
class QuerySet:
    """Query vectors with each query's token count (-1 when unknown, e.g. documents' own vectors),
    and once their exact neighbours are known, each one's k-th exact score (``kth``: see
    :func:`recall_per_query`'s ties)."""

    vectors: np.ndarray
    tokens: np.ndarray
    kth: np.ndarray | None = None

    @classmethod
    def of(cls, queries: QuerySet | np.ndarray) -> QuerySet:
        """``queries`` as a QuerySet (plain vectors get unknown token counts: one bucket, "all")."""
        if isinstance(queries, QuerySet):
            return queries
        return cls(np.asarray(queries), np.full(len(queries), -1, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, rows: np.ndarray) -> QuerySet:
        return QuerySet(self.vectors[rows], self.tokens[rows], None if self.kth is None else self.kth[rows])

    def known(self) -> QuerySet:
        """The queries with a word in the vocabulary (a zero vector has no neighbours to find)."""
        return self.take(np.flatnonzero(np.any(self.vectors != 0, axis=1)))

    def buckets(self) -> dict[str, np.ndarray]:
        """{bucket name: positions of its queries}, non-empty buckets only, in ``BUCKETS`` order."""
        if np.all(self.tokens < 0):
            return {"all": np.arange(len(self))}
        out = {}
        for name, lo, hi in BUCKETS:
            rows = np.flatnonzero((self.tokens >= lo) & ((self.tokens <= hi) if hi is not None else True))
            if len(rows):
                out[name] = rows
        return out


def encode_queries(texts: list[str], encoder: TextEncoder) -> QuerySet:
    """Vectors and token counts of query texts."""
    arr = pa.array(texts, pa.string())
    return QuerySet(encoder.encode(arr), np.asarray(encoder.token_rows(arr)[1], dtype=np.int64))


def bucket_summary(tuning: dict) -> str:
    """One line: recall@k, its lower bound, p50 and setting per token-count bucket of a manifest's ``index.tuning``."""
    parts = [f"{name} {b['recall']:.3f} (lower bound {b['recall_lower_bound']:.3f}"
             + (f", p50 {b['p50_ms']:.3f} ms" if b.get("p50_ms") is not None else "")
             + (", " + params_text(b["params"]) if b.get("params") else "") + ")"
             + (" SHORT" if name in tuning.get("short_buckets", []) else "")
             for name, b in tuning["buckets"].items()]
    return f"recall@{tuning['k']} by query length: " + "; ".join(parts)
