"""Pooling: sums of vocabulary rows per text (numpy, scipy or torch), their (weighted) mean,
projection, common-component removal and L2 normalisation. Every backend gives the same bits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_pool(
    matrix: np.ndarray,
    ids: np.ndarray,
    offsets: np.ndarray,
    projection: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    normalize: bool = True,
    weights: np.ndarray | None = None,
    components: np.ndarray | None = None,
    backend: str = "numpy",
) -> np.ndarray:
    """Mean of ``matrix[ids[offsets[i]:offsets[i+1]]]`` per text, then ``x @ projection.T + bias``.

    ``ids`` hold only known tokens (out-of-vocabulary ones are left out by the caller, so they
    do not dilute the mean). A text with no ids gives a zero vector, also after projection
    and normalisation.

    ``weights`` (float32, one per matrix row) turn the mean into ``sum(weight * vector) / count``:
    the weighted sum divided by the number of known words, as SIF (Arora et al. 2017) and fse
    compute it, not by the sum of the weights. ``components`` (k, dim), orthonormal rows: the
    projection of each vector on them is subtracted (after the projection, before normalising).
    ``backend``: how the sums are computed (see :func:`segment_sums`); every backend gives the same bits.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    if n == 1 and ids.size and projection is None and components is None:
        return pool_one(matrix, ids, normalize, weights)
    counts = np.diff(offsets)
    nonempty = counts > 0
    out = segment_sums(matrix, ids, offsets, weights, backend=backend)
    out[nonempty] /= counts[nonempty, None].astype(np.float32)
    if projection is not None:
        out = project(out, projection, bias)
        out[~nonempty] = 0.0
    if components is not None:
        out = remove_components(out, components)
    if normalize:
        l2_normalize(out)
    return out


def pool_one(matrix: np.ndarray, ids: Sequence[int] | np.ndarray, normalize: bool = True,
             weights: np.ndarray | None = None) -> np.ndarray:
    """:func:`mean_pool` of one text without projection or components, (1, dim): the same arithmetic
    as :func:`segment_sums` and below, in a few numpy calls (a query's; ``ids`` may be a list)."""
    if not len(ids):
        return np.zeros((1, matrix.shape[1]), np.float32)
    out = np.add.reduce(_rows(matrix, ids, weights), axis=0, dtype=np.float32, keepdims=True)
    out /= np.float32(len(ids))
    return l2_normalize(out) if normalize else out


# Tokens gathered at once when summing texts of one length: bounds the temporary (x 4 x dim bytes).
_GATHER_TOKENS = 1 << 18


BACKENDS = ("numpy", "scipy", "torch")


