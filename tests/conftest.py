"""Shared fixtures: tiny seeded word vectors and corpora written to real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from .helpers import WORDS, random_texts, write_corpus, write_glove_text


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Parsed-vectors caches go to a per-session temp dir, never to the user's ~/.cache.
    monkeypatch.setenv("GLOVEFAISS_CACHE", str(tmp_path_factory.getbasetemp() / "glovefaiss-cache"))


@pytest.fixture
def tiny_vectors(tmp_path) -> tuple[Path, list[str], np.ndarray]:
    """(path, words, matrix) of a 20-word, 8-dimensional GloVe text file."""
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((len(WORDS), 8)).astype(np.float32)
    path = write_glove_text(tmp_path / "tiny.glove.txt", WORDS, matrix)
    return path, list(WORDS), matrix


@pytest.fixture
def tiny_corpus(tmp_path) -> tuple[Path, list[int], list[str]]:
    texts = [
        "The cat sat on the mat.",
        "The dog barked loudly!",
        "Stock market fell sharply.",
        "A kitten played with yarn.",
        "The bank of the river, a boat.",
        "Rates rise; the bank...",
        "",
        "Xylophones!",
    ]
    ids = [10, 11, 12, 13, 14, 15, 16, 17]
    return write_corpus(tmp_path / "corpus.parquet", ids, texts, pa.int64()), ids, texts


@pytest.fixture
def random_setup(tmp_path):
    """300 words with random 16-d vectors (a GloVe text file) and 997 random texts over them."""
    rng = np.random.default_rng(11)
    words = [f"w{i}" for i in range(300)]
    matrix = rng.standard_normal((300, 16)).astype(np.float32)
    vec_path = write_glove_text(tmp_path / "vecs.txt", words, matrix)
    texts = random_texts(rng, 997, words, oov_rate=0.1)
    return rng, words, matrix, vec_path, texts
