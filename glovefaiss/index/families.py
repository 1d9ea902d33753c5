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
from .forecast import forecast
from .shards import ShardReader, iter_shard_vectors
from .tuning import PRICED_OUT, QuerySet, exact_neighbours, short_message, tune, warn_if_few

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


# IVF-Flat over nlist_for(n) lists, four times the forecast quantizer's, is cheaper at the same
# recall; the forecast's cost is multiplied by this before it is held against the latency budget.
# A heuristic erring toward building IVF-Flat: the gain measured at 1M was 0.56 on topics (0.164 ms
# forecast over 1,000 lists, 0.092 ms built over 4,000) and 0.94 on Zipf (memory-bound).
FINER_LISTS = 0.5

# Shard vectors up to this size are read once and held for the build's passes over them (sample,
# exact neighbours, filling each candidate): 1M of 50 dimensions take 200 MB.
HOLD_BYTES = 1 << 30

def holds_vectors(n: int, dim: int, budget: int | None) -> bool:
    """Whether a build over ``n`` vectors of ``dim`` holds them in memory between its passes: up to
    ``HOLD_BYTES``, and no more than the ``--max-index-memory`` budget (a user who sets one is short of memory)."""
    size = n * dim * 4
    return size <= HOLD_BYTES and (budget is None or size <= budget)


# IVF-Flat's lists after a forecast in budget: each of the forecast's lists split in this many
# (forecast_nlist is a quarter of nlist_for). At 1M on topics, against a k-means over 4,000 lists:
# the same recall at nprobe 8-32 (within 0.003), 13% more vectors scanned, 0.8 s instead of 10-16 s.
LIST_PARTS = 4


