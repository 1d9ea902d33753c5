"""Torch embedding modules: token ids (B, L) → word vectors (B, L, D) for the training tower.

A model vocabulary is a list of words whose entry 0 is :data:`PAD` ("<pad>"); id ``i`` is
row ``i`` of the embedding. Every module also says which ids count in the mean
(:meth:`BaseEmbedding.valid_mask`) and exports its rows for the numpy query path
(:func:`glovefaiss.pooling.mean_pool`).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

log = logging.getLogger(__name__)

PAD = "<pad>"
PAD_ID = 0


class BaseEmbedding(nn.Module):
    """Common interface: a (vocab_size, D) ``weight`` whose row 0 is padding, and a ``known`` mask.

    ``known[i]`` is True when id ``i`` counts in the mean; row 0 (padding) is never known.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, trainable: bool):
        super().__init__()
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ConfigError(f"vocab_size must be a positive integer (the padding row counts), got {vocab_size!r}")
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ConfigError(f"embedding_dim must be a positive integer, got {embedding_dim!r}")
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.trainable = bool(trainable)
        self.weight = nn.Parameter(torch.zeros(vocab_size, embedding_dim), requires_grad=self.trainable)
        # A buffer, so it follows .to(device) and is saved in the state dict with the weights.
        known = torch.ones(vocab_size, dtype=torch.bool)
        known[PAD_ID] = False
        self.register_buffer("known", known)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Vectors of ``ids`` (LongTensor (B, L)) as (B, L, D); padding gives zeros."""
        return F.embedding(ids, self.weight, padding_idx=PAD_ID)

    def valid_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: True where the token counts in the mean (not padding, not a missing word)."""
        return self.known[ids]

    @torch.no_grad()
    def set_rows(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Give ``ids`` (not padding) the vectors ``rows`` and count them in the mean from now on:
        words the vectors lack get a starting row this way (vocabulary growth)."""
        ids = np.asarray(ids, dtype=np.int64)
        if (ids == PAD_ID).any():
            raise ConfigError("the padding row cannot be given a vector")
        idx = torch.from_numpy(ids)
        self.weight[idx] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        self.known[idx] = True

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """(float32 matrix (V, D), bool known (V,)) copies for the numpy query path."""
        matrix = self.weight.detach().cpu().numpy().astype(np.float32, copy=True)
        known = self.known.detach().cpu().numpy().astype(bool, copy=True)
        return matrix, known

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, embedding_dim={self.embedding_dim}, trainable={self.trainable}"


class LookupEmbedding(BaseEmbedding):
    """Randomly initialised embedding, rows ~ Normal(0, 1/sqrt(D)) so vectors have norm ≈ 1.

    Row 0 (padding) is zero and never updated; every other row is valid.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, *, trainable: bool = True, seed: int | None = None):
        super().__init__(vocab_size, embedding_dim, trainable)
        generator = None
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0 / math.sqrt(embedding_dim), generator=generator)
            self.weight[PAD_ID].zero_()


class PretrainedEmbedding(BaseEmbedding):
    """Embedding whose rows are copied from pretrained word vectors (GloVe, word2vec, ...).

    Words the vectors lack get a zero row and ``known`` False: they are left out of the mean
    exactly like padding, frozen or trainable, so training agrees with the numpy query path
    (which drops out-of-vocabulary tokens). When trainable, they get no gradient, so they stay
    zero even if a caller ignores the mask. Their number is ``missing_words``.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int | None,
        *,
        vocab: Sequence[str] | pa.Array,
        vectors: Any,
        trainable: bool,
    ):
        vocab_arr = _vocab_array(vocab)
        if vocab_size != len(vocab_arr):
            raise ConfigError(f"vocab_size is {vocab_size} but the vocabulary has {len(vocab_arr)} words")
        source = getattr(vectors, "source", "the word vectors")
        dim = int(vectors.matrix.shape[1])
        if embedding_dim is not None and embedding_dim != dim:
            raise ConfigError(
                f"embedding dim {embedding_dim} does not match the {dim}-dimensional vectors of {source}; "
                f"leave it unset or set it to {dim}"
            )
        super().__init__(vocab_size, dim, trainable)
        self.source = source
        self.missing_words = self.init_embeddings(vocab_arr, vectors)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = super().forward(ids)
        if self.trainable:
            # Missing rows are already zero; masking the output zeroes their gradient too, and
            # Adam's update is exactly 0 for an entry whose gradient is always 0.
            out = out * self.known[ids].unsqueeze(-1).to(out.dtype)
        return out

    @torch.no_grad()
    def init_embeddings(self, vocab: Sequence[str] | pa.Array, vectors: Any) -> int:
        """Copy the vector row of every vocabulary word into ``weight``; return how many are missing.

        Words are looked up as given (no lowercasing). Row 0 (padding) is zero and not known.
        """
        vocab_arr = _vocab_array(vocab)
        if len(vocab_arr) != self.vocab_size or vectors.matrix.shape[1] != self.embedding_dim:
            raise ConfigError(
                f"cannot fill a ({self.vocab_size}, {self.embedding_dim}) embedding from {len(vocab_arr)} words "
                f"and {vectors.matrix.shape[1]}-dimensional vectors"
            )
        words = vectors.words
        if isinstance(words, pa.ChunkedArray):
            words = words.combine_chunks()
        if not isinstance(words, pa.Array):
            words = pa.array(words, pa.string())
        if words.type != vocab_arr.type:
            words = words.cast(vocab_arr.type)
        rows = pc.index_in(vocab_arr, value_set=words).fill_null(-1)
        rows = rows.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        rows[PAD_ID] = -1  # padding is a zero row even if the vectors happen to contain "<pad>"
        found = rows >= 0
        matrix = np.asarray(vectors.matrix)
        self.weight.zero_()
        if found.any():
            idx = torch.from_numpy(np.flatnonzero(found))
            self.weight[idx] = torch.from_numpy(np.ascontiguousarray(matrix[rows[found]], dtype=np.float32))
        self.known.copy_(torch.from_numpy(found))
        missing = int(len(rows) - 1 - found.sum())
        if missing:
            log.info(
                "%d of %d vocabulary words are not in %s; they get a zero row and are left out of the mean",
                missing, len(rows) - 1, getattr(vectors, "source", "the word vectors"),
            )
        return missing


class GloVeEmbedding(PretrainedEmbedding):
    """Embedding initialised from GloVe vectors (default: the bundled glove-wiki-gigaword-50).

    Frozen by default (``weight.requires_grad`` False). Missing-word policy: see
    :class:`PretrainedEmbedding` — zero row, excluded from the mean, counted in ``missing_words``.
    ``vectors`` (anything with ``.words`` and ``.matrix``) skips loading ``model_name``.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int | None = None,
        *,
        vocab: Sequence[str] | pa.Array,
        model_name: str = "glove-wiki-gigaword-50",
        trainable: bool = False,
        vectors: Any = None,
    ):
        if vectors is None:
            vectors = _load(model_name)
        super().__init__(vocab_size, embedding_dim, vocab=vocab, vectors=vectors, trainable=trainable)


