"""The numpy tower: text → tokens → vocabulary rows → (weighted) mean → projection →
common-component removal → L2 normalisation.

Build and query both encode through :class:`TextEncoder`, so documents and queries get
exactly the same treatment. No torch here: training exports its weights into this form, and
:mod:`glovefaiss.tower.sif` computes the optional word weights and components. pyarrow is
imported by the batch (corpus) methods only: single queries need numpy alone.
"""

from __future__ import annotations

import copy
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import TokeniserConfig
from ..text.packed import PackedStrings, PackedStringsWriter
from ..text.tokeniser import Tokeniser
from ..text.vocabulary import Vocabulary
from .pooling import mean_pool, pool_one, scaled_rows

if TYPE_CHECKING:  # annotations only: imported where used, see the module docstring
    import pyarrow as pa

VOCAB_FILES = ("vocab.words", "vocab.words-offsets.npy")
# Name of the vocabulary's hash table kept in a vectors cache entry; a new name if word_hash changes.
VOCAB_HASH_TABLE = "vocab-hash-blake2b64"
# Where index and model directories keep their towers.
QUERY_TOWER = "query_tower"
DOCUMENT_TOWER = "document_tower"



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
        elif backend == "scipy":
            import scipy.sparse  # noqa: F401  (0.3-0.8 s, once: set-up, as torch's import is)
        enc.vocabulary.key_table()  # a cache shared with this tower: the same table either way
        return enc

    def batch_rows(self):
        """For the torch backend: the (weighted) rows as a torch tensor, made once."""
        if self._batch_rows is None:
            import torch

            self._batch_rows = torch.from_numpy(scaled_rows(self.matrix, self.weights))
        return self._batch_rows

    def pool(self, ids: np.ndarray, offsets: np.ndarray, normalize: bool = True) -> np.ndarray:
        """Vectors of texts given as known vocabulary rows ``ids`` with per-text ``offsets`` into them."""
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
        known, offsets = known_offsets(rows, lengths)
        return rows[known], offsets, rows

    def encode_unnormalized(self, texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Vectors before L2 normalisation (what common components are estimated from)."""
        known_rows, offsets, _ = self.pooled_ids(texts)
        return self.pool(known_rows, offsets, normalize=False)

    def encode(self, texts: Sequence[str] | str | pa.Array | pa.ChunkedArray, *,
               stats: EncodeStats | None = None, top_oov: int = 0) -> np.ndarray:
        """L2-normalised float32 vectors (n, dim) for texts: a string, a list, or an Arrow string array.

        A text with no known word (or a null) gets a zero vector. ``stats``: an :class:`EncodeStats`
        that this call's counts are added to, with the ``top_oov`` most frequent unknown words.
        A few Python strings take the single-text path (microseconds a query); everything else
        the Arrow batch path. Both give the same vectors (tested).
        """
        return self._encode(texts, stats, top_oov)[0]

    def encode_counted(self, texts: Sequence[str] | str | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """(the vectors of :meth:`encode`, each text's token count, unknown words included) from one tokenisation."""
        return self._encode(texts, None, 0)

    def _encode(self, texts, stats: EncodeStats | None, top_oov: int) -> tuple[np.ndarray, np.ndarray]:
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
        known, offsets = known_offsets(rows, lengths)
        vectors = self.pool(rows[known], offsets)
        if stats is not None:
            s = EncodeStats(
                texts=len(lengths),
                tokens=int(len(rows)),
                oov_tokens=int((~known).sum()),
                empty_texts=int((np.diff(offsets) == 0).sum()),
                vector_sum=vectors.sum(axis=0, dtype=np.float64),
            )
            if top_oov and s.oov_tokens:
                counts = pc.value_counts(strings(np.flatnonzero(~known)))
                s.oov_words = Counter(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))
            stats.add(s)
        return vectors, np.asarray(lengths, dtype=np.int64)

    def _encode_few(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if len(texts) == 1:
            # One query: Python ints until the rows are gathered, the same arithmetic as below. Each
            # numpy call costs microseconds once a search has pushed numpy out of the CPU cache.
            rows = self.vocabulary.rows(self.tokeniser.tokenise(texts[0]))
            known = [r for r in rows if r >= 0]
            count = np.array([len(rows)], np.int64)
            if self.projection is None and self.components is None:
                return pool_one(self.matrix, known, weights=self.weights), count
            return self.pool(np.array(known, np.int64), np.array([0, len(known)], np.int64)), count
        id_lists = [self.vocabulary.lookup(self.tokeniser.tokenise(t)) for t in texts]
        counts = np.asarray([len(ids) for ids in id_lists], dtype=np.int64)
        id_lists = [ids[ids >= 0] for ids in id_lists]
        offsets = np.concatenate([[0], np.cumsum([len(ids) for ids in id_lists])]).astype(np.int64)
        ids = np.concatenate(id_lists) if id_lists else np.zeros(0, np.int64)
        return self.pool(ids, offsets), counts


def _is_arrow(texts) -> bool:
    # Without importing pyarrow: a query path given Python strings never needs it.
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(texts, (pa.Array, pa.ChunkedArray))


def known_offsets(rows: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    vocabulary = Vocabulary(PackedStrings.open(directory / VOCAB_FILES[0], directory / VOCAB_FILES[1], populate=not mmap))
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


def encoder_from_config(config, vectors=None):
    """(the frozen mean-pool tower of a config: its tokeniser over its word vectors, the vectors)."""
    from ..vectors.sources import load_vectors

    if vectors is None:
        vectors = load_vectors(config.embedding.model_name)
    vocabulary = Vocabulary(vectors.words)
    # The same vectors give the same words: their hash table is kept beside them, not redone each build.
    vocabulary.keep_hash_table_in(lambda make: vectors.derived(
        VOCAB_HASH_TABLE, make, valid=lambda t: len(t) == 2 and len(t[0]) == len(t[1]) == len(vocabulary)))
    encoder = TextEncoder(Tokeniser(config.tokeniser), vocabulary, vectors.matrix)
    return encoder, vectors
