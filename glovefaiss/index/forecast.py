"""IVF-Flat's tuning curve forecast from its trained quantizer alone, before any vector is added.

IVF-Flat scores every vector of the lists it probes exactly, so it finds a true neighbour exactly
when that neighbour's list is among the query's ``nprobe`` best. Where the exact neighbours' lists
rank for their query therefore gives the recall at every ``nprobe``, digit for digit (ties aside).
The cost of a query is the vectors it scans (the sizes of its probed lists, estimated from a
sample's assignment) times the cost of scanning one, plus the quantizer's search, both timed on a
stand-in of the full index's size: the sample's vectors, copied into their own lists until there
are as many as the corpus has, up to 1 GiB (at a million vectors IVF-Flat reads its lists from
memory, not cache, so a small index would flatter it).
"""

from __future__ import annotations

import time

import faiss
import numpy as np

from .tuning import QuerySet, bucket_recall, curve_entry, lower_bound, nprobe_grid, single_query_ms

TIMED_QUERIES = 80  # single queries timed on the stand-in, each round, to price one scanned vector
ROUNDS = 3  # the cheapest round counts: a busy machine only ever slows a round down
STAND_IN_BYTES = 1 << 30  # far past any cache, as the real index is; copies stop here
# Scanned vectors are priced at the target's nprobe, or at this many lists if that is more: a vector
# costs the same past it (lists of hundreds), and at 1M on Zipf (nprobe 384, 5 ms a query) the three
# rounds took 1.2 s of a 23 s build to price a forecast 10x over the budget.
TIMED_NPROBE = 64