def segment_sums(matrix, ids: np.ndarray, offsets: np.ndarray,
                 weights: np.ndarray | None = None, backend: str = "numpy") -> np.ndarray:
    """Per text, the sum of its (weighted) rows, added left to right in float32.

    ``numpy`` (the query path): texts are grouped by length and each group summed as one
    (texts, length, dim) array: numpy adds along that middle axis in order, as it does for a
    single text's (length, dim) rows, so a text's sum is the same bits in any batch
    (``np.add.reduceat`` is not: it sums pairwise).

    ``scipy``: a (texts x vocabulary) CSR matrix of the weights times ``matrix``, which
    accumulates each row left to right too (same bits, tested); about 2x faster, and it releases
    the GIL, so encoding threads pool at once.

    ``torch`` (the build, for large corpora): ``embedding_bag(mode="sum")``, left to right per
    bag as well (same bits, tested), several times faster than scipy; costs the torch
    import (about 1.4 s). ``matrix`` may then be a torch tensor whose rows are already weighted
    (see :meth:`TextEncoder.batch_rows`), with ``weights`` None: scaling the rows first is what
    the numpy path does too, whereas embedding_bag's own per-sample weights use fused
    multiply-adds and differ in the last bit.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    n = len(offsets) - 1
    counts = np.diff(offsets)
    dim = matrix.shape[1]
    if not ids.size:
        return np.zeros((n, dim), dtype=np.float32)
    if backend == "torch" and n > 1:
        import torch

        if isinstance(matrix, torch.Tensor) and weights is not None:
            raise ValueError("with a tensor of rows, weight the rows themselves; weights must be None")
        rows = matrix if isinstance(matrix, torch.Tensor) else torch.from_numpy(scaled_rows(matrix, weights))
        bags = torch.nn.functional.embedding_bag(torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)), rows,
                                                 torch.from_numpy(np.ascontiguousarray(offsets[:-1], dtype=np.int64)),
                                                 mode="sum")
        return bags.numpy()
    matrix = np.asarray(matrix)
    if backend == "scipy" and n > 1:
        from scipy.sparse import csr_matrix

        data = weights[ids] if weights is not None else np.ones(len(ids), dtype=np.float32)
        rows = csr_matrix((data.astype(np.float32, copy=False), ids, offsets), shape=(n, matrix.shape[0]))
        return np.asarray(rows @ matrix, dtype=np.float32)
    out = np.zeros((n, dim), dtype=np.float32)
    if n == 1:
        out[0] = np.add.reduce(_rows(matrix, ids, weights), axis=0, dtype=np.float32)
        return out
    order = np.argsort(counts, kind="stable")
    sorted_counts = counts[order]
    # Where each run of equal lengths starts (np.unique would import numpy.ma: 7 ms on a cold query).
    starts = np.flatnonzero(np.concatenate([[True], sorted_counts[1:] != sorted_counts[:-1]]))
    lengths = sorted_counts[starts]
    ends = np.append(starts[1:], n)
    for length, a, b in zip(lengths.tolist(), starts.tolist(), ends.tolist()):
        if length == 0:
            continue
        docs = order[a:b]
        step = max(1, _GATHER_TOKENS // length)
        for c in range(0, len(docs), step):
            chunk = docs[c:c + step]
            token_pos = offsets[chunk][:, None] + np.arange(length)
            out[chunk] = _rows(matrix, ids[token_pos], weights).sum(axis=1, dtype=np.float32)
    return out


def project(x: np.ndarray, projection: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``x @ projection.T + bias``, row by row in fixed-size blocks.

    A plain matmul lets BLAS choose kernels by the number of rows, so one text's output could
    differ in the last bit between batches; fixed blocks (the last one zero-padded) keep it equal.
    """
    out = np.empty((len(x), projection.shape[0]), dtype=np.float32)
    block = 256
    pt = np.ascontiguousarray(projection.T, dtype=np.float32)
    for a in range(0, len(x), block):
        chunk = x[a:a + block]
        padded = np.zeros((block, x.shape[1]), dtype=np.float32)
        padded[: len(chunk)] = chunk
        out[a:a + len(chunk)] = (padded @ pt)[: len(chunk)]
    if bias is not None:
        out += bias
    return out


def scaled_rows(matrix: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """float32 rows times their weights (a writable copy either way)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    return matrix * weights[:, None] if weights is not None else matrix.copy()


def _rows(matrix: np.ndarray, ids: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    rows = matrix[ids]
    if weights is not None:
        rows = rows * weights[ids, None]  # float32 (V,) weights keep float32 rows
    return rows


def remove_components(x: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``x - (x @ C.T) @ C`` for orthonormal rows ``C``, computed row by row.

    Element-wise products and row sums instead of a matrix product: BLAS picks different
    kernels (and summation orders) for one row and for many, and a text's vector must not
    depend on the batch it was encoded in. A zero row stays zero.
    """
    x = np.asarray(x, dtype=np.float32)
    out = x.copy()
    for c in np.asarray(components, dtype=np.float32):
        out -= (x * c).sum(axis=1, dtype=np.float32)[:, None] * c
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Scale rows of ``x`` to unit length in place; zero rows stay zero."""
    # What np.linalg.norm(x, axis=1) computes, without its per-call overhead (a query is one row).
    norms = np.sqrt(np.add.reduce(x * x, axis=1, keepdims=True))
    np.divide(x, norms, out=x, where=norms > 0)
    return x


