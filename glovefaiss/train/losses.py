"""Training losses over L2-normalised query/document vectors, chosen by ``loss.type``.

* ``triplet``: ``max(0, d(q, p) - d(q, n) + margin)`` with cosine distance ``d = 1 - cos``.
* ``contrastive``: in-batch negatives (InfoNCE / multiple-negatives ranking): a softmax over
  ``cos(q_i, d_j) / temperature`` for every document of the batch (positives, plus explicit
  negatives when given); the target is the query's own positive. Pairs that share a query or a
  positive document are not used as each other's negatives. ``symmetric`` averages it with the
  document → query softmax over the batch's queries.
* ``cosine``: regression of ``cos(a, b)`` onto graded scores scaled to [0, 1] (STS-style), MSE.
* ``cosent``: a ranking loss for graded scores (CoSENT): every pair of pairs whose gold scores
  differ must be ordered the same way by their cosines; ``temperature`` scales the cosines.

``loss.spread`` (scored losses only) adds ``spread * spread_penalty(a, b)``: sentences of
different pairs in a batch are pushed towards cosine 0. Graded pairs mostly share a topic, so
the pair losses alone rarely see two unrelated sentences and let them drift together (STS-B test:
random sentence pairs went from mean cosine 0.10 to 0.16 under cosine regression, 0.03 with
the penalty; docs/training.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

LOSSES = ("triplet", "contrastive", "cosine", "cosent")
SCORED_LOSSES = ("cosine", "cosent")


class TripletLoss(nn.Module):
    needs_negatives = True

    def __init__(self, margin: float = 0.3):
        super().__init__()
        self.margin = float(margin)

    def forward(self, q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, **_) -> torch.Tensor:
        d_pos = 1.0 - (q * p).sum(-1)
        d_neg = 1.0 - (q * n).sum(-1)
        return F.relu(d_pos - d_neg + self.margin).mean()


def _same(keys: torch.Tensor | None, size: int) -> torch.Tensor:
    if keys is None:
        return torch.zeros(size, size, dtype=torch.bool)
    return keys.unsqueeze(1) == keys.unsqueeze(0)


class InBatchNegativesLoss(nn.Module):
    needs_negatives = False

    def __init__(self, temperature: float = 0.05, symmetric: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"loss.temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.symmetric = bool(symmetric)

    def forward(self, q: torch.Tensor, p: torch.Tensor, n: torch.Tensor | None = None, *,
                query_keys: torch.Tensor | None = None, doc_keys: torch.Tensor | None = None,
                neg_keys: torch.Tensor | None = None, **_) -> torch.Tensor:
        """``query_keys``/``doc_keys``/``neg_keys`` (int64 (B,)) identify texts, to mask false negatives."""
        b = q.shape[0]
        logits = q @ p.T / self.temperature
        # Another row's positive is not a negative when it is the same document or its query is ours.
        false_neg = (_same(doc_keys, b) | _same(query_keys, b)) & ~torch.eye(b, dtype=torch.bool)
        logits = logits.masked_fill(false_neg, float("-inf"))
        # Symmetric: each positive must also pick out its own query among the batch's queries.
        back = F.cross_entropy(logits.T, torch.arange(b)) if self.symmetric else None
        if n is not None:
            neg_logits = q @ n.T / self.temperature
            if doc_keys is not None and neg_keys is not None:
                neg_logits = neg_logits.masked_fill(doc_keys.unsqueeze(1) == neg_keys.unsqueeze(0), float("-inf"))
            logits = torch.cat([logits, neg_logits], dim=1)
        loss = F.cross_entropy(logits, torch.arange(b))
        return loss if back is None else 0.5 * (loss + back)


def spread_penalty(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared cosine between the 2B sentences of a batch of pairs ``(a_i, b_i)``, over
    every two sentences of different pairs (a sentence with itself or its partner is left out)."""
    v = torch.cat([a, b])
    size = v.shape[0]
    if size < 4:  # one pair: no sentences of different pairs
        return v.new_zeros(())
    idx = torch.arange(size)
    other = torch.ones(size, size, dtype=torch.bool)
    other[idx, idx] = False
    other[idx, (idx + a.shape[0]) % size] = False
    return (v @ v.T)[other].pow(2).mean()


class _Scored(nn.Module):
    needs_negatives = False

    def __init__(self, spread: float = 0.0):
        super().__init__()
        if spread < 0:
            raise ConfigError(f"loss.spread must be 0 or more, got {spread}")
        self.spread = float(spread)

    def forward(self, a: torch.Tensor, b: torch.Tensor, n=None, *, scores: torch.Tensor, **_) -> torch.Tensor:
        loss = self.pairs_loss(a, b, scores)
        return loss + self.spread * spread_penalty(a, b) if self.spread else loss


class CosineRegressionLoss(_Scored):
    def pairs_loss(self, a: torch.Tensor, b: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return F.mse_loss((a * b).sum(-1), scores)


class CoSENTLoss(_Scored):
    def __init__(self, temperature: float = 0.05, spread: float = 0.0):
        super().__init__(spread)
        self.temperature = float(temperature)

    def pairs_loss(self, a: torch.Tensor, b: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cos = (a * b).sum(-1) / self.temperature
        diff = cos.unsqueeze(0) - cos.unsqueeze(1)  # [i, j] = cos_j - cos_i: a loss when gold_i > gold_j
        diff = diff.masked_fill(~(scores.unsqueeze(1) > scores.unsqueeze(0)), float("-inf"))
        return torch.logsumexp(torch.cat([diff.new_zeros(1), diff.flatten()]), dim=0)


def from_config(config) -> nn.Module:
    """The loss of a :class:`~glovefaiss.config.LossConfig`."""
    if config.type not in LOSSES:
        raise ConfigError(f"unknown loss type {config.type!r}; valid types: {', '.join(LOSSES)}")
    spread = float(config.spread)
    if spread and config.type not in SCORED_LOSSES:
        raise ConfigError(f"loss.spread applies to scored pairs (loss.type {' or '.join(SCORED_LOSSES)}), "
                          f"not {config.type}; set loss.spread to 0 (or leave out --spread)")
    if config.type == "triplet":
        return TripletLoss(config.margin)
    if config.type == "contrastive":
        return InBatchNegativesLoss(config.temperature, config.symmetric)
    if config.type == "cosine":
        return CosineRegressionLoss(spread)
    return CoSENTLoss(config.temperature, spread)
