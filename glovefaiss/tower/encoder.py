"""The numpy tower: text → tokens → vocabulary rows → (weighted) mean → projection →
common-component removal → L2 normalisation.

Build and query both encode through :class:`TextEncoder`, so documents and queries get
exactly the same treatment. No torch here: training exports its weights into this form, and
:mod:`glovefaiss.weighting` computes the optional word weights and components. pyarrow is
imported by the batch (corpus) methods only: single queries need numpy alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import TokeniserConfig
from ..text.keys import KeyTable, padded
from ..text.packed import PackedStrings, PackedStringsWriter, arrow_string_buffers
from ..text.tokeniser import Tokeniser

if TYPE_CHECKING:  # annotations only: imported where used, see the module docstring
    import pyarrow as pa

VOCAB_FILES = ("vocab.words", "vocab.words-offsets.npy")


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
        # One text (a query): the same arithmetic as segment_sums and below, without the bookkeeping.
        out = np.add.reduce(_rows(matrix, ids, weights), axis=0, dtype=np.float32, keepdims=True)
        out /= np.float32(ids.size)
        return l2_normalize(out) if normalize else out
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
    accumulates each row left to right too (same bits, tested); about 2x faster, but it holds
    the GIL, so two encoding threads cannot pool at once.

    ``torch`` (the build, for large corpora): ``embedding_bag(mode="sum")``, left to right per
    bag as well (same bits, tested), 3x faster than scipy and free of the GIL; costs the torch
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
        rows = matrix if isinstance(matrix, torch.Tensor) else torch.from_numpy(_scaled_rows(matrix, weights))
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


def _scaled_rows(matrix: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
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


class Vocabulary:
    """Words ↔ rows of an embedding matrix, with a batch (Arrow) and a single-text lookup.

    ``words``: an Arrow string array, or :class:`PackedStrings` (a saved tower), turned into
    an Arrow array only when a batch lookup needs one.
    """

    def __init__(self, words: pa.Array | pa.ChunkedArray | PackedStrings):
        self._packed = words if isinstance(words, PackedStrings) else None
        self._words = None
        if self._packed is None:
            import pyarrow as pa

            if isinstance(words, pa.ChunkedArray):
                words = words.combine_chunks()
            self._words = words.cast(pa.string()) if pa.types.is_large_string(words.type) else words
        self._dict: dict[str, int] | None = None
        self._hashes: tuple[np.ndarray, np.ndarray] | None = None  # (sorted word hashes, their rows)
        self._keys: KeyTable | None = None
        self._keys_lock = threading.Lock()

    @property
    def words(self) -> pa.Array:
        """The words as an Arrow string array, row order."""
        if self._words is None:
            self._words = self._packed.to_arrow()
        return self._words

    def _word_list(self) -> list[str]:
        return self._packed.take(range(len(self))) if self._packed is not None else self.words.to_pylist()

    def word(self, row: int) -> str:
        return self._packed[row] if self._packed is not None else self._words[row].as_py()

    def __len__(self) -> int:
        return len(self._packed) if self._packed is not None else len(self._words)

    def key_table(self) -> KeyTable:
        """The vocabulary's numpy key table (see :mod:`.lookup`), built on first use."""
        with self._keys_lock:
            if self._keys is None:
                if self._packed is not None:
                    offsets, data = np.asarray(self._packed.offsets, dtype=np.int64), np.asarray(self._packed.data)
                else:
                    offsets, data = arrow_string_buffers(self.words)
                    offsets = offsets - offsets[0]
                self._keys = KeyTable(padded(data), offsets[:-1], np.diff(offsets))
            return self._keys

    def lookup_arrow(self, tokens: pa.Array) -> np.ndarray:
        """Row of each token of an Arrow string array, -1 where unknown.

        Through the numpy key table, not ``pc.index_in``: that rehashes all the words on every
        call (75 ms for 400,000), which made small batches slow and cost a fifth of the lookup.
        """
        offsets, data = arrow_string_buffers(tokens)
        return self.key_table().lookup(padded(data), offsets[:-1] - offsets[0], np.diff(offsets))

    def lookup(self, tokens: list[str]) -> np.ndarray:
        """Row of each token, -1 where unknown.

        With a saved hash table (see :meth:`hash_table`), a binary search of the token's hash,
        confirmed against the word itself: nothing to build, so a cold query starts at once.
        Otherwise a dict, built on first use (about 0.3 s for 400,000 words).
        """
        if self._hashes is not None:
            return self._lookup_hashed(tokens)
        if self._dict is None:
            self._dict = {w: i for i, w in enumerate(self._word_list())}
        get = self._dict.get
        return np.fromiter((get(t, -1) for t in tokens), dtype=np.int64, count=len(tokens))

    def _lookup_hashed(self, tokens: list[str]) -> np.ndarray:
        hashes, rows = self._hashes
        wanted = np.fromiter((word_hash(t) for t in tokens), dtype=np.uint64, count=len(tokens))
        pos = np.minimum(np.searchsorted(hashes, wanted), len(hashes) - 1)
        out = np.where(hashes[pos] == wanted, rows[pos], -1).astype(np.int64)
        found = out >= 0
        if found.any():
            # Confirm by the word: a 64-bit collision is unlikely, not impossible.
            words = (self._packed.take(out[found].tolist()) if self._packed is not None
                     else self._words.take(out[found]).to_pylist())
            for i, word in zip(np.flatnonzero(found).tolist(), words):
                if word != tokens[i]:
                    out[i] = self._scan_collisions(tokens[i], int(pos[i]))
        return out

    def _scan_collisions(self, token: str, i: int) -> int:
        hashes, rows = self._hashes
        h = hashes[i]
        while i < len(hashes) and hashes[i] == h:
            if self.word(int(rows[i])) == token:
                return int(rows[i])
            i += 1
        return -1

    def hash_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted 64-bit word hashes, row of each): what :meth:`lookup` searches when attached."""
        hashes = np.fromiter((word_hash(w) for w in self._word_list()), dtype=np.uint64, count=len(self))
        order = np.argsort(hashes, kind="stable")
        return hashes[order], order.astype(np.int32)

    def attach_hash_table(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        self._hashes = (hashes, rows)


def word_hash(word: str) -> int:
    """A stable 64-bit hash of a word (blake2b), the same on every machine and Python."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