class FrozenWord2Vec(PretrainedEmbedding):
    """Embedding initialised from any word2vec/GloVe source (``load_vectors(path)``); frozen by default.

    Same missing-word policy as :class:`GloVeEmbedding`.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int | None = None,
        *,
        vocab: Sequence[str] | pa.Array,
        path: str,
        trainable: bool = False,
        vectors: Any = None,
    ):
        if vectors is None:
            vectors = _load(str(path))
        super().__init__(vocab_size, embedding_dim, vocab=vocab, vectors=vectors, trainable=trainable)


REGISTRY: dict[str, type[BaseEmbedding]] = {
    "lookup": LookupEmbedding,
    "word2vec": FrozenWord2Vec,
    "glove": GloVeEmbedding,
}


def build(type: str, vocab_size: int, **cfg: Any) -> BaseEmbedding:
    """Construct the embedding registered as ``type``; ``dim`` is accepted for ``embedding_dim``.

    Unknown types, unexpected or missing options raise :class:`ConfigError`.
    """
    cls = REGISTRY.get(type)
    if cls is None:
        raise ConfigError(f"unknown embedding type {type!r}; valid types: {', '.join(sorted(REGISTRY))}")
    if "dim" in cfg:
        if "embedding_dim" in cfg:
            raise ConfigError("give either 'dim' or 'embedding_dim', not both")
        cfg["embedding_dim"] = cfg.pop("dim")
    params = inspect.signature(cls.__init__).parameters
    valid = [name for name in params if name not in ("self", "vocab_size")]
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ConfigError(
            f"unexpected option {unknown[0]!r} for embedding type {type!r}; valid options: {', '.join(sorted(valid))}"
        )
    missing = [
        name for name in valid
        if params[name].default is inspect.Parameter.empty and name not in cfg
    ]
    if missing:
        raise ConfigError(f"embedding type {type!r} needs option {missing[0]!r}")
    return cls(vocab_size, **cfg)


def from_config(config: Any, vocab: Sequence[str] | pa.Array, *, vectors: Any = None, seed: int | None = None) -> BaseEmbedding:
    """Build from an :class:`~glovefaiss.config.EmbeddingConfig` (``model_name`` is the path for word2vec)."""
    n = len(vocab)
    if config.type == "lookup":
        if config.dim is None:
            raise ConfigError("embedding.dim is required for embedding type 'lookup'")
        return build("lookup", n, embedding_dim=config.dim, trainable=config.trainable, seed=seed)
    if config.type == "word2vec":
        return build("word2vec", n, embedding_dim=config.dim, vocab=vocab, path=config.model_name,
                     trainable=config.trainable, vectors=vectors)
    if config.type == "glove":
        return build("glove", n, embedding_dim=config.dim, vocab=vocab, model_name=config.model_name,
                     trainable=config.trainable, vectors=vectors)
    return build(config.type, n)  # raises the unknown-type error


def _vocab_array(vocab: Sequence[str] | pa.Array) -> pa.Array:
    if isinstance(vocab, pa.ChunkedArray):
        vocab = vocab.combine_chunks()
    arr = vocab if isinstance(vocab, pa.Array) else pa.array(list(vocab), pa.string())
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    if len(arr) == 0 or arr[0].as_py() != PAD:
        first = arr[0].as_py() if len(arr) else None
        raise ConfigError(f"vocabulary entry 0 must be the padding token {PAD!r}, got {first!r}")
    return arr


def _load(source: str) -> Any:
    # Imported here: vectors.py pulls in file readers that model code should not need at import.
    from ..vectors.sources import load_vectors

    return load_vectors(source)
