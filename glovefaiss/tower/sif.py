"""Weighted pooling: SIF word weights and common-component removal, fitted before a build.

SIF (Arora, Liang and Ma 2017, "A Simple but Tough-to-Beat Baseline for Sentence Embeddings")
gives word ``w`` the weight ``a / (a + p(w))``: frequent words count for little, rare ones for
almost 1. A text's vector is ``sum(weight * vector) / number_of_known_words`` (the SIF paper's
and fse's form; after L2 normalisation only the direction matters, but the common components
are estimated on these unnormalised vectors). Common-component removal then subtracts each
vector's projection on the top ``k`` principal components (uncentred, as SIF's truncated SVD)
of the document vectors.

Both are fitted here, once, and stored with the tower (``weights.npy``, ``components.npy`` in
``query_tower/``), so documents at build time and queries at search time get the same
transform. The fit is deterministic: word probabilities come from a named source, and the
components from a seeded uniform sample of the corpus; a resumed build recomputes the same
arrays and so recognises its journalled shards.

``p(w)`` sources (``pooling.frequencies``):

- ``wordfreq`` / ``wordfreq:LANG``: the ``wordfreq`` package's frequency list (``best`` list,
  English by default), shipped in its wheel. A vocabulary word missing from the list gets
  frequency 1e-8 (as fse); ``p`` is normalised over the vocabulary.
- ``corpus``: counts of each vocabulary word among the known tokens of the corpus being
  indexed, tokenised as for encoding (one extra reading pass over the corpus).
- ``rank``: Zipf's law over the vector file's row order, ``p(w)`` proportional to ``1 / row``
  (row counted from 1), normalised over the vocabulary. No frequency list and no pass over the
  corpus: the Stanford GloVe files are sorted by corpus count (Spearman -0.75 between row number
  and wordfreq frequency over GloVe 6B's first 10k rows, -0.54 over all 400k; docs/training.md).
  For vectors that are not frequency-ordered it is meaningless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import PoolingConfig
from ..errors import ConfigError
from .encoder import TextEncoder
from .pooling import l2_normalize

logger = logging.getLogger(__name__)

WEIGHTINGS = ("mean", "sif")
MISSING_FREQUENCY = 1e-8  # wordfreq's floor for words it does not list (fse uses the same)

TextBatches = Callable[[], Iterable[pa.Array]]  # called once per pass: string arrays in corpus order


def check(cfg: PoolingConfig) -> None:
    """Raise :class:`ConfigError` for an invalid ``pooling`` section."""
    if cfg.weighting not in WEIGHTINGS:
        raise ConfigError(f"pooling.weighting must be one of {', '.join(WEIGHTINGS)}, got {cfg.weighting!r}")
    if not cfg.sif_a > 0:
        raise ConfigError(f"pooling.sif_a must be positive, got {cfg.sif_a!r}")
    if cfg.frequencies not in ("corpus", "rank") and cfg.frequencies.split(":")[0] != "wordfreq":
        raise ConfigError(f"pooling.frequencies must be wordfreq, wordfreq:LANG, corpus or rank, got {cfg.frequencies!r}")
    if cfg.components < 0:
        raise ConfigError(f"pooling.components must be 0 or more, got {cfg.components}")
    if cfg.components_sample < 1:
        raise ConfigError(f"pooling.components_sample must be at least 1, got {cfg.components_sample}")


def is_active(cfg: PoolingConfig) -> bool:
    return cfg.weighting != "mean" or cfg.components > 0


# --- SIF weights ---------------------------------------------------------------------------------

def wordfreq_frequencies(words: Iterable[str], lang: str = "en") -> np.ndarray:
    """Frequency of each word in wordfreq's ``best`` list for ``lang`` (1e-8 where it has none)."""
    try:
        import wordfreq
    except ImportError:
        raise ConfigError("pooling.frequencies: wordfreq needs the wordfreq package: "
                          "pip install wordfreq (or glovefaiss[quality])") from None
    if lang not in wordfreq.available_languages(wordlist="best"):
        raise ConfigError(f"pooling.frequencies: wordfreq has no frequency list for language {lang!r}")
    table = wordfreq.get_frequency_dict(lang, wordlist="best")
    get = table.get
    return np.fromiter((get(w, MISSING_FREQUENCY) for w in words), dtype=np.float64)


def rank_frequencies(n_words: int) -> np.ndarray:
    """Zipf frequencies ``1 / rank`` of ``n_words`` frequency-ordered rows (unnormalised, float64)."""
    return 1.0 / np.arange(1, n_words + 1, dtype=np.float64)


def sif_weights(frequencies: np.ndarray, a: float = 1e-3) -> np.ndarray:
    """``a / (a + p(w))`` with ``p`` the frequencies normalised to sum 1; float32.

    All-zero frequencies (an empty corpus) give weight 1 everywhere.
    """
    f = np.asarray(frequencies, dtype=np.float64)
    total = f.sum()
    p = f / total if total > 0 else np.zeros_like(f)
    return (a / (a + p)).astype(np.float32)


def count_words(encoder: TextEncoder, batches: Iterable[pa.Array]) -> np.ndarray:
    """How often each vocabulary word occurs among the tokens of ``batches`` (int64, one per word)."""
    counts = np.zeros(len(encoder.vocabulary), dtype=np.int64)
    for texts in batches:
        known_rows, _, _ = encoder.pooled_ids(texts)
        counts += np.bincount(known_rows, minlength=len(counts))
    return counts


# --- common components ---------------------------------------------------------------------------