def build_index(directory: Path, shards: list[dict], dim: int, bc: BuildConfig,
                with_ids: bool, seed: int = 0, queries: QuerySet | np.ndarray | None = None,
                fill: Callable[[Any], None] | None = None) -> tuple[Any, dict]:
    """Create the index ``bc`` asks for over every shard vector; tune it if it is approximate.

    ``queries``: the vectors to tune with (default: a sample of the documents themselves, which
    flatters recall: a document sits in its own IVF cell). With ``index: auto``, when the tuned
    single-query p50 exceeds ``bc.auto_latency_ms``, other families (see
    :func:`.faiss_ops.alternatives`) are built and tuned too, and the fastest one that reaches the
    target is kept (or, if none does, the one with the highest recall); all are recorded. Before
    building IVF-Flat, ``auto`` forecasts its tuning curve on a cheaper quantizer (see
    :mod:`.forecast`); when even that forecast is priced out of the budget, the alternative is built
    instead, on that quantizer's lists and then, if it falls short, on the full list count; IVF-Flat
    only if neither reaches the target.
    ``fill(index)`` adds every shard vector, in row order, to a trained empty index (default:
    here; an engine can add parts elsewhere and merge them).
    """
    reader = ShardReader(directory, shards)
    n = reader.num_rows
    budget = faiss_index.parse_bytes(bc.max_index_memory)
    if holds_vectors(n, dim, budget):
        reader.hold_vectors()
    kind, key = resolve_index(bc, n, dim)
    need = n * faiss_index.bytes_per_vector(kind, dim) if kind != "custom" else 0
    if bc.index == "auto" and budget is not None and need > budget:  # choose_kind fell back to its smallest family
        logger.warning("no index family fits --max-index-memory %s for %d vectors: the smallest, %s, needs about "
                       "%.1f MiB; building it anyway (raise the budget to fit it)", bc.max_index_memory, n, kind,
                       need / 2**20)
    rng = np.random.default_rng(seed)
    if faiss_index.family(faiss_index.make_index(dim, key, with_ids)) == "flat":
        index, info = _build_one(reader, kind, key, dim, with_ids, seed, rng, fill)
        info["requested"] = bc.index_key or bc.index
        return index, info
    if queries is None:
        queries = _sample_rows(reader, np.sort(np.random.default_rng([seed, 13]).choice(
            n, min(n, bc.tune_queries), replace=False)))
    auto = bc.index == "auto" and not bc.index_key
    alternatives = faiss_index.alternatives(kind, n, dim, faiss_index.parse_bytes(bc.max_index_memory)) if auto else []
    forecasting = bool(alternatives) and kind == "ivf"
    queries, truth, neighbours = _tuning_set(reader, with_ids, queries, bc, with_vectors=forecasting)
    tried: list[dict] = []
    early: list[tuple[Any, dict]] = []  # alternatives built because IVF-Flat's forecast was priced out
    sample, centroids = None, None  # the forecast's training sample serves the other trainings too
    if forecasting:
        fc, centroids, sample = _forecast_ivf(reader, queries, neighbours, dim, seed, bc)
        tried.append(fc)
        if fc["p50_ms"] * FINER_LISTS > PRICED_OUT * bc.auto_latency_ms:
            # As a walk priced out at the budget would be: short of the target, whatever the curve says.
            fc["reached"], fc["priced_out"] = False, True
            alt = alternatives[0]
            logger.info("IVF-Flat is forecast at %.2f ms per query over %d lists, %.2f ms over %d: past %.2f x "
                        "the %.2f ms budget; building %s instead", fc["p50_ms"], len(centroids),
                        fc["p50_ms"] * FINER_LISTS, faiss_index.nlist_for(n), PRICED_OUT, bc.auto_latency_ms, alt)
            # On the forecast's lists first (its k-means is done), then on the full count if that falls short.
            # Over the forecast's lists, a query finds at most the neighbours that IVF-Flat finds with as
            # many probes: the walk starts at the fewest probes the forecast gives a bucket.
            least = min(p["nprobe"] for p in fc["params_by_bucket"].values())
            for lists, given in ((len(centroids), centroids), (faiss_index.nlist_for(n), None)):
                cand = _build_one(reader, alt, faiss_index.factory_key(alt, n, dim, nlist=lists), dim, with_ids,
                                  seed, np.random.default_rng(seed), fill, centroids=given, sample=sample)
                cand[1]["requested"] = bc.index
                _tune_into(*cand, queries, truth, bc, candidate=True, least_nprobe=least if given is not None else 0)
                tried.append(cand[1])
                early.append(cand)
                if cand[1]["tuning"]["reached"]:
                    break
                logger.info("%s did not reach the target", cand[1]["key"])
            centroids = faiss_index.centroids_of(early[-1][0])
            best_index, best = _best(early)
            if best["tuning"]["reached"]:
                return best_index, {**best, "candidates": [_summary(t) for t in tried]}  # reached: nothing to warn
            logger.info("building %s after all", key)
    # After a priced-out forecast, IVF-Flat reuses the finer alternative's centroids; after one in
    # budget, it gets the forecast's lists each split in LIST_PARTS, instead of a k-means over all.
    reuse, split, t_split = (centroids if early else None), forecasting and not early, 0.0
    if split:  # forecasting: kind is ivf
        t_split = time.perf_counter()
        reuse = faiss_index.split_lists(centroids, sample, LIST_PARTS, seed)
        t_split = time.perf_counter() - t_split
        key = faiss_index.factory_key(kind, n, dim, nlist=len(reuse))
        logger.info("IVF lists: the forecast's %d, each split in %d by k-means over its members (%.1f s)",
                    len(centroids), LIST_PARTS, t_split)
    index, info = _build_one(reader, kind, key, dim, with_ids, seed, rng, fill, centroids=reuse, sample=sample)
    info["requested"] = bc.index_key or bc.index
    if split:
        info["centroids"] = f"the forecast's {len(centroids)} lists, each split in {LIST_PARTS}"
        info["train_s"] = round(info["train_s"] + t_split, 3)
    # With other families to try, walking this one past the latency budget only prices it out.
    budget = bc.auto_latency_ms if alternatives and not early else None
    _tune_into(index, info, queries, truth, bc, budget, candidate=auto)
    if not auto:
        return index, info
    tried.append(info)
    best_index, best = _best([*early, (index, info)])
    slow = info["tuning"]["p50_ms"] > bc.auto_latency_ms or not info["tuning"]["reached"]
    for alt in (alternatives if slow and not early else []):
        logger.info("index %s needs %.2f ms per query at recall %.3f; trying %s too", key,
                    info["tuning"]["p50_ms"], info["tuning"]["recall"], alt)
        # The first family's centroids serve the alternative (same list count): no second k-means.
        alt_key = faiss_index.factory_key(alt, n, dim, nlist=faiss_index.nlist_of(index))
        alt_index, alt_info = _build_one(reader, alt, alt_key, dim, with_ids, seed,
                                         np.random.default_rng(seed), fill, centroids=faiss_index.centroids_of(index),
                                         sample=sample)
        alt_info["requested"] = bc.index
        _tune_into(alt_index, alt_info, queries, truth, bc, candidate=True)
        tried.append(alt_info)
        best_index, best = _best([(best_index, best), (alt_index, alt_info)])
    if budget is not None and not best["tuning"]["reached"]:
        # No family reached the target: the first one's walk, given up at the budget, goes on.
        _tune_into(index, info, queries, truth, bc, candidate=True)
        best_index, best = _best([(best_index, best), (index, info)])
    t = best["tuning"]
    if t["short_buckets"]:
        logger.warning("%s", short_message(t["k"], t["target_recall"], t["buckets"], t["short_buckets"]))
    if len(tried) > 1:
        best = {**best, "candidates": [_summary(t) for t in tried]}
    return best_index, best


