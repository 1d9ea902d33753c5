"""IVF-Flat's tuning curve forecast from its trained quantizer alone, before any vector is added.

IVF-Flat scores every vector of the lists it probes exactly, so it finds a true neighbour exactly
when that neighbour's list is among the query's ``nprobe`` best. Where the exact neighbours' lists
rank for their query therefore gives the recall at every ``nprobe``, digit for digit (ties aside).
The cost of a query is the vectors it scans (the sizes of its probed lists, estimated from a
sample's assignment) times the cost of scanning one, timed on a stand-in of the full index's size:
the sample's vectors, copied into their own lists until there are as many as the corpus has (at a
million vectors IVF-Flat reads its lists from memory, not cache, so a small index would flatter it).
"""

from __future__ import annotations

import faiss
import numpy as np

from .tuning import NPROBES, QuerySet, bucket_recall, single_query_ms

TIMED_QUERIES = 20  # single queries timed on the stand-in to price one scanned vector


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
    """(an IVF-Flat over ``quantizer`` holding about ``n`` vectors, copies of ``sample`` in the sample's
    own lists; the estimated vectors per list of the real one). The quantizer stays the caller's."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    _, lists = quantizer.search(sample, 1)
    lists = np.ascontiguousarray(lists.ravel())
    copies = max(1, round(n / max(len(sample), 1)))
    ivf = faiss.IndexIVFFlat(quantizer, sample.shape[1], quantizer.ntotal, faiss.METRIC_INNER_PRODUCT)
    for _ in range(copies):  # the assignment is known: no second quantizer search per copy
        ivf.add_core(len(sample), faiss.swig_ptr(sample), None, faiss.swig_ptr(lists))
    sizes = np.bincount(lists, minlength=quantizer.ntotal) * (n / max(len(sample), 1))
    return ivf, sizes


def ms_per_vector(ivf: faiss.IndexIVF, queries: np.ndarray, nprobe: int) -> float:
    """One thread's cost of scanning one stored vector of ``ivf`` at ``nprobe`` (its quantizer's search taken off)."""
    queries = np.ascontiguousarray(queries[:TIMED_QUERIES], dtype=np.float32)
    ivf.nprobe = nprobe
    single_query_ms(ivf, queries[:2], 10)  # code paths warmed, not a measurement
    stats = faiss.cvar.indexIVF_stats
    stats.reset()
    scan = float(np.sum(single_query_ms(ivf, queries, 10)))
    scanned = stats.ndis
    probe = float(np.sum(single_query_ms(ivf.quantizer, queries, nprobe)))
    return max(scan - probe, 0.0) / max(scanned, 1)


def forecast(quantizer: faiss.Index, queries: QuerySet, neighbours: np.ndarray, sample: np.ndarray, n: int,
             target_recall: float) -> dict:
    """IVF-Flat over ``quantizer``'s lists and ``n`` vectors, as :func:`.tuning.tune` would find it, unbuilt.

    ``neighbours``: (queries, k, dim) exact top-k vectors of each query; ``sample``: a random sample
    of the ``n`` vectors. Returns a candidate entry like the families' summaries (``type``, ``key``,
    ``params``, ``recall``, ``recall_lower_bound``, ``reached``, ``p50_ms``, ``tried``), with
    ``forecast: True`` and ``params_by_bucket``. Each bucket takes the first ``nprobe`` of the grid
    whose recall lower bound reaches the target (probing every list always does); ``p50_ms`` is the
    median forecast cost over all queries with them.
    """
    ranks, order = list_ranks(quantizer, queries.vectors, neighbours)
    ivf, sizes = stand_in(quantizer, sample, n)
    nlist = quantizer.ntotal
    buckets = queries.buckets()
    grid = sorted({p for p in NPROBES if p < nlist} | {nlist})
    curve, chosen = [], {}
    for p in grid:
        per_query = np.mean(ranks < p, axis=1)
        per_bucket = bucket_recall(per_query, buckets)
        for name in buckets:
            if per_bucket[name]["recall_lower_bound"] >= target_recall:
                chosen.setdefault(name, p)
        curve.append((p, per_query, per_bucket))
        if len(chosen) == len(buckets):
            break
    uniform = next(p for p, _, b in curve if all(x["recall_lower_bound"] >= target_recall for x in b.values()))
    ms = ms_per_vector(ivf, queries.vectors, uniform)
    scanned = np.cumsum(sizes[order], axis=1)  # vectors scanned with the first j + 1 lists probed
    tried = []
    for p, per_query, per_bucket in curve:
        cost = scanned[:, p - 1] * ms
        for name, rows in buckets.items():
            per_bucket[name]["p50_ms"] = round(float(np.median(cost[rows])), 4)
        tried.append({"nprobe": p, "recall": round(float(per_query.mean()), 4),
                      "recall_lower_bound": min(b["recall_lower_bound"] for b in per_bucket.values()),
                      "buckets": per_bucket,
                      "p50_ms": round(float(np.median([b["p50_ms"] for b in per_bucket.values()])), 4)})
    kept = next(e for e in tried if e["nprobe"] == uniform)
    p50 = np.median(np.concatenate([scanned[rows, chosen[name] - 1] for name, rows in buckets.items()])) * ms
    return {"type": "ivf", "key": f"IVF{nlist},Flat", "forecast": True, "params": {"nprobe": uniform},
            "params_by_bucket": {name: {"nprobe": chosen[name]} for name in buckets},
            "recall": kept["recall"], "recall_lower_bound": kept["recall_lower_bound"], "reached": True,
            "p50_ms": round(float(p50), 4), "ms_per_vector": ms, "tried": tried}
