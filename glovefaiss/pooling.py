"""The numpy tower: text → tokens → vocabulary rows → mean → projection → L2 normalisation.

Build and query both encode through :class:`TextEncoder`, so documents and queries get
exactly the same treatment. No torch here: training exports its weights into this form.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .config import TokeniserConfig
from .tokenisers import Tokeniser


_ZERO = np.zeros(1, dtype=np.int64)


def mean_pool(
    matrix: np.ndarray,
    ids: np.ndarray,
    offsets: np.ndarray,
    projection: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Mean of ``matrix[ids[offsets[i]:offsets[i+1]]]`` per text, then ``x @ projection.T + bias``.

    ``ids`` hold only known tokens (out-of-vocabulary ones are left out by the caller, so they
    do not dilute the mean). A text with no ids gives a zero vector, also after projection
    and normalisation.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    if n == 1 and projection is None and ids.size:
        # One text (a query): skip the segment bookkeeping. reduceat, not sum: the same order
        # of additions as the batch path, so a text's vector never depends on its batch.
        out = np.add.reduceat(matrix[ids], _ZERO, axis=0, dtype=np.float32) / np.float32(ids.size)
        return l2_normalize(out) if normalize else out
    counts = np.diff(offsets)
    out = np.zeros((n, matrix.shape[1]), dtype=np.float32)
    nonempty = counts > 0
    if ids.size:
        rows = matrix[ids]
        # reduceat over non-empty segments only: for an empty one it would return a row, not 0.
        out[nonempty] = np.add.reduceat(rows, offsets[:-1][nonempty], axis=0, dtype=np.float32)
        out[nonempty] /= counts[nonempty, None].astype(np.float32)
    if projection is not None:
        projected = out @ projection.T
        if bias is not None:
            projected += bias
        projected[~nonempty] = 0.0
        out = projected.astype(np.float32, copy=False)
    if normalize:
        l2_normalize(out)
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Scale rows of ``x`` to unit length in place; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


class Vocabulary:
    """Words ↔ rows of an embedding matrix, with a batch (Arrow) and a single-text lookup."""

    def __init__(self, words: pa.Array | pa.ChunkedArray):
        if isinstance(words, pa.ChunkedArray):
            words = words.combine_chunks()
        self.words: pa.Array = words.cast(pa.string()) if pa.types.is_large_string(words.type) else words
        self._dict: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.words)

    def lookup_arrow(self, tokens: pa.Array) -> np.ndarray:
        """Row of each token, -1 where unknown (one hash of the vocabulary per call)."""
        rows = pc.index_in(tokens, value_set=self.words)
        return rows.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)

    def lookup(self, tokens: list[str]) -> np.ndarray:
        """Row of each token, -1 where unknown (a dict built on first use)."""
        if self._dict is None:
            self._dict = {w: i for i, w in enumerate(self.words.to_pylist())}
        get = self._dict.get
        return np.fromiter((get(t, -1) for t in tokens), dtype=np.int64, count=len(tokens))


@dataclass
class EncodeStats:
    """Counts from encoding: tokens seen, tokens not in the vocabulary, texts with no known token."""

    texts: int = 0
    tokens: int = 0
    oov_tokens: int = 0
    empty_texts: int = 0
    oov_words: Counter = field(default_factory=Counter)

    def add(self, other: EncodeStats) -> None:
        self.texts += other.texts
        self.tokens += other.tokens
        self.oov_tokens += other.oov_tokens
        self.empty_texts += other.empty_texts
        self.oov_words.update(other.oov_words)

    @property
    def oov_rate(self) -> float:
        return self.oov_tokens / self.tokens if self.tokens else 0.0


class TextEncoder:
    """Encodes texts into L2-normalised float32 vectors with a mean-pool tower."""

    def __init__(
        self,
        tokeniser: Tokeniser,
        vocabulary: Vocabulary,
        matrix: np.ndarray,
        projection: np.ndarray | None = None,
        bias: np.ndarray | None = None,
    ):
        if len(vocabulary) != matrix.shape[0]:
            raise ValueError(f"vocabulary has {len(vocabulary)} words but the matrix {matrix.shape[0]} rows")
        self.tokeniser = tokeniser
        self.vocabulary = vocabulary
        # A plain ndarray view of a memmap: indexing a memmap subclass costs microseconds per call.
        self.matrix = np.asarray(matrix)
        self.projection = projection
        self.bias = bias

    @property
    def dim(self) -> int:
        return self.matrix.shape[1] if self.projection is None else self.projection.shape[0]

    def _pool(self, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        return mean_pool(self.matrix, ids, offsets, self.projection, self.bias)

    def encode_arrow(self, texts: pa.Array | pa.ChunkedArray, top_oov: int = 0) -> tuple[np.ndarray, EncodeStats]:
        """Vectors for an Arrow string array (the corpus path), with counts; nulls count as empty."""
        tokens = self.tokeniser.tokenise_arrow(texts)
        flat = pc.list_flatten(tokens)
        # Offsets from lengths, not from tokens.offsets: a sliced or null list may not start at 0.
        lengths = pc.list_value_length(tokens).fill_null(0).to_numpy().astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        rows = self.vocabulary.lookup_arrow(flat)
        known = rows >= 0
        # Offsets over known tokens only: drop OOV tokens before pooling.
        known_offsets = np.concatenate([[0], np.cumsum(known)])[offsets]
        vectors = self._pool(rows[known], known_offsets)
        stats = EncodeStats(
            texts=len(lengths),
            tokens=int(len(rows)),
            oov_tokens=int((~known).sum()),
            empty_texts=int((np.diff(known_offsets) == 0).sum()),
        )
        if top_oov and stats.oov_tokens:
            counts = pc.value_counts(pc.filter(flat, pa.array(~known)))
            stats.oov_words = Counter(
                dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
            )
        return vectors, stats

    def encode(self, texts: list[str] | str) -> np.ndarray:
        """Vectors for a few texts (the query path): float32, shape (n, dim)."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) > 256:
            return self.encode_arrow(pa.array(texts, pa.string()))[0]
        id_lists = [self.vocabulary.lookup(self.tokeniser.tokenise(t)) for t in texts]
        id_lists = [ids[ids >= 0] for ids in id_lists]
        offsets = np.concatenate([[0], np.cumsum([len(ids) for ids in id_lists])]).astype(np.int64)
        ids = np.concatenate(id_lists) if id_lists else np.zeros(0, np.int64)
        return self._pool(ids, offsets)