def _best(built: list[tuple[Any, dict]]) -> tuple[Any, dict]:
    """The (index, info) of ``built`` whose tuning is best (see :func:`_better`), the first on a tie."""
    best = built[0]
    for cand in built[1:]:
        if _better(cand[1]["tuning"], best[1]["tuning"]):
            best = cand
    return best


def _forecast_ivf(reader: ShardReader, queries: QuerySet, neighbours: np.ndarray, dim: int, seed: int,
                  bc: BuildConfig) -> tuple[dict, np.ndarray, np.ndarray]:
    """(IVF-Flat's forecast candidate entry, the quantizer's centroids, the sample it was trained on)."""
    t0 = time.perf_counter()
    n = reader.num_rows
    nlist = faiss_index.forecast_nlist(n)
    rng = np.random.default_rng([seed, 14])
    # Drawn for the full list count's training too (one pass over the shards), shuffled so that
    # any prefix is a random sample.
    sample = _sample_rows(reader, np.sort(rng.choice(n, _training_rows(n, faiss_index.nlist_for(n)), replace=False)))
    sample = sample[rng.permutation(len(sample))]
    part = sample[:_training_rows(n, nlist)]
    trained = part[faiss_index.distinct_rows(part)]  # as in _build_one: repeated documents are one point
    nlist = faiss_index.lists_for_distinct(nlist, len(trained))
    probe = faiss_index.make_index(dim, f"IVF{nlist},Flat", False)
    faiss_index.train(probe, trained, seed)
    quantizer = faiss_index.quantizer_of(probe)
    t_train = time.perf_counter() - t0
    entry = forecast(quantizer, queries, neighbours, part, n, bc.target_recall)
    entry.update(train_s=round(t_train, 3), add_s=0.0, tune_s=round(time.perf_counter() - t0 - t_train, 3))
    logger.info("IVF-Flat forecast over %d lists: nprobe %s, p50 %.3f ms", nlist,
                " / ".join(f"{p['nprobe']} ({name})" for name, p in entry["params_by_bucket"].items()),
                entry["p50_ms"])
    return entry, faiss_index.centroids_of(probe), sample


def retune(index, directory: Path, shards: list[dict], bc: BuildConfig, with_ids: bool,
           queries: QuerySet | np.ndarray) -> dict:
    """Tune ``index`` again against exact search over ``shards`` (after documents were added).

    Returns ``{"params", "params_by_length", "tuning", "tune_s"}``; the index is left set to the new parameters.
    """
    queries, truth, _ = _tuning_set(ShardReader(directory, shards), with_ids, queries, bc)
    info: dict = {}
    _tune_into(index, info, queries, truth, bc)
    return info


def _tuning_set(reader: ShardReader, with_ids: bool, queries: QuerySet | np.ndarray, bc: BuildConfig,
                with_vectors: bool = False) -> tuple[QuerySet, np.ndarray, np.ndarray | None]:
    """(queries with a known word, their exact top-``tune_k`` labels over every shard vector, and
    with ``with_vectors`` those neighbours' vectors)."""
    qs = QuerySet.of(queries).known()
    qs = QuerySet(np.ascontiguousarray(qs.vectors, dtype=np.float32), qs.tokens)
    warn_if_few(qs.vectors)
    labels, vectors, scores = exact_neighbours(_chunks(reader, with_ids), qs.vectors, bc.tune_k, with_vectors)
    return QuerySet(qs.vectors, qs.tokens, scores[:, -1].copy()), labels, vectors


