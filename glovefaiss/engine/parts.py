"""The pieces a distributed build is cut into, and FAISS indexes filled apart and merged in order.

Nothing here imports Ray: parts are plain ranges of whole shards, and the index helpers work
on serialised FAISS indexes, wherever they were filled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faiss
import numpy as np

from ..index.faiss_ops import index_chain

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """Corpus rows ``start`` to ``stop``, written as shards numbered from ``first_shard``."""

    number: int
    first_shard: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def plan_parts(num_rows: int, shard_rows: int, *, skip: int = 0, first_shard: int = 0,
               shards_per_part: int = 1) -> list[Part]:
    """Rows ``skip`` to ``num_rows`` as parts of whole shards, in corpus order.

    ``skip`` is where shard ``first_shard`` starts (a resumed build's complete rows), so part
    ``i`` holds exactly the shards the local writer numbers ``first_shard + i * shards_per_part`` on.
    """
    if skip % shard_rows and skip != num_rows:
        raise ValueError(f"parts must start on a shard boundary; {skip} is not a multiple of {shard_rows}")
    size = shard_rows * shards_per_part
    return [Part(i, first_shard + i * shards_per_part, start, min(num_rows, start + size))
            for i, start in enumerate(range(skip, num_rows, size))]


def split_queries(n: int, parts: int, block: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of about ``parts`` ranges of ``n`` queries, each a multiple of ``block`` but the last.

    ``block``: FAISS's query block for matrix-multiply search (``distance_compute_blas_query_bs``);
    a range cut elsewhere would be searched in other blocks, with other rounding of scores.
    """
    per = max(1, -(-n // max(1, parts)))
    per = -(-per // block) * block
    return [(s, min(n, s + per)) for s in range(0, n, per)]


def mergeable(index) -> bool:
    """Whether parts of ``index`` filled apart merge into the same bytes as one fill (not HNSW)."""
    for sub in index_chain(index):
        if isinstance(sub, faiss.IndexRefine):
            if not isinstance(faiss.downcast_index(sub.refine_index), faiss.IndexFlatCodes):
                return False
        elif not isinstance(sub, (faiss.IndexIDMap, faiss.IndexPreTransform, faiss.IndexIVF, faiss.IndexFlatCodes)) \
                or isinstance(sub, faiss.IndexIDMap2):
            return False
    return True


def copies_vectors(index) -> bool:
    """Whether adding to ``index`` only copies the vectors (a flat index, ids or not): nothing to
    compute that workers could share, and the merge would read every vector again."""
    chain = index_chain(index)
    return all(type(sub) is faiss.IndexIDMap for sub in chain[:-1]) and isinstance(chain[-1], faiss.IndexFlat)


def empty_like(index) -> np.ndarray:
    """``index`` with its trained state and no vectors, serialised: the template each part fills."""
    if index.ntotal == 0:
        return faiss.serialize_index(index)
    template = faiss.clone_index(index)
    template.reset()
    return faiss.serialize_index(template)


def merge_into(dst, src, labels_given: bool) -> None:
    """Append the vectors of ``src`` (a part filled from :func:`empty_like`) to ``dst``, in order.

    ``labels_given``: the outer index was given ids; else its labels are row numbers, which
    continue from those already in ``dst``. Inner indexes of an id map or a refinement always
    number rows.
    """
    # New names: rebinding ``src`` would free a deserialised index that only this frame holds.
    into, part = faiss.downcast_index(dst), faiss.downcast_index(src)
    _merge(into, part, labels_given)


def _merge(dst, src, labels_given: bool) -> None:
    if isinstance(dst, faiss.IndexIDMap):
        ids = np.concatenate([faiss.vector_to_array(dst.id_map), faiss.vector_to_array(src.id_map)])
        faiss.copy_array_to_vector(ids.astype(np.int64), dst.id_map)
        merge_into(dst.index, src.index, False)
        dst.ntotal += src.ntotal
    elif isinstance(dst, faiss.IndexPreTransform):
        merge_into(dst.index, src.index, labels_given)
        dst.ntotal += src.ntotal
    elif isinstance(dst, faiss.IndexRefine):
        merge_into(dst.base_index, src.base_index, False)
        merge_into(dst.refine_index, src.refine_index, False)
        dst.ntotal += src.ntotal
    elif isinstance(dst, faiss.IndexIVF):
        dst.merge_from(src, 0 if labels_given else dst.ntotal)
    elif src.ntotal:
        # Codes appended as they are: merge_from refuses an IndexFlat read back as an IndexFlatIP.
        dst.add_sa_codes(faiss.vector_to_array(src.codes).reshape(int(src.ntotal), int(src.code_size)))


def finish_merge(index) -> None:
    """Zero the unused slots of the last block of each fast-scan inverted list.

    Merging packs entries one by one into blocks it does not clear; a single fill leaves the
    slots zero. The codes are the same either way: only the file's bytes would differ.
    """
    for sub in index_chain(index):
        if not isinstance(sub, faiss.IndexIVF):
            continue
        lists = faiss.downcast_InvertedLists(sub.invlists)
        if not isinstance(lists, faiss.BlockInvertedLists):
            continue
        packer = lists.packer
        zero = np.zeros(packer.code_size, dtype=np.uint8)
        per_block, block_bytes = packer.nvec, packer.block_size
        for list_no in range(lists.nlist):
            n = lists.list_size(list_no)
            if n % per_block == 0:
                continue
            blocks = -(-n // per_block)
            codes = faiss.rev_swig_ptr(lists.get_codes(list_no), blocks * block_bytes)
            last = faiss.swig_ptr(codes[(blocks - 1) * block_bytes:])
            for slot in range(n % per_block, per_block):
                packer.pack_1_c(faiss.swig_ptr(zero), slot, last)