@dataclass
class EncodeStats:
    """Counts from encoding: tokens seen, tokens not in the vocabulary, texts with no known token."""

    texts: int = 0
    tokens: int = 0
    oov_tokens: int = 0
    empty_texts: int = 0
    oov_words: Counter = field(default_factory=Counter)
    # Sum of the (unit or zero) output vectors, float64: anisotropy = |sum| / non-empty texts.
    vector_sum: np.ndarray | None = None

    def add(self, other: EncodeStats) -> None:
        self.texts += other.texts
        self.tokens += other.tokens
        self.oov_tokens += other.oov_tokens
        self.empty_texts += other.empty_texts
        self.oov_words.update(other.oov_words)
        if other.vector_sum is not None:
            self.vector_sum = other.vector_sum.copy() if self.vector_sum is None else self.vector_sum + other.vector_sum

    @property
    def oov_rate(self) -> float:
        return self.oov_tokens / self.tokens if self.tokens else 0.0

    @property
    def anisotropy(self) -> float | None:
        """Mean cosine of the non-empty texts' vectors to their centroid (None before any vector).

        With unit vectors x_i and S = sum x_i: mean_i cos(x_i, S) = |S|^2 / (n |S|) = |S| / n.
        """
        n = self.texts - self.empty_texts
        if self.vector_sum is None or n <= 0:
            return None
        return float(np.linalg.norm(self.vector_sum)) / n


