"""Similarity quality of a tower: Pearson and Spearman (x100) between gold scores of sentence
pairs and the cosine of the two sentences' vectors (0 when either has no known word)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..io.scored import read_scored
from ..tower.encoder import TextEncoder
from .metrics import EvalError, pair_cosines, pearson, spearman
from .retrieval import Report


def read_pairs(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(sentence1, sentence2, scores) of a pairs file (:func:`~glovefaiss.io.scored.read_scored`)."""
    try:
        return read_scored(path)
    except DataError as e:
        raise EvalError(str(e)) from None


def cosines(encoder: TextEncoder, a: Sequence[str], b: Sequence[str],
            document_encoder: TextEncoder | None = None) -> np.ndarray:
    """Cosine of each pair's vectors (0 when either has no known word); ``b`` through
    ``document_encoder`` when given (a trained model's document tower)."""
    return pair_cosines(encoder.encode(a), (document_encoder or encoder).encode(b))


def evaluate_sts(encoder: TextEncoder, a: Sequence[str], b: Sequence[str], gold: Sequence[float],
                 name: str = "", document_encoder: TextEncoder | None = None) -> Report:
    """Pearson and Spearman (x100) of gold scores against pair cosines (see :func:`cosines`)."""
    t = time.perf_counter()
    cos = cosines(encoder, a, b, document_encoder)
    seconds = time.perf_counter() - t
    return Report("sts", name, {"pearson": 100 * pearson(gold, cos), "spearman": 100 * spearman(gold, cos)},
                  {"pairs": len(gold), "zero_cosine_pairs": int(np.sum(cos == 0))}, {"encode_s": round(seconds, 4)})


def sts_encoder(config, sentences: Iterable[str], vectors=None) -> tuple[TextEncoder, dict[str, Any]]:
    """The config's tower, with its SIF weights and components fitted on ``sentences``."""
    from ..tower import sif
    from ..tower.encoder import encoder_from_config

    encoder, _ = encoder_from_config(config, vectors)
    return sif.prepare_for_texts(encoder, config.pooling, list(sentences), seed=config.seed)