def list_ranks(quantizer: faiss.Index, queries: np.ndarray, neighbours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranks, order): ``ranks[q, j]`` is where the list of ``neighbours[q, j]`` comes in query ``q``'s
    probe order (0: probed first); ``order[q]`` is that probe order, every list."""
    nlist = quantizer.ntotal
    _, order = quantizer.search(np.ascontiguousarray(queries, dtype=np.float32), nlist)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(nlist), order.shape), axis=1)
    q, k, d = neighbours.shape
    _, lists = quantizer.search(np.ascontiguousarray(neighbours.reshape(q * k, d), dtype=np.float32), 1)
    return np.take_along_axis(rank, lists.reshape(q, k), axis=1), order


def stand_in(quantizer: faiss.Index, sample: np.ndarray, n: int) -> tuple[faiss.IndexIVFFlat, np.ndarray]:
    """(an IVF-Flat over ``quantizer`` of copies of ``sample`` in the sample's own lists, ``n`` vectors
    or ``STAND_IN_BYTES`` of them if fewer; the estimated vectors per list of the real one over ``n``).

    The quantizer stays the caller's.
    """
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    _, lists = quantizer.search(sample, 1)
    lists = np.ascontiguousarray(lists.ravel())
    total = min(n, STAND_IN_BYTES // (4 * sample.shape[1] + 8))
    ivf = faiss.IndexIVFFlat(quantizer, sample.shape[1], quantizer.ntotal, faiss.METRIC_INNER_PRODUCT)
    while ivf.ntotal < total:  # the assignment is known: no quantizer search per copy
        m = min(len(sample), total - ivf.ntotal)
        ivf.add_core(m, faiss.swig_ptr(sample), None, faiss.swig_ptr(lists))
    sizes = np.bincount(lists, minlength=quantizer.ntotal) * (n / max(len(sample), 1))
    return ivf, sizes


def query_costs(ivf: faiss.IndexIVF, queries: np.ndarray, nprobe: int) -> tuple[float, float]:
    """(ms per scanned vector, ms of the rest of a query: the quantizer's search and the call) on one
    thread at ``nprobe``: the median over single queries, in the cheapest of ``ROUNDS`` rounds."""
    queries = np.ascontiguousarray(queries[:TIMED_QUERIES], dtype=np.float32)
    ivf.nprobe = nprobe
    stats = faiss.cvar.indexIVF_stats
    single_query_ms(ivf, queries[:5], 10)  # code paths warmed, not a measurement
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    best = None
    try:
        for _ in range(ROUNDS):
            fixed = float(np.median(single_query_ms(ivf.quantizer, queries, nprobe)))
            times, scanned = np.empty(len(queries)), np.empty(len(queries))
            for i, q in enumerate(queries):
                stats.reset()
                t = time.perf_counter()
                ivf.search(q[None, :], 10)
                times[i] = (time.perf_counter() - t) * 1e3
                scanned[i] = max(stats.ndis, 1)
            per_vector = float(np.median(np.maximum(times - fixed, 0.0) / scanned))
            if best is None or per_vector < best[0]:
                best = (per_vector, fixed)
    finally:
        faiss.omp_set_num_threads(threads)
    return best


def forecast(quantizer: faiss.Index, queries: QuerySet, neighbours: np.ndarray, sample: np.ndarray, n: int,
             target_recall: float) -> dict:
    """IVF-Flat over ``quantizer``'s lists and ``n`` vectors, as :func:`.tuning.tune` would find it, unbuilt.

    ``neighbours``: (queries, k, dim) exact top-k vectors of each query; ``sample``: a random sample
    of the ``n`` vectors. Returns a candidate entry like the families' summaries (``type``, ``key``,
    ``params``, ``recall``, ``recall_lower_bound``, ``reached``, ``p50_ms``, ``tried``), with
    ``forecast: True`` and ``params_by_bucket``. Each bucket takes the first ``nprobe`` of tuning's
    grid whose recall lower bound reaches the target (the grid's last if none does, and then
    ``reached`` is False); ``recall``, its bound and ``p50_ms`` are with those settings, as a built
    candidate's are.
    """
    ranks, order = list_ranks(quantizer, queries.vectors, neighbours)
    nlist = quantizer.ntotal
    buckets = queries.buckets()
    grid = nprobe_grid(nlist)
    curve, chosen = [], {}
    for p in grid:
        per_query = np.mean(ranks < p, axis=1)
        per_bucket = bucket_recall(per_query, buckets, ranks.shape[1])
        for name in buckets:
            if per_bucket[name]["recall_lower_bound"] >= target_recall:
                chosen.setdefault(name, p)
        curve.append((p, per_query, per_bucket))
        if len(chosen) == len(buckets) and all(b["recall_lower_bound"] >= target_recall for b in per_bucket.values()):
            break
    reached = len(chosen) == len(buckets)
    chosen = {name: chosen.get(name, grid[-1]) for name in buckets}
    uniform = next((p for p, _, b in curve if all(x["recall_lower_bound"] >= target_recall for x in b.values())),
                   curve[-1][0])
    ivf, sizes = stand_in(quantizer, sample, n)
    per_vector, fixed = query_costs(ivf, queries.vectors, min(uniform, TIMED_NPROBE))
    del ivf
    scanned = np.cumsum(sizes[order], axis=1)  # vectors scanned with the first j + 1 lists probed
    tried = []
    for p, per_query, per_bucket in curve:
        cost = fixed + scanned[:, p - 1] * per_vector
        for name, rows in buckets.items():
            per_bucket[name]["p50_ms"] = round(float(np.median(cost[rows])), 4)
        tried.append(curve_entry({"nprobe": p}, float(per_query.mean()), per_bucket))
    own = np.empty(len(queries))  # each query's recall with its bucket's setting
    cost = np.empty(len(queries))
    for name, rows in buckets.items():
        own[rows] = np.mean(ranks[rows] < chosen[name], axis=1)
        cost[rows] = fixed + scanned[rows, chosen[name] - 1] * per_vector
    return {"type": "ivf", "key": f"IVF{nlist},Flat", "nlist": nlist, "forecast": True, "params": {"nprobe": uniform},
            "params_by_bucket": {name: {"nprobe": chosen[name]} for name in buckets},
            "recall": round(float(own.mean()), 4),
            "recall_lower_bound": round(min(lower_bound(own[rows], ranks.shape[1]) for rows in buckets.values()), 4),
            "reached": reached, "p50_ms": round(float(np.median(cost)), 4),
            "ms_per_vector": per_vector, "ms_per_query": fixed, "tried": tried}
