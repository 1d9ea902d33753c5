"""Torch towers over embedded tokens; they compute what :func:`glovefaiss.pooling.mean_pool` does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .errors import ConfigError


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
        counts = mask.sum(dim=1, keepdim=True)
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
