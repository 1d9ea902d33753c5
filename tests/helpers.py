"""Helpers shared by the tests: tiny seeded vocabularies, texts, corpora and training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from glovefaiss.config import Config
from glovefaiss.train.data import PairData, ScoredData

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "barked", "loudly", "stock", "market",
         "fell", "sharply", "kitten", "played", "yarn", "rates", "rise", "bank", "river", "boat"]


def write_glove_text(path: Path, words: list[str], matrix: np.ndarray) -> Path:
    """A Stanford GloVe text file (no header), with values written exactly."""
    with open(path, "w", encoding="utf-8") as f:
        for w, row in zip(words, matrix):
            f.write(w + " " + " ".join(repr(float(x)) for x in row) + "\n")
    return path


def topic_vectors(rng: np.random.Generator, dim: int, topics: int, per_topic: int,
                  spread: float) -> tuple[list[str], list[np.ndarray]]:
    """Words ``t{topic}w{j}`` whose vectors cluster round one random centre per topic."""
    centres = rng.standard_normal((topics, dim))
    words, rows = [], []
    for t in range(topics):
        for j in range(per_topic):
            words.append(f"t{t}w{j}")
            rows.append(centres[t] + spread * rng.standard_normal(dim))
    return words, rows


def random_texts(rng: np.random.Generator, n: int, words: list[str], oov_rate: float = 0.1) -> list[str]:
    texts = []
    for _ in range(n):
        k = int(rng.integers(0, 12))
        toks = [words[i] if rng.random() > oov_rate else f"zz{i}q" for i in rng.integers(0, len(words), k)]
        texts.append(" ".join(t.capitalize() if rng.random() < 0.2 else t for t in toks) + rng.choice(["", ".", "!"]))
    return texts


def write_corpus(path: Path, ids, texts, id_type=None) -> Path:
    pq.write_table(pa.table({"id": pa.array(ids, id_type), "text": pa.array(texts, pa.string())}), path)
    return path


def config_for(vectors_path, **build_opts) -> Config:
    """The default config over the vectors at ``vectors_path``, with ``build`` options."""
    return Config().replace({"embedding.model_name": str(vectors_path), **{f"build.{k}": v for k, v in build_opts.items()}})


def reference_vector(text, words, matrix):
    """Independent reference: lowercase, split on non-alphanumerics, mean of known words, normalise."""
    import re

    index = {w: i for i, w in enumerate(words)}
    rows = [index[t] for t in re.split(r"[^0-9a-z]+", text.lower()) if t in index]
    if not rows:
        return np.zeros(matrix.shape[1], np.float32)
    v = matrix[rows].mean(axis=0)
    return v / np.linalg.norm(v)


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


def make_two_tower(tiny_vectors, data, trainable=True, hidden_dim=None, tied=True, dropout=0.0, **over):
    """(TwoTower, Tokenizer, Config, vectors) over the tiny vectors for ``data`` (imports torch)."""
    from glovefaiss.train.data import Tokenizer
    from glovefaiss.train.embeddings import GloVeEmbedding
    from glovefaiss.train.towers import build_two_tower
    from glovefaiss.vectors.sources import load_vectors

    config = tiny_config(tiny_vectors[0], **{"embedding.trainable": trainable, "encoder.hidden_dim": hidden_dim,
                                            "encoder.tied_weights": tied, "encoder.dropout": dropout, **over})
    vectors = load_vectors(str(tiny_vectors[0]))
    tok = Tokenizer.build(data.texts(), config.tokeniser, vectors)
    emb = GloVeEmbedding(len(tok), vocab=tok.words, vectors=vectors, trainable=trainable)
    model = build_two_tower(emb, hidden_dim=hidden_dim, tied_weights=tied, dropout=dropout)
    return model, tok, config, vectors


# Two small corpora for the service's tests: ``TEXTS`` (int ids) and ``NEW_TEXTS`` (string ids).
TEXTS = ["The cat sat on the mat.", "The dog barked loudly!", "Stock market fell sharply.",
         "A kitten played with yarn.", "The bank of the river, a boat.", "Rates rise; the bank...", "", "Xylophones!"]
NEW_TEXTS = ["A boat on the river.", "The market rates rise.", "Cat and dog.", "Kitten, yarn, mat.",
             "Stock fell.", "The bank barked.", "River bank boat.", "Loudly played.", "Sat on the boat.",
             "Rates fell sharply.", "Dog on the mat.", "Market boat river."]


def served_indexes(root: Path) -> dict:
    """Tiny vectors and two built index directories under ``root``: ``ints`` (int64 ids), ``strs`` (string ids)."""
    import pytest

    from glovefaiss.index.build import build

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLOVEFAISS_CACHE", str(root / "cache"))
        rng = np.random.default_rng(7)
        vectors = write_glove_text(root / "tiny.glove.txt", WORDS, rng.standard_normal((len(WORDS), 8)).astype(np.float32))
        ints = write_corpus(root / "ints.parquet", list(range(10, 10 + len(TEXTS))), TEXTS, pa.int64())
        strs = write_corpus(root / "strs.parquet", [f"doc-{i}" for i in range(len(NEW_TEXTS))], NEW_TEXTS, pa.string())
        build([ints], root / "ints", config_for(vectors), progress=False)
        build([strs], root / "strs", config_for(vectors), progress=False)
    return {"root": root, "vectors": vectors, "ints": root / "ints", "strs": root / "strs"}


def run_example(name: str) -> list[str]:
    """Run ``examples/NAME`` in a fresh interpreter (offline, as a user would) and return its stdout lines."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "examples" / name)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()