def save_encoder(encoder: TextEncoder, directory: Path, info: dict | None = None) -> dict:
    """Write a tower directory (tokeniser rules, vocabulary, weights) that :func:`load_encoder` reads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"word": encoder.vocabulary.words}), directory / "vocab.parquet")
    np.save(directory / "embeddings.npy", np.ascontiguousarray(encoder.matrix, dtype=np.float32))
    if encoder.projection is not None:
        np.save(directory / "projection.npy", encoder.projection.astype(np.float32))
        np.save(directory / "bias.npy", (encoder.bias if encoder.bias is not None else
                                         np.zeros(encoder.projection.shape[0])).astype(np.float32))
    meta = {
        "tokeniser": encoder.tokeniser.describe(),
        "vocab_size": len(encoder.vocabulary),
        "embedding_dim": int(encoder.matrix.shape[1]),
        "dim": encoder.dim,
        "projection": encoder.projection is not None,
        **(info or {}),
    }
    (directory / "tower.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def load_encoder(directory: Path, mmap: bool = True) -> TextEncoder:
    """Read a tower directory written by :func:`save_encoder`; the matrix is memory-mapped."""
    directory = Path(directory)
    meta = json.loads((directory / "tower.json").read_text(encoding="utf-8"))
    tokeniser = Tokeniser(TokeniserConfig(**meta["tokeniser"]))
    words = pq.read_table(directory / "vocab.parquet").column("word")
    matrix = np.load(directory / "embeddings.npy", mmap_mode="r" if mmap else None)
    projection = bias = None
    if meta.get("projection"):
        projection = np.load(directory / "projection.npy")
        bias = np.load(directory / "bias.npy")
    return TextEncoder(tokeniser, Vocabulary(words), matrix, projection, bias)
