"""Torch towers over embedded tokens; they compute what :func:`glovefaiss.pooling.mean_pool` does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError


class AveragePoolingTower(nn.Module):
    """Masked mean of token vectors, then dropout (training only), then an optional linear projection.

    Invalid tokens (padding, missing words) are left out of the sum and the count. A row with
    no valid token gives a zero vector, also after the projection (no bias leaks in), as in
    ``pooling.mean_pool``. No normalisation here: losses and inference normalise.
    """

    def __init__(self, embedding_dim: int, output_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ConfigError(f"embedding_dim must be a positive integer, got {embedding_dim!r}")
        if output_dim is not None and (not isinstance(output_dim, int) or output_dim < 1):
            raise ConfigError(f"output_dim must be a positive integer or None, got {output_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        self.embedding_dim = embedding_dim
        self.output_dim = output_dim if output_dim is not None else embedding_dim
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(embedding_dim, output_dim) if output_dim is not None else None

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, D) float vectors and (B, L) bool mask → (B, output_dim)."""
        if embedded.dim() != 3 or embedded.shape[-1] != self.embedding_dim:
            raise ValueError(f"expected embedded of shape (B, L, {self.embedding_dim}), got {tuple(embedded.shape)}")
        if mask.shape != embedded.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match embedded {tuple(embedded.shape[:2])}")
        mask = mask.to(torch.bool)
        # where, not multiply: a NaN/inf in an invalid slot must not reach the sum.
        summed = torch.where(mask.unsqueeze(-1), embedded, embedded.new_zeros(())).sum(dim=1)
        return self.finish(summed, mask.sum(dim=1, keepdim=True))

    def finish(self, summed: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """(B, D) sums of valid token vectors and (B, 1) their counts → (B, output_dim), as :meth:`forward`."""
        nonempty = counts > 0
        pooled = summed / counts.clamp(min=1).to(summed.dtype)
        pooled = self.dropout(pooled)
        if self.projection is not None:
            pooled = torch.where(nonempty, self.projection(pooled), pooled.new_zeros(()))
        return pooled

    def export(self) -> dict[str, np.ndarray | None]:
        """``projection`` (float32 (out, D)) and ``bias`` (float32 (out,)), or None without projection."""
        if self.projection is None:
            return {"projection": None, "bias": None}
        return {
            "projection": self.projection.weight.detach().cpu().numpy().astype(np.float32, copy=True),
            "bias": self.projection.bias.detach().cpu().numpy().astype(np.float32, copy=True),
        }


def pad_batch(id_lists: Sequence[Sequence[int]]) -> torch.Tensor:
    """Stack id lists into a LongTensor (B, Lmax), right-padded with 0 (the padding id)."""
    lengths = [len(ids) for ids in id_lists]
    out = torch.zeros(len(id_lists), max(lengths, default=0), dtype=torch.long)
    for i, ids in enumerate(id_lists):
        if lengths[i]:
            out[i, : lengths[i]] = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    if out.numel() and int(out.min()) < 0:
        raise ValueError("token ids must be non-negative")
    return out


ARCHS = ("avg_pool",)


class TwoTower(nn.Module):
    """A query tower and a document tower, each ``embedding → AveragePoolingTower``.

    ``encode_query(ids)`` / ``encode_document(ids)`` take a LongTensor (B, L) of model
    vocabulary ids (0 = padding) and return L2-normalised (B, dim) vectors, so a dot product
    is a cosine. Tied towers are one set of modules used twice (``document_embedding is
    query_embedding``): every weight is shared. Untied towers own separate copies.
    """

    def __init__(self, query_embedding: nn.Module, query_tower: AveragePoolingTower,
                 document_embedding: nn.Module | None = None, document_tower: AveragePoolingTower | None = None):
        super().__init__()
        if (document_embedding is None) != (document_tower is None):
            raise ConfigError("give both document_embedding and document_tower (untied) or neither (tied)")
        self.query_embedding = query_embedding
        self.query_tower = query_tower
        # Registered under both names even when tied: nn.Module keeps one parameter per object,
        # so parameters() lists each shared weight once.
        self.document_embedding = document_embedding if document_embedding is not None else query_embedding
        self.document_tower = document_tower if document_tower is not None else query_tower

    @property
    def tied(self) -> bool:
        return self.document_embedding is self.query_embedding and self.document_tower is self.query_tower

    @property
    def dim(self) -> int:
        return self.query_tower.output_dim

    @staticmethod
    def _encode(embedding: nn.Module, tower: AveragePoolingTower, inputs) -> torch.Tensor:
        ids = inputs if isinstance(inputs, torch.Tensor) else pad_batch(inputs)
        if ids.dim() != 2:
            raise ValueError(f"expected token ids of shape (B, L), got {tuple(ids.shape)}")
        pooled = tower(embedding(ids), embedding.valid_mask(ids))
        return torch.nn.functional.normalize(pooled, dim=-1)

    @staticmethod
    def _encode_bags(embedding: nn.Module, tower: AveragePoolingTower, ids: torch.Tensor,
                     lengths: torch.Tensor) -> torch.Tensor:
        # Sums by embedding_bag: no (B, L, D) padded tensor, so long documents cost their tokens only.
        valid = embedding.valid_mask(ids).to(embedding.weight.dtype)
        offsets = torch.cumsum(lengths, 0) - lengths
        summed = torch.nn.functional.embedding_bag(ids, embedding.weight, offsets, mode="sum",
                                                   per_sample_weights=valid)
        bag = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        counts = torch.zeros(len(lengths), dtype=valid.dtype).index_add_(0, bag, valid)
        return torch.nn.functional.normalize(tower.finish(summed, counts.unsqueeze(1)), dim=-1)

    def encode_query_bags(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """As :meth:`encode_query`, for texts given as flat ids (N,) and their lengths (B,) (sum N)."""
        return self._encode_bags(self.query_embedding, self.query_tower, ids, lengths)

    def encode_document_bags(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """As :meth:`encode_document`, for flat ids (N,) and lengths (B,)."""
        return self._encode_bags(self.document_embedding, self.document_tower, ids, lengths)

    def encode_query(self, inputs) -> torch.Tensor:
        """L2-normalised query vectors (B, dim) for ids (B, L) or a list of id lists."""
        return self._encode(self.query_embedding, self.query_tower, inputs)

    def encode_document(self, inputs) -> torch.Tensor:
        """L2-normalised document vectors (B, dim) for ids (B, L) or a list of id lists."""
        return self._encode(self.document_embedding, self.document_tower, inputs)

    def forward(self, query, document, negative=None):
        """``(q, d)`` or ``(q, d, n)`` vectors: the query side through the query tower, the rest through the document tower."""
        out = (self.encode_query(query), self.encode_document(document))
        if negative is not None:
            out += (self.encode_document(negative),)
        return out

    def export(self) -> dict[str, dict]:
        """``{"query": ..., "document": ...}``, each ``{"matrix", "known", "projection", "bias"}`` as numpy copies."""
        out = {}
        for side, emb, tower in (("query", self.query_embedding, self.query_tower),
                                 ("document", self.document_embedding, self.document_tower)):
            matrix, known = emb.export()
            out[side] = {"matrix": matrix, "known": known, **tower.export()}
        return out


@torch.no_grad()
def _init_projection(projection: nn.Linear, generator: torch.Generator) -> None:
    """Start near the frozen baseline: identity when square, a random semi-orthogonal map otherwise."""
    out_dim, in_dim = projection.weight.shape
    if out_dim == in_dim:
        projection.weight.copy_(torch.eye(out_dim))
    else:
        a = torch.randn(max(out_dim, in_dim), min(out_dim, in_dim), generator=generator)
        q, _ = torch.linalg.qr(a)
        projection.weight.copy_(q if out_dim > in_dim else q.T)
    projection.bias.zero_()


def build_two_tower(embedding: nn.Module, arch: str = "avg_pool", hidden_dim: int | None = None,
                    tied_weights: bool = True, dropout: float = 0.0, *, seed: int = 0,
                    remove_components: np.ndarray | None = None) -> TwoTower:
    """A :class:`TwoTower` over ``embedding`` (a :class:`~glovefaiss.embeddings.BaseEmbedding`), as the ``encoder:`` config says.

    ``hidden_dim`` None: the mean is the output; otherwise a linear projection to ``hidden_dim``,
    initialised to the identity when ``hidden_dim`` equals the embedding size (training starts
    from the plain GloVe mean) and to a random semi-orthogonal map otherwise. ``tied_weights``
    False gives the document tower its own deep copy of the embedding and projection.
    ``dropout`` acts on the pooled vector in training mode only. ``remove_components`` (k, D)
    unit rows ``U``: the projection starts as ``W0 (I - U^T U)``, i.e. it first removes the mean's
    projection on those common components (SIF's last step), then maps as above.
    """
    import copy

    if arch not in ARCHS:
        raise ConfigError(f"unknown encoder arch {arch!r}; valid archs: {', '.join(ARCHS)}")
    dim = int(embedding.embedding_dim)
    generator = torch.Generator().manual_seed(seed)
    tower = AveragePoolingTower(dim, output_dim=hidden_dim, dropout=dropout)
    if tower.projection is not None:
        _init_projection(tower.projection, generator)
        if remove_components is not None:
            u = torch.as_tensor(np.asarray(remove_components, dtype=np.float32))
            with torch.no_grad():
                tower.projection.weight.copy_(tower.projection.weight @ (torch.eye(dim) - u.T @ u))
    elif remove_components is not None:
        raise ConfigError("removing common components needs a projection: give a hidden_dim")
    if tied_weights:
        return TwoTower(embedding, tower)
    return TwoTower(embedding, tower, copy.deepcopy(embedding), copy.deepcopy(tower))