def sample_rows(num_rows: int, size: int, seed: int) -> np.ndarray:
    """Sorted row numbers of a seeded uniform sample of ``size`` rows (all rows if fewer)."""
    if num_rows <= size:
        return np.arange(num_rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_rows, size=size, replace=False)).astype(np.int64)


def sampled(batches: Iterable[pa.Array], rows: np.ndarray) -> Iterator[pa.Array]:
    """The texts at the (sorted) row numbers ``rows``, batch by batch."""
    start = 0
    for texts in batches:
        n = len(texts)
        lo, hi = np.searchsorted(rows, [start, start + n])
        if hi > lo:
            yield texts.take(pa.array(rows[lo:hi] - start))
        start += n


def gram(encoder: TextEncoder, batches: Iterable[pa.Array]) -> tuple[np.ndarray, int]:
    """(``X.T @ X`` in float64, rows) of the unnormalised vectors ``X`` of ``batches``."""
    g = np.zeros((encoder.dim, encoder.dim), dtype=np.float64)
    n = 0
    for texts in batches:
        x = encoder.encode_unnormalized(texts).astype(np.float64)
        g += x.T @ x
        n += len(x)
    return g, n


def top_components(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(top-``k`` eigenvectors of the Gram matrix as float32 rows, their eigenvalues), largest first.

    These are the first right singular vectors of X (SIF's uncentred truncated SVD). Each
    vector's sign is fixed (largest entry positive) so the stored array is reproducible.
    """
    if not 0 < k <= g.shape[0]:
        raise ConfigError(f"pooling.components must be between 1 and the vector size {g.shape[0]}, got {k}")
    values, vectors = np.linalg.eigh(g)
    order = np.argsort(values)[::-1][:k]
    comps = vectors[:, order].T.copy()
    flip = comps[np.arange(k), np.abs(comps).argmax(axis=1)] < 0
    comps[flip] *= -1
    return comps.astype(np.float32), values[order]


# --- everything a build needs ----------------------------------------------------------------------

def fit(encoder: TextEncoder, cfg: PoolingConfig, batches: TextBatches, num_rows: int, seed: int = 0
        ) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """(SIF weights, one per vocabulary word, or None; components (k, dim) or None; a summary for
    the manifest), as ``cfg`` asks, fitted on the texts of ``batches``.

    ``batches()`` streams the texts (it is called once per pass: once for ``corpus``
    frequencies, once to encode the components sample). ``num_rows`` is their number. The
    components are those of the weighted vectors. The build fits its tower with this and
    training its initial model (:mod:`glovefaiss.train.fit`).
    """
    check(cfg)
    info: dict[str, Any] = {"weighting": cfg.weighting}
    t0 = time.perf_counter()
    weights = None
    if cfg.weighting == "sif":
        if cfg.frequencies == "corpus":
            freqs = count_words(encoder, batches()).astype(np.float64)
            info["corpus_tokens_counted"] = int(freqs.sum())
        elif cfg.frequencies == "rank":
            freqs = rank_frequencies(len(encoder.vocabulary))
        else:
            lang = cfg.frequencies.partition(":")[2] or "en"
            freqs = wordfreq_frequencies(encoder.vocabulary.words.to_pylist(), lang)
        weights = sif_weights(freqs, cfg.sif_a)
        info.update({"sif_a": cfg.sif_a, "frequencies": cfg.frequencies,
                     "weights_min": round(float(weights.min()), 6), "weights_mean": round(float(weights.mean()), 6)})
    comps = None
    if cfg.components > 0:
        rows = sample_rows(num_rows, cfg.components_sample, seed)
        g, n = gram(encoder.with_pooling(weights=weights), sampled(batches(), rows))
        comps, values = top_components(g, cfg.components)
        trace = float(np.trace(g))
        info.update({"components": cfg.components, "components_sample": int(n), "components_seed": seed,
                     "components_energy": round(float(values.sum()) / trace, 6) if trace > 0 else 0.0})
    info["fit_s"] = round(time.perf_counter() - t0, 3)
    return weights, comps, info


def prepare(encoder: TextEncoder, cfg: PoolingConfig, batches: TextBatches, num_rows: int, seed: int = 0
            ) -> tuple[TextEncoder, dict[str, Any]]:
    """The encoder with the weights and components ``cfg`` asks for (see :func:`fit`), and the summary."""
    weights, comps, info = fit(encoder, cfg, batches, num_rows, seed)
    return encoder.with_pooling(weights=weights, components=comps), info


def prepare_for_texts(encoder: TextEncoder, cfg: PoolingConfig, texts: list[str], seed: int = 0,
                      batch_size: int = 32768) -> tuple[TextEncoder, dict[str, Any]]:
    """:func:`prepare` over an in-memory list of texts (e.g. the sentences of an STS set)."""
    arr = pa.array(texts, pa.string())

    def batches() -> Iterator[pa.Array]:
        for start in range(0, len(arr), batch_size):
            yield arr.slice(start, batch_size)

    return prepare(encoder, cfg, batches, len(arr), seed)


def anisotropy(vectors: np.ndarray) -> float | None:
    """Mean cosine of the non-zero rows of ``vectors`` to their centroid (a reference, not streaming)."""
    x = l2_normalize(np.array(vectors, dtype=np.float64))
    x = x[np.any(x != 0, axis=1)]
    if not len(x):
        return None
    centroid = x.mean(axis=0)
    norm = np.linalg.norm(centroid)
    return float((x @ centroid).mean() / norm) if norm > 0 else 0.0


__all__ = ["WEIGHTINGS", "anisotropy", "check", "count_words", "fit", "gram", "is_active", "prepare",
           "prepare_for_texts", "rank_frequencies", "sample_rows", "sampled", "sif_weights", "top_components", "wordfreq_frequencies"]