def _build_one(reader: ShardReader, kind: str, key: str, dim: int, with_ids: bool, seed: int,
               rng: np.random.Generator, fill: Callable[[Any], None] | None = None,
               centroids: np.ndarray | None = None, sample: np.ndarray | None = None) -> tuple[Any, dict]:
    """A trained and filled index of ``key`` (training on a seeded sample of the shard vectors).

    ``fill``: adds the shard vectors to the trained index (default: here, shard by shard; the
    Ray engine fills parts on its workers). ``centroids``: IVF centroids to reuse when the index
    has that many lists (then only the codes, e.g. PQ, are trained, on a smaller sample);
    ``sample``: a random sample of the shard vectors to train on, when one was drawn already.
    """
    n = reader.num_rows
    index = faiss_index.make_index(dim, key, with_ids)
    t0 = time.perf_counter()
    reused = centroids is not None and faiss_index.give_centroids(index, centroids)
    if not index.is_trained:
        m = min(n, 50_000) if reused else _training_rows(n, faiss_index.nlist_of(index))
        vectors = sample[:m] if sample is not None and len(sample) >= m else \
            _sample_rows(reader, np.sort(rng.choice(n, m, replace=False)))
        # A repeated document is one point to k-means: its copies would be split between lists
        # that are empty or nearly identical, and a query near them would find one copy or none.
        distinct = vectors[faiss_index.distinct_rows(vectors)]
        nlist = faiss_index.nlist_of(index)
        fewer = faiss_index.lists_for_distinct(nlist, len(distinct))
        if not reused and kind != "custom" and fewer < nlist:
            logger.info("the training sample holds %d distinct vectors of %d (the corpus repeats documents): "
                        "%d %s instead of %d", len(distinct), len(vectors), fewer, "list" if fewer == 1 else "lists",
                        nlist)
            key = faiss_index.factory_key(kind, n, dim, nlist=fewer)
            index = faiss_index.make_index(dim, key, with_ids)
        logger.info("training %s on %d%s of %d vectors%s", key, len(distinct),
                    " distinct" if len(distinct) < len(vectors) else "", n,
                    " (the IVF centroids are given)" if reused else "")
        faiss_index.train(index, distinct, seed)
    t_train = time.perf_counter() - t0
    if fill is not None:
        fill(index)
    else:
        faiss_index.add_all(index, ((v, lab if with_ids else None) for v, lab in _chunks(reader, with_ids)))
    t_add = time.perf_counter() - t0 - t_train
    filled = faiss_index.filled_lists(index)
    if filled is not None and not filled.all() and filled.any():
        # Lists left empty all the same (centroids no vector is nearest to): a query whose nearest
        # centroids are theirs would find nothing.
        empty, full = int((~filled).sum()), int(filled.sum())
        if kind == "custom":
            logger.warning("%d of the %d lists of %s hold no vector: a query near them finds nothing; give at most "
                           "%d lists in --index-key (IVF%d), or --index auto", empty, len(filled), key, full, full)
        else:
            logger.info("%d of the %d lists hold no vector: the index is filled again over the %d others",
                        empty, len(filled), full)
            again, info = _build_one(reader, kind, faiss_index.factory_key(kind, n, dim, nlist=full), dim, with_ids,
                                     seed, rng, fill, faiss_index.centroids_of(index)[filled], sample)
            info.update(train_s=round(info["train_s"] + t_train, 3), add_s=round(info["add_s"] + t_add, 3),
                        empty_lists_dropped=empty + info.get("empty_lists_dropped", 0))
            if not reused:
                info.pop("centroids", None)
            return again, info
    info = {"type": kind, "key": key, "params": {}, "train_s": round(t_train, 3), "add_s": round(t_add, 3)}
    if reused:
        info["centroids"] = "reused from another candidate"
    return index, info


def _training_rows(n: int, nlist: int) -> int:
    """Vectors to train ``nlist`` IVF lists on (faiss asks for at least 39 per list)."""
    return min(n, max(50_000, 40 * nlist))


def _tune_into(index, info: dict, queries: QuerySet, truth: np.ndarray, bc: BuildConfig,
               budget_ms: float | None = None, candidate: bool = False, least_nprobe: int = 0) -> None:
    """Tune ``index`` into ``info``; a ``candidate`` among several logs a shortfall at DEBUG only
    (build_index warns of the kept one's, and the CLI shows INFO: it would be said twice)."""
    t0 = time.perf_counter()
    tuning = tune(index, queries, truth, bc.tune_k, bc.target_recall, budget_ms,
                  short_level=logging.DEBUG if candidate else logging.WARNING, least_nprobe=least_nprobe)
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
    if info.get("forecast"):
        return info
    t = info["tuning"]
    return {"type": info["type"], "key": info["key"], "params": info["params"], "recall": t["recall"],
            "recall_lower_bound": t["recall_lower_bound"], "reached": t["reached"], "p50_ms": t["p50_ms"],
            "train_s": info["train_s"], "add_s": info["add_s"], "tune_s": info["tune_s"], "tried": t["tried"]}