class TextEncoder:
    """Encodes texts into L2-normalised float32 vectors with a mean-pool tower."""

    def __init__(
        self,
        tokeniser: Tokeniser,
        vocabulary: Vocabulary,
        matrix: np.ndarray,
        projection: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        *,
        weights: np.ndarray | None = None,
        components: np.ndarray | None = None,
    ):
        """``weights``: per-word SIF weights (one per matrix row); ``components``: (k, dim) to remove."""
        if len(vocabulary) != matrix.shape[0]:
            raise ValueError(f"vocabulary has {len(vocabulary)} words but the matrix {matrix.shape[0]} rows")
        if weights is not None and np.shape(weights) != (matrix.shape[0],):
            raise ValueError(f"weights have shape {np.shape(weights)}; want one per vocabulary word ({matrix.shape[0]},)")
        self.tokeniser = tokeniser
        # How batches are summed (see segment_sums): the build picks scipy or torch, queries stay numpy.
        self.batch_sums = "numpy"
        self._batch_rows = None
        self.vocabulary = vocabulary
        # A plain ndarray view of a memmap: indexing a memmap subclass costs microseconds per call.
        self.matrix = np.asarray(matrix)
        self.projection = projection
        self.bias = bias
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        self.components = None if components is None else np.asarray(components, dtype=np.float32)
        if self.components is not None and (self.components.ndim != 2 or self.components.shape[1] != self.dim):
            raise ValueError(f"components have shape {self.components.shape}; want (k, {self.dim})")

    @property
    def dim(self) -> int:
        return self.matrix.shape[1] if self.projection is None else self.projection.shape[0]

    def with_pooling(self, weights: np.ndarray | None = None, components: np.ndarray | None = None) -> TextEncoder:
        """The same tower with other word weights and components (None: none)."""
        return TextEncoder(self.tokeniser, self.vocabulary, self.matrix, self.projection, self.bias,
                           weights=weights, components=components)

    def for_batches(self, backend: str) -> TextEncoder:
        """This tower pooling batches with ``backend`` (see :func:`segment_sums`; every backend gives
        the same bits), with what batches need built now rather than in the first batches encoded
        on several threads at once. The tower itself is left as it is."""
        enc = copy.copy(self)
        enc.batch_sums = backend
        if backend == "torch":
            enc.batch_rows()
        enc.vocabulary.key_table()  # a cache shared with this tower: the same table either way
        return enc

    def batch_rows(self):
        """For the torch backend: the (weighted) rows as a torch tensor, made once."""
        if self._batch_rows is None:
            import torch

            self._batch_rows = torch.from_numpy(_scaled_rows(self.matrix, self.weights))
        return self._batch_rows

    def _pool(self, ids: np.ndarray, offsets: np.ndarray, normalize: bool = True) -> np.ndarray:
        if self.batch_sums == "torch" and len(offsets) > 2:
            return mean_pool(self.batch_rows(), ids, offsets, self.projection, self.bias, normalize=normalize,
                             components=self.components, backend="torch")
        return mean_pool(self.matrix, ids, offsets, self.projection, self.bias, normalize=normalize,
                         weights=self.weights, components=self.components, backend=self.batch_sums)

    def token_rows(self, texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, Callable]:
        """(vocabulary row of every token, -1 where unknown; tokens per text; a function from
        token positions to those tokens as an Arrow string array) for an Arrow string array.

        Through the tokeniser's byte spans where its rules allow (no Arrow list of strings),
        else through :meth:`Tokeniser.tokenise_arrow`; both give the same tokens (tested).
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        spans = self.tokeniser.token_spans(texts)
        if spans is not None:
            rows = self.vocabulary.key_table().lookup(spans.buf, spans.starts, spans.lengths)
            return rows, spans.counts, spans.strings
        tokens = self.tokeniser.tokenise_arrow(texts)
        flat = pc.list_flatten(tokens)
        # Lengths, not tokens.offsets: a sliced or null list may not start at 0.
        lengths = pc.list_value_length(tokens).fill_null(0).to_numpy().astype(np.int64)
        return self.vocabulary.lookup_arrow(flat), lengths, lambda which: flat.take(pa.array(which))

    def pooled_ids(self, texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(known rows, offsets over them, all rows incl. -1 for unknown) of an Arrow string array."""
        rows, lengths, _ = self.token_rows(texts)
        known, known_offsets = _known_offsets(rows, lengths)
        return rows[known], known_offsets, rows

    def encode_unnormalized(self, texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Vectors before L2 normalisation (what common components are estimated from)."""
        known_rows, known_offsets, _ = self.pooled_ids(texts)
        return self._pool(known_rows, known_offsets, normalize=False)

    def encode(self, texts: Sequence[str] | str | pa.Array | pa.ChunkedArray, *,
               stats: EncodeStats | None = None, top_oov: int = 0) -> np.ndarray:
        """L2-normalised float32 vectors (n, dim) for texts: a string, a list, or an Arrow string array.

        A text with no known word (or a null) gets a zero vector. ``stats``: an :class:`EncodeStats`
        that this call's counts are added to, with the ``top_oov`` most frequent unknown words.
        A few Python strings take the single-text path (microseconds a query); everything else
        the Arrow batch path. Both give the same vectors (tested).
        """
        if isinstance(texts, str):
            texts = [texts]
        arrow = _is_arrow(texts)
        if stats is None and not arrow and len(texts) <= 256:
            return self._encode_few(texts)
        import pyarrow as pa
        import pyarrow.compute as pc

        if not arrow:
            texts = pa.array(list(texts), pa.string())
        rows, lengths, strings = self.token_rows(texts)
        known, known_offsets = _known_offsets(rows, lengths)
        vectors = self._pool(rows[known], known_offsets)
        if stats is not None:
            s = EncodeStats(
                texts=len(lengths),
                tokens=int(len(rows)),
                oov_tokens=int((~known).sum()),
                empty_texts=int((np.diff(known_offsets) == 0).sum()),
                vector_sum=vectors.sum(axis=0, dtype=np.float64),
            )
            if top_oov and s.oov_tokens:
                counts = pc.value_counts(strings(np.flatnonzero(~known)))
                s.oov_words = Counter(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))
            stats.add(s)
        return vectors

    def _encode_few(self, texts: Sequence[str]) -> np.ndarray:
        id_lists = [self.vocabulary.lookup(self.tokeniser.tokenise(t)) for t in texts]
        id_lists = [ids[ids >= 0] for ids in id_lists]
        offsets = np.concatenate([[0], np.cumsum([len(ids) for ids in id_lists])]).astype(np.int64)
        ids = np.concatenate(id_lists) if id_lists else np.zeros(0, np.int64)
        return self._pool(ids, offsets)


def _is_arrow(texts) -> bool:
    # Without importing pyarrow: a query path given Python strings never needs it.
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(texts, (pa.Array, pa.ChunkedArray))


def _known_offsets(rows: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of known tokens, per-text offsets over the known tokens only): OOV tokens are dropped before pooling."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    known = rows >= 0
    return known, np.concatenate([[0], np.cumsum(known)])[offsets]


def save_encoder(encoder: TextEncoder, directory: Path, info: dict | None = None) -> dict:
    """Write a tower directory (tokeniser rules, vocabulary, weights) that :func:`load_encoder` reads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    words = PackedStringsWriter(directory / VOCAB_FILES[0], directory / VOCAB_FILES[1])
    words.append(encoder.vocabulary.words)
    words.close()
    hashes, rows = encoder.vocabulary.hash_table()
    np.save(directory / "vocab_hash.npy", hashes)
    np.save(directory / "vocab_hash_rows.npy", rows)
    np.save(directory / "embeddings.npy", np.ascontiguousarray(encoder.matrix, dtype=np.float32))
    if encoder.projection is not None:
        np.save(directory / "projection.npy", encoder.projection.astype(np.float32))
        np.save(directory / "bias.npy", (encoder.bias if encoder.bias is not None else
                                         np.zeros(encoder.projection.shape[0])).astype(np.float32))
    pooling = {}
    if encoder.weights is not None:
        np.save(directory / "weights.npy", encoder.weights)
        pooling["weights"] = True
    if encoder.components is not None:
        np.save(directory / "components.npy", encoder.components)
        pooling["components"] = int(encoder.components.shape[0])
    meta = {
        "tokeniser": encoder.tokeniser.describe(),
        "vocab_size": len(encoder.vocabulary),
        "embedding_dim": int(encoder.matrix.shape[1]),
        "dim": encoder.dim,
        "projection": encoder.projection is not None,
        **pooling,
        **(info or {}),
    }
    (directory / "tower.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    """An .npy file memory-mapped (as a plain ndarray view: indexing a np.memmap costs microseconds
    a call) or read into memory."""
    return np.load(path, mmap_mode="r").view(np.ndarray) if mmap else np.load(path)


def load_encoder(directory: Path, mmap: bool = True) -> TextEncoder:
    """Read a tower directory written by :func:`save_encoder`; the matrix is memory-mapped."""
    directory = Path(directory)
    meta = json.loads((directory / "tower.json").read_text(encoding="utf-8"))
    tokeniser = Tokeniser(TokeniserConfig(**meta["tokeniser"]))
    vocabulary = Vocabulary(PackedStrings.open(directory / VOCAB_FILES[0], directory / VOCAB_FILES[1]))
    if (directory / "vocab_hash.npy").exists():
        vocabulary.attach_hash_table(_load_array(directory / "vocab_hash.npy", mmap),
                                     _load_array(directory / "vocab_hash_rows.npy", mmap))
    matrix = _load_array(directory / "embeddings.npy", mmap)
    projection = bias = None
    if meta.get("projection"):
        projection = np.load(directory / "projection.npy")
        bias = np.load(directory / "bias.npy")
    weights = np.load(directory / "weights.npy") if meta.get("weights") else None
    components = np.load(directory / "components.npy") if meta.get("components") else None
    return TextEncoder(tokeniser, vocabulary, matrix, projection, bias, weights=weights, components=components)
