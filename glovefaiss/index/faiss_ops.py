"""Create, fill, tune-able parameters, save and load FAISS inner-product indexes.

Index families (``kind``), each a FAISS factory key over L2-normalised vectors:

| kind | key | bytes per vector | search parameters |
|---|---|---|---|
| flat | ``Flat`` | 4d | none (exact) |
| hnsw | ``HNSW32`` | 4d + ~260 | efSearch |
| ivf | ``IVF{nlist},Flat`` | 4d | nprobe |
| ivf-fastscan | ``IVF{nlist},PQ{m}x4fsr,RFlat`` | 4d + m/2 | nprobe, k_factor |
| ivf-pq | ``IVF{nlist},PQ{m}`` (``xB``, fewer bits, below 9,984 vectors; OPQ via an index key) | m | nprobe |
| ivf-sq8 | ``IVF{nlist},SQ8`` | d | nprobe |

``auto`` picks ``flat`` for small corpora and otherwise the first family that fits the
memory budget in the order ivf, ivf-sq8, ivf-pq (see :func:`choose_kind`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from ..errors import ConfigError, IndexDirError

logger = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "ivf", "ivf-fastscan", "ivf-pq", "ivf-sq8")
# Flat search scans n*d floats; below this many (50,000 x 50) a query stays under a millisecond here
# (measured 0.8 ms p50 at 100,000 x 50 on this 2-core machine under load).
FLAT_MAX_FLOATS = 2_500_000
HNSW_M = 32


def parse_bytes(text: str | int | None) -> int | None:
    """``"4G"`` → 4 * 2**30; plain numbers are bytes; None stays None."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", text)
    if not m:
        raise ConfigError(f"cannot read memory size {text!r}; write e.g. 512M or 4G")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def nlist_for(n: int) -> int:
    """IVF list count: about 4 sqrt(n), with at least 39 training points per list."""
    return int(max(1, min(4 * math.sqrt(n), n // 39, 65536)))


def distinct_rows(x: np.ndarray) -> np.ndarray:
    """Positions of the first copy of each distinct row of ``x``, ascending (by a 64-bit hash of the
    row's bytes: two different rows that collide lose one, which a k-means sample can spare)."""
    x = np.ascontiguousarray(x)
    if len(x) == 0:
        return np.zeros(0, np.int64)
    raw = x.reshape(len(x), -1).view(np.uint8)
    if raw.shape[1] % 8:
        raw = np.pad(raw, ((0, 0), (0, -raw.shape[1] % 8)))
    words = np.ascontiguousarray(raw).view(np.uint64)
    odd = (np.arange(words.shape[1], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    with np.errstate(over="ignore"):
        keys = (words * odd).sum(axis=1, dtype=np.uint64)
    return np.sort(np.unique(keys, return_index=True)[1])


def lists_for_distinct(nlist: int, distinct: int) -> int:
    """``nlist``, or fewer so that each list has 39 distinct training vectors (FAISS's advice): a
    k-means over fewer distinct vectors than that leaves lists empty or nearly identical."""
    return max(1, min(nlist, distinct // 39))


def forecast_nlist(n: int) -> int:
    """Lists of the quantizer ``auto`` forecasts IVF-Flat with: a quarter of :func:`nlist_for` (its k-means is an order of magnitude cheaper)."""
    return max(1, nlist_for(n) // 4)


def _pq_m(dim: int) -> int:
    """Sub-quantiser count for PQ: a divisor of dim, about dim/2, at most 64."""
    return max(m for m in range(1, min(64, dim) + 1) if dim % m == 0 and m <= max(1, dim // 2))


def _pq_bits(n: int) -> int:
    """Bits per PQ code: 8, or fewer when ``n`` vectors cannot train 256 centroids (FAISS wants 39 each)."""
    return min(8, int(math.log2(n / 39))) if n >= 78 else 1


def bytes_per_vector(kind: str, dim: int) -> float:
    m = _pq_m(dim)
    return {"flat": 4 * dim, "ivf": 4 * dim, "hnsw": 4 * dim + HNSW_M * 2 * 4 * 1.05,
            "ivf-fastscan": 4 * dim + dim / 2, "ivf-pq": m, "ivf-sq8": dim}[kind] + 8  # + id


def alternatives(kind: str, n: int, dim: int, max_memory: int | None = None) -> list[str]:
    """Families ``auto`` also tries when ``kind``, tuned, is slower than the latency budget.

    Fast-scan PQ with exact re-ranking is the one family that met the recall target under a
    millisecond on documents whose vectors all point one way (PERF_NOTES), where IVF-Flat
    needs hundreds of probes; it keeps the full vectors, so it must fit the memory budget.
    """
    if kind in ("ivf", "ivf-sq8", "ivf-pq") and (
            max_memory is None or n * bytes_per_vector("ivf-fastscan", dim) <= max_memory):
        return ["ivf-fastscan"]
    return []


def choose_kind(n: int, dim: int, max_memory: int | None = None) -> str:
    """The family ``auto`` builds for ``n`` vectors of ``dim`` within ``max_memory`` bytes."""
    if n * dim <= FLAT_MAX_FLOATS and (max_memory is None or n * bytes_per_vector("flat", dim) <= max_memory):
        return "flat"
    for kind in ("ivf", "ivf-sq8", "ivf-pq"):
        if max_memory is None or n * bytes_per_vector(kind, dim) <= max_memory:
            return kind
    return "ivf-pq"


def factory_key(kind: str, n: int, dim: int, nlist: int | None = None) -> str:
    """The FAISS factory key of ``kind`` over ``n`` vectors of ``dim`` (``nlist``: lists other than :func:`nlist_for`)."""
    nlist = nlist or nlist_for(n)
    m, bits = _pq_m(dim), _pq_bits(n)
    keys = {
        "flat": "Flat",
        "hnsw": f"HNSW{HNSW_M}",
        "ivf": f"IVF{nlist},Flat",
        "ivf-fastscan": f"IVF{nlist},PQ{dim}x4fsr,RFlat" if dim <= 64 else f"IVF{nlist},PQ{m}x4fsr,RFlat",
        "ivf-pq": f"IVF{nlist},PQ{m}" + (f"x{bits}" if bits < 8 else ""),
        "ivf-sq8": f"IVF{nlist},SQ8",
    }
    if kind not in keys:
        raise ConfigError(f"unknown index type '{kind}'; valid types: auto, {', '.join(KINDS)}, or --index-key")
    return keys[kind]


def make_index(dim: int, key: str = "Flat", with_ids: bool = True) -> faiss.Index:
    """An empty inner-product index from a FAISS factory key.

    ``with_ids``: labels are caller-given int64 ids (wrapped in IndexIDMap where the index
    cannot store ids itself); otherwise labels are insertion order.
    """
    if key == "flat":
        key = "Flat"
    try:
        index = faiss.index_factory(dim, key, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ConfigError(f"FAISS cannot build index key '{key}' for {dim}-dimensional vectors ({_reason(e)}); give a "
                          "FAISS factory string such as 'IVF1024,Flat' or 'HNSW32', or --index auto") from None
    if with_ids and not _stores_ids(index):
        index = faiss.IndexIDMap(index)
    return index


def _stores_ids(index: faiss.Index) -> bool:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        return _stores_ids(index.index)
    return isinstance(index, faiss.IndexIVF) and not isinstance(index, faiss.IndexRefine)


# k-means iterations for IVF centroids (FAISS's default is 25). At 1M documents, 10 gave the same
# recall at every nprobe as 25 (within 0.005, topics over 4,000 lists and Zipf over 1,000) in
# 0.3-0.4x the training time (12.9 s of a 37 s topics build at 25).
IVF_KMEANS_ITERATIONS = 10


def _reason(e: RuntimeError) -> str:
    # FAISS prefixes its reason with the C++ function and source line: only the reason is kept.
    return str(e).strip().splitlines()[-1].rpartition(": ")[2] or str(e)


def train(index: faiss.Index, sample: np.ndarray, seed: int = 0) -> None:
    """Train on a sample (IVF centroids, PQ codebooks), seeded so builds are reproducible.

    The callers give distinct vectors (see :func:`distinct_rows`): a repeated document is one point.

    :class:`ConfigError` when FAISS cannot (too few vectors for the index's lists, say): the
    index key is the user's to change."""
    _seed(index, seed)
    for sub in index_chain(index):
        if isinstance(sub, faiss.IndexIVF) and sub.nlist > len(sample) and sub.quantizer.ntotal == 0:
            raise ConfigError(f"an index of {sub.nlist} lists needs at least {sub.nlist} distinct vectors to train on, and "
                              f"{len(sample)} are there; give fewer lists (e.g. IVF{nlist_for(len(sample))} in place of "
                              f"IVF{sub.nlist} in --index-key) or --index auto")
    advised = max([39 * sub.nlist for sub in index_chain(index)
                   if isinstance(sub, faiss.IndexIVF) and sub.quantizer.ntotal == 0]
                  + [39 * sub.pq.ksub for sub in index_chain(index) if hasattr(sub, "pq")] + [0])
    if len(sample) < advised:
        # Said once here: FAISS would print its own warning for each of up to 64 sub-quantizers.
        logger.warning("training on %d vectors, where FAISS advises at least %d (39 per centroid of its k-means); "
                       "recall may suffer: give fewer lists or a smaller code, or more documents", len(sample), advised)
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    except RuntimeError as e:
        raise ConfigError(f"FAISS cannot train this index ({_reason(e)}); give another --index-key, or --index auto") \
            from None


# Training points per PQ sub-quantizer k-means at most (FAISS: 256 per centroid, 65,536 for 8-bit
# codes). 8-bit PQ over 2-dim sub-vectors took 22-27 s to train on 20,000 vectors at that cap, 8 s
# at this one (recall@10 at nprobe 64: 0.716 against 0.721).
PQ_TRAIN_POINTS = 10_000


def _seed(index: faiss.Index, seed: int) -> None:
    for sub in index_chain(index):
        if isinstance(sub, faiss.IndexIVF):
            sub.cp.seed = seed
            sub.cp.niter = IVF_KMEANS_ITERATIONS
            sub.cp.min_points_per_centroid = 1  # only FAISS's stderr warning depends on it: train() logs one
        if getattr(sub, "do_polysemous_training", False):
            # FAISS's factory turns it on for PQ: a code reordering for Hamming filtering, which no
            # search here uses, and 60 s of a 20,000-vector build.
            sub.do_polysemous_training = False
        if hasattr(sub, "pq"):
            sub.pq.cp.seed = seed
            sub.pq.cp.min_points_per_centroid = 1
            sub.pq.cp.max_points_per_centroid = min(sub.pq.cp.max_points_per_centroid,
                                                    max(1, PQ_TRAIN_POINTS // sub.pq.ksub))


# faiss 1.15 scores with BLAS only from 128,000 queries at once; below that its one-query-at-a-time
# loop made the exact top-10 of 1,000 queries over 1M vectors 4-5x slower here (4.9 s against
# 0.9 s). BLAS scores differ from the loop's in the last bits, so searches keep FAISS's threshold
# (a batch scores as its queries do one by one) and only exact top-k computations lower it.
BLAS_FROM_QUERIES = 20
_blas = {"users": 0, "before": None}
_blas_lock = threading.Lock()


@contextmanager
def blas_scoring():
    """Within the block, FAISS scores batches of ``BLAS_FROM_QUERIES`` queries or more with BLAS.

    The threshold is process-wide: searches in other threads meanwhile score with BLAS too (scores
    may differ in the last bits, and neighbours at near-ties with them). Overlapping blocks share
    one change, undone when the last one ends.
    """
    with _blas_lock:
        if _blas["users"] == 0:
            _blas["before"] = faiss.cvar.distance_compute_blas_threshold
            faiss.cvar.distance_compute_blas_threshold = min(_blas["before"], BLAS_FROM_QUERIES)
        _blas["users"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas["users"] -= 1
            if _blas["users"] == 0:
                faiss.cvar.distance_compute_blas_threshold = _blas["before"]


def centroids_of(index: faiss.Index) -> np.ndarray | None:
    """The trained IVF centroids of an index (None without inverted lists or before training)."""
    for sub in index_chain(index):
        if isinstance(sub, faiss.IndexIVF) and sub.quantizer.ntotal == sub.nlist:
            return sub.quantizer.reconstruct_n(0, sub.nlist)
    return None


def quantizer_of(index: faiss.Index) -> faiss.Index | None:
    """The coarse quantizer of an IVF index (owned by it: keep the index alive while using it)."""
    for sub in index_chain(index):
        if isinstance(sub, faiss.IndexIVF):
            return faiss.downcast_index(sub.quantizer)
    return None


def split_lists(centroids: np.ndarray, sample: np.ndarray, parts: int, seed: int = 0) -> np.ndarray:
    """``parts`` centroids in place of each of ``centroids``: a small spherical k-means over the
    distinct members of each list among ``sample`` (a list with fewer than 4 a part keeps its
    centroid alone: a repeated centroid would leave a list empty). Up to ``len(centroids) * parts``
    lists in about a tenth of a k-means's time."""
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    coarse = faiss.IndexFlatIP(centroids.shape[1])
    coarse.add(centroids)
    _, lists = coarse.search(sample, 1)
    lists = lists.ravel()
    order = np.argsort(lists, kind="stable")
    bounds = np.searchsorted(lists[order], np.arange(len(centroids) + 1))
    out = []
    for i in range(len(centroids)):
        members = sample[order[bounds[i]:bounds[i + 1]]]
        members = members[distinct_rows(members)]  # copies of a document would split into empty parts
        if len(members) >= 4 * parts:
            km = faiss.Kmeans(centroids.shape[1], parts, niter=IVF_KMEANS_ITERATIONS, seed=seed + i, spherical=True)
            km.cp.min_points_per_centroid = 1  # a list's members are few by design: no warning
            km.train(members)
            out.append(km.centroids)
        else:
            out.append(centroids[i:i + 1])
    return np.concatenate(out)


def give_centroids(index: faiss.Index, centroids: np.ndarray) -> bool:
    """Make ``centroids`` the IVF centroids of an untrained index, so that training skips k-means.

    False (and nothing changed) when the index has no flat IVF quantizer of that many lists.
    """
    for sub in index_chain(index):
        if isinstance(sub, faiss.IndexIVF):
            q = faiss.downcast_index(sub.quantizer)
            if sub.nlist != len(centroids) or q.ntotal or not isinstance(q, faiss.IndexFlat):
                return False
            q.add(np.ascontiguousarray(centroids, dtype=np.float32))
            return True
    return False


def add(index: faiss.Index, vectors: np.ndarray, labels: np.ndarray | None = None) -> None:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    for sub in index_chain(index):
        pq = getattr(sub, "pq", None)
        if isinstance(pq, faiss.ProductQuantizer) and pq.transposed_centroids.size() == 0:
            # FAISS encodes PQ codes 2-4x faster with transposed centroids (||c||^2 - 2 x.c instead of
            # ||x - c||^2): a 1M fast-scan add took 3.6 s instead of 6.3 s. At near-ties the other
            # rounding picks another code for 2 sub-vectors in 10 million; recall was the same to the
            # last digit. Not saved with the index (write_index keeps only the centroids).
            pq.sync_transposed_centroids()
    if labels is None:
        index.add(vectors)
    else:
        index.add_with_ids(vectors, np.ascontiguousarray(labels, dtype=np.int64))


def add_all(index: faiss.Index, chunks: Iterable[tuple[np.ndarray, np.ndarray | None]]) -> None:
    for vectors, labels in chunks:
        add(index, vectors, labels)


def index_chain(index: faiss.Index) -> list:
    """The index and every index it wraps, outermost first."""
    out = []
    index = faiss.downcast_index(index)
    while index is not None:
        out.append(index)
        if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2, faiss.IndexPreTransform)):
            index = faiss.downcast_index(index.index)
        elif isinstance(index, faiss.IndexRefine):
            index = faiss.downcast_index(index.base_index)
        else:
            index = None
    return out


def scores_exactly(index: faiss.Index) -> bool:
    """Whether a search's scores are the exact inner products of the stored float vectors (flat
    storage, IVF-Flat, HNSW over flat vectors, or re-ranked on them), not of compressed codes."""
    chain = index_chain(index)
    if any(isinstance(i, faiss.IndexRefine) for i in chain):
        return True
    inner = chain[-1]
    if isinstance(inner, faiss.IndexHNSW):
        return isinstance(faiss.downcast_index(inner.storage), faiss.IndexFlat)
    return isinstance(inner, (faiss.IndexFlat, faiss.IndexIVFFlat))


def family(index: faiss.Index) -> str:
    """Which search parameters an index takes: 'flat', 'hnsw', 'ivf' or 'ivf-refine'."""
    chain = index_chain(index)
    if any(isinstance(i, faiss.IndexHNSW) for i in chain):
        return "hnsw"
    if any(isinstance(i, faiss.IndexIVF) for i in chain):
        return "ivf-refine" if any(isinstance(i, faiss.IndexRefine) for i in chain) else "ivf"
    return "flat"


def nlist_of(index: faiss.Index) -> int:
    """The IVF list count of an index (1 when it has no inverted lists)."""
    for sub in index_chain(index):
        if isinstance(sub, faiss.IndexIVF):
            return int(sub.nlist)
    return 1


def filled_lists(index: faiss.Index) -> np.ndarray | None:
    """Whether each IVF list holds a vector (None without inverted lists)."""
    for sub in index_chain(index):
        if isinstance(sub, faiss.IndexIVF):
            lists = sub.invlists
            return np.fromiter((lists.list_size(i) > 0 for i in range(sub.nlist)), dtype=bool, count=sub.nlist)
    return None


def set_params(index: faiss.Index, params: dict) -> None:
    """Apply search parameters (nprobe, efSearch, k_factor) wherever they belong in the index."""
    for sub in index_chain(index):
        if "nprobe" in params and isinstance(sub, faiss.IndexIVF):
            sub.nprobe = int(params["nprobe"])
        if "efSearch" in params and isinstance(sub, faiss.IndexHNSW):
            sub.hnsw.efSearch = int(params["efSearch"])
        if "k_factor" in params and isinstance(sub, faiss.IndexRefine):
            sub.k_factor = float(params["k_factor"])


def search_parameters(index: faiss.Index, params: dict) -> faiss.SearchParameters | None:
    """``params`` (nprobe, efSearch, k_factor) as a FAISS SearchParameters object for one search call.

    Unlike :func:`set_params`, nothing in the index changes, so threads can search with different
    settings at once. None when ``params`` is empty or the index takes none.
    """
    if not params:
        return None
    return _params_for(index_chain(index), params)


def _params_for(chain: list, params: dict) -> faiss.SearchParameters | None:
    if not chain:
        return None
    sub, inner = chain[0], _params_for(chain[1:], params)
    if isinstance(sub, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return inner  # an id map hands its search parameters to the index it wraps
    if isinstance(sub, faiss.IndexPreTransform):
        out = faiss.SearchParametersPreTransform(index_params=inner) if inner is not None else None
    elif isinstance(sub, faiss.IndexRefine):
        out = faiss.IndexRefineSearchParameters(k_factor=float(params.get("k_factor", sub.k_factor)),
                                                base_index_params=inner)
    elif isinstance(sub, faiss.IndexIVF) and "nprobe" in params:
        out = faiss.SearchParametersIVF(nprobe=int(params["nprobe"]))
    elif isinstance(sub, faiss.IndexHNSW) and "efSearch" in params:
        out = faiss.SearchParametersHNSW(efSearch=int(params["efSearch"]))
    else:
        return inner
    if out is not None:
        out.wrapped = inner  # the C++ object points at the inner one: keep its Python owner alive
    return out


def save(index: faiss.Index, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path, mmap: bool = False) -> faiss.Index:
    """Read an index, or map it with ``mmap``.

    IO_FLAG_MMAP_IFC maps every family (flat, HNSW, IVF); plain IO_FLAG_MMAP silently
    reads flat and HNSW indexes into memory.
    """
    flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        raise IndexDirError(f"cannot read FAISS index {path} ({msg[-1] if msg else e}); rebuild the index") from None


# Below this many queries a search runs on one OpenMP thread: waking a second thread costs far
# more than a small search (measured: 430 µs vs 6 µs for one query on 300 documents).
SINGLE_THREAD_BELOW = 16


def search(index: faiss.Index, queries: np.ndarray, k: int,
           params: faiss.SearchParameters | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels), each (n, k); missing results have label -1 and score -inf.

    ``params``: from :func:`search_parameters`, for this call only (None: the index's own settings).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if len(queries) < SINGLE_THREAD_BELOW:
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, labels = index.search(queries, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
    else:
        scores, labels = index.search(queries, k, params=params)
    scores[labels < 0] = -np.inf
    return scores, labels
