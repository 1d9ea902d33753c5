"""A loaded FAISS index readied for many single queries (what :meth:`.search.Index.warm` does to it).

- :func:`single_query_view`: fast-scan lists searched one query at a time scan list by list
  (FAISS's ``implem`` 11, reservoir) instead of grouping queries per list (12/13, the default),
  which only pays off for batches. ``implem`` is a field of the index, not a search parameter, so
  the single queries get a view of their own that shares the large arrays: threads searching
  batches and single queries at once never see each other's setting.
- :func:`advise_huge_pages`: the index's large arrays (stored vectors, inverted lists, id map)
  moved to 2 MiB pages. A re-ranked query reads ~1,000 vectors at random from the stored ones: a
  page-table walk each with 4 KiB pages.

Both measured on the 1M Zipf fast-scan index, single queries, one process, each text once (part 8
in docs/scale.md): 8-10% and 4-6% off a query's time. The view gives the results of the index
with ``implem`` 11 set (tested); they differ from the batch scan's only where 4-bit candidates tie.
"""

from __future__ import annotations

import ctypes
import logging

import faiss

from .faiss_ops import index_chain

logger = logging.getLogger(__name__)

SCAN_LIST_BY_LIST = 11  # IndexIVFFastScan.implem: one query, list by list, reservoir of candidates


def single_query_view(index: faiss.Index) -> faiss.Index:
    """``index`` itself, or for ``[IDMap →] Refine → IVF fast-scan`` a view of it for one query per call.

    The view shares the quantizer, the inverted lists and the stored vectors; it copies the PQ
    codebooks and the id map (8 bytes a vector). Its search settings are those ``index`` has now,
    and SearchParameters built for ``index`` apply to it.
    """
    chain = index_chain(index)
    idmap = chain[0] if isinstance(chain[0], (faiss.IndexIDMap, faiss.IndexIDMap2)) else None
    rest = chain[1:] if idmap is not None else chain
    if len(rest) != 2 or not isinstance(rest[0], faiss.IndexRefine) or type(rest[1]) is not faiss.IndexIVFPQFastScan:
        return index
    refine, fs = rest
    view = faiss.IndexIVFPQFastScan(fs.quantizer, fs.d, fs.nlist, fs.M, fs.nbits, fs.metric_type, fs.bbs)
    view.pq = fs.pq
    view.by_residual = fs.by_residual
    view.replace_invlists(fs.invlists, False)
    view.ntotal, view.nprobe, view.is_trained = fs.ntotal, fs.nprobe, True
    view.implem = SCAN_LIST_BY_LIST
    out = faiss.IndexRefine(view, refine.refine_index)
    out.k_factor = refine.k_factor
    if idmap is not None:
        out.ntotal = 0  # an id map wraps only an empty index
        wrapped = type(idmap)(out)
        out.ntotal = fs.ntotal
        faiss.copy_array_to_vector(faiss.vector_to_array(idmap.id_map), wrapped.id_map)
        wrapped.ntotal = idmap.ntotal
        out = wrapped
    # The arrays it reads belong to ``index``: faiss's own list of objects to keep alive holds it too.
    out.referenced_objects.append(index)
    return out


_MADV_COLLAPSE = 25  # Linux 6.1+: back a range with huge pages now (MADV_HUGEPAGE only hints khugepaged)
_HUGE = 2 << 20


def advise_huge_pages(index: faiss.Index) -> int:
    """Back the large arrays of an index read into memory with 2 MiB pages; the bytes moved.

    Best effort: 0 where the kernel cannot (older than 6.1, transparent huge pages off). Not for
    memory-mapped indexes, whose pages would all be read.
    """
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    pages = sorted({p for start, size in _arrays(index) if size >= _HUGE
                    for p in range(-(-start // _HUGE), (start + size) // _HUGE)})
    moved = 0
    for first, last in _runs(pages):
        if madvise(first * _HUGE, (last - first + 1) * _HUGE, _MADV_COLLAPSE) == 0:
            moved += (last - first + 1) * _HUGE
        else:
            logger.debug("huge pages refused for %d MiB (errno %d)", (last - first + 1) * 2, ctypes.get_errno())
            if ctypes.get_errno() == 22:  # EINVAL: this kernel has no MADV_COLLAPSE
                break
    return moved


def _runs(pages: list[int]):
    """(first, last) of each run of consecutive page numbers."""
    if not pages:
        return
    first = prev = pages[0]
    for p in pages[1:]:
        if p != prev + 1:
            yield first, prev
            first = p
        prev = p
    yield first, prev


def _arrays(index: faiss.Index):
    """(address, bytes) of the index's large arrays: flat codes, inverted lists (as one span when
    they lie together), id maps."""
    for sub in index_chain(index):
        if isinstance(sub, faiss.IndexRefine):
            yield from _arrays(sub.refine_index)
        if isinstance(sub, faiss.IndexFlatCodes) and sub.ntotal:
            yield _address(sub.codes.data(), sub.ntotal * sub.code_size)
        if isinstance(sub, (faiss.IndexIDMap, faiss.IndexIDMap2)) and sub.ntotal:
            yield _address(sub.id_map.data(), sub.ntotal * 8)
        if isinstance(sub, faiss.IndexIVF) and sub.ntotal:
            lists = faiss.downcast_InvertedLists(sub.invlists)
            spans = [_address(lists.get_codes(i), _list_bytes(lists, i)) for i in range(lists.nlist) if lists.list_size(i)]
            lo = min(a for a, _ in spans)
            hi = max(a + n for a, n in spans)
            # Lists allocated one after another make one span; scattered ones would drag in
            # memory that is not the index's.
            if hi - lo <= 2 * sum(n for _, n in spans):
                yield lo, hi - lo


def _list_bytes(lists, i: int) -> int:
    if isinstance(lists, faiss.BlockInvertedLists):  # fast-scan: codes in blocks of n_per_block vectors
        return -(-lists.list_size(i) // lists.n_per_block) * lists.block_size
    return lists.list_size(i) * lists.code_size


def _address(ptr, nbytes: int) -> tuple[int, int]:
    return int(faiss.rev_swig_ptr(ptr, 1).ctypes.data) if nbytes else 0, int(nbytes)
