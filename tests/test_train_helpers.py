"""Tiny seeded synthetic training data over the conftest vocabulary (shared by the training tests)."""

from __future__ import annotations

import numpy as np

from glovefaiss.config import Config
from glovefaiss.train.data import PairData, ScoredData

TOPICS = [
    ["cat", "kitten", "mat", "yarn", "played", "sat"],
    ["stock", "market", "fell", "sharply", "rates", "rise"],
    ["dog", "barked", "loudly", "the", "on"],
    ["river", "boat", "bank"],
]


def tiny_config(vectors_path, **over) -> Config:
    base = {"embedding.model_name": str(vectors_path), "batch_size": 8, "epochs": 3, "optimizer.lr": 0.05,
            "loss.margin": 0.3}
    base.update(over)
    return Config().replace(base)


def triplets(n: int = 48, seed: int = 0) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        t, o = rng.choice(len(TOPICS), 2, replace=False)
        q = " ".join(rng.choice(TOPICS[t], 2))
        p = " ".join(rng.choice(TOPICS[t], 3))
        neg = " ".join(rng.choice(TOPICS[o], 3))
        rows.append((q, p, neg))
    return rows


def pair_data(n: int = 48, seed: int = 0, negatives: bool = True) -> PairData:
    rows = triplets(n, seed)
    return PairData.from_triplets(rows if negatives else [r[:2] for r in rows], source="synthetic")


def scored_data(n: int = 64, seed: int = 0) -> ScoredData:
    """Pairs from the same topic score 5, from different topics 0, with a little noise in between."""
    rng = np.random.default_rng(seed)
    first, second, scores = [], [], []
    for _ in range(n):
        t = int(rng.integers(len(TOPICS)))
        same = rng.random() < 0.5
        o = t if same else int((t + 1 + rng.integers(len(TOPICS) - 1)) % len(TOPICS))
        first.append(" ".join(rng.choice(TOPICS[t], 3)))
        second.append(" ".join(rng.choice(TOPICS[o], 3)))
        scores.append(float(4 + rng.random()) if same else float(rng.random()))
    return ScoredData(first, second, np.asarray(scores), "synthetic-scored")
