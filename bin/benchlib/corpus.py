"""Synthetic corpora from the GloVe vocabulary: Zipf-drawn words (``zipf_corpus``) and
topic-structured documents (``topic_corpus``), cached beside a JSON of their parameters."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .env import log

GLOVE = "glove-wiki-gigaword-50"
GENERATOR_VERSION = 1  # bump when a generator changes, so cached corpora are regenerated
GEN_CHUNK_DOCS = 200_000  # documents generated (and written as one row group) at a time


class GenVocab:
    """What the generator draws from: GloVe words (Zipf by GloVe rank) and made-up unknown words."""

    PUNCT = ["", ",", ";", ":", ".", "?", "!"]  # after a word
    WRAP_OPEN = ["", '"', "(", ""]  # before a word
    WRAP_CLOSE = ["", '"', ")", "'s"]  # after a word, before its punctuation

    def __init__(self, words: pa.Array, seed: int, n_fake: int = 20_000, exponent: float = 1.05):
        # Alphabetic-ish GloVe words (letters/digits, at most one inner hyphen or apostrophe), no
        # pure punctuation or number tokens; weight by the word's rank in GloVe (frequency order).
        ok = pc.match_substring_regex(words, r"^[a-z][a-z0-9]*(?:[-'][a-z0-9]+)?$")
        ok = ok.to_numpy(zero_copy_only=False)
        ranks = np.flatnonzero(ok)
        self.known = words.filter(pa.array(ok))
        self.known_cdf = self._cdf(ranks, exponent)
        fake = self._fake_words(np.random.default_rng([seed, 1]), n_fake, words)
        self.fake_cdf = self._cdf(np.arange(len(fake)), exponent)
        base = pa.concat_arrays([self.known.cast(pa.string()), fake])
        self.n_base = len(base)
        # Row i: base word i; row n_base + i: the same word capitalised.
        self.forms = pa.concat_arrays([base, pc.utf8_capitalize(base)])
        self.suffixes = pa.array([c + p for c in self.WRAP_CLOSE for p in self.PUNCT])
        self.prefixes = pa.array(self.WRAP_OPEN)

    @staticmethod
    def _cdf(ranks: np.ndarray, exponent: float) -> np.ndarray:
        p = 1.0 / (ranks.astype(np.float64) + 10.0) ** exponent
        cdf = np.cumsum(p)
        return cdf / cdf[-1]

    @staticmethod
    def _fake_words(rng: np.random.Generator, n: int, vocab: pa.Array) -> pa.Array:
        """``n`` distinct lowercase made-up words of 5-11 letters that GloVe does not have."""
        letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
        out: list[str] = []
        seen: set[str] = set()
        while len(out) < n:
            m = 2 * (n - len(out))
            codes = letters[rng.integers(0, 26, size=(m, 11))]
            lens = rng.integers(5, 12, size=m)
            cand = [bytes(row[:k]).decode() for row, k in zip(codes, lens)]
            known = pc.is_in(pa.array(cand), value_set=vocab).to_numpy(zero_copy_only=False)
            for w, k in zip(cand, known):
                if not k and w not in seen:
                    seen.add(w)
                    out.append(w)
        return pa.array(out[:n], pa.string())

    def texts(self, rng: np.random.Generator, lengths: np.ndarray, unknown_rate: float = 0.03,
              cap_rate: float = 0.10, sentence_rate: float = 1 / 14) -> pa.Array:
        """One text per entry of ``lengths`` (number of words)."""
        n = len(lengths)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        # Words: GloVe words by Zipf rank, ~unknown_rate of them made up (also Zipf among themselves).
        code = np.searchsorted(self.known_cdf, rng.random(total)).astype(np.int64)
        unk = rng.random(total) < unknown_rate
        code[unk] = len(self.known) + np.searchsorted(self.fake_cdf, rng.random(int(unk.sum())))
        # Sentences: a word ends one with probability sentence_rate, and every text ends one.
        last = offsets[1:] - 1
        sent_end = rng.random(total) < sentence_rate
        sent_end[last] = True
        sent_start = np.zeros(total, dtype=bool)
        sent_start[1:] = sent_end[:-1]
        sent_start[offsets[:-1]] = True
        capital = sent_start | (rng.random(total) < cap_rate)
        code += capital * self.n_base
        # Wrappers: 1.5% "quoted", 1% (parenthesised), 1% possessive 's.
        r = rng.random(total)
        wrap = np.select([r < 0.015, r < 0.025, r < 0.035], [1, 2, 3], 0)
        # Punctuation: sentence ends get . (90%) ? (5%) ! (5%); others , (7%) ; (0.5%) : (0.5%).
        r = rng.random(total)
        inner = np.select([r < 0.07, r < 0.075, r < 0.08], [1, 2, 3], 0)
        end = np.select([r < 0.90, r < 0.95], [4, 5], 6)
        punct = np.where(sent_end, end, inner)
        tokens = pc.binary_join_element_wise(
            self.prefixes.take(pa.array(wrap)),
            self.forms.take(pa.array(code)),
            self.suffixes.take(pa.array(wrap * len(self.PUNCT) + punct)),
            "",
        )
        lists = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), tokens)
        return pc.binary_join(lists, " ")


def doc_lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    """Words per document: log-normal (median 26), clipped to 5-60; mean about 29."""
    return np.clip(np.rint(rng.lognormal(np.log(26), 0.55, n)), 5, 60).astype(np.int64)


def _cached_corpus(path: Path, params: dict, docs: int,
                   chunks: Callable[[], Iterator[tuple[pa.Array, np.ndarray]]]) -> dict:
    """``path`` (Parquet: id, text) and its ``.json`` metadata, regenerated unless made with ``params``.

    ``chunks`` yields (texts, words per text) in document order.
    """
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("params") == params and pq.read_metadata(path).num_rows == docs:
                log(f"reusing corpus {path} ({docs:,} documents)")
                return {**meta, "reused": True}
        except (OSError, ValueError, pa.ArrowException):
            pass
    log(f"generating {docs:,} documents into {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    words = text_bytes = start = 0
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("text", pa.string())])
    with pq.ParquetWriter(tmp, schema) as writer:
        for texts, lengths in chunks():
            words += int(lengths.sum())
            text_bytes += int(pc.sum(pc.binary_length(texts)).as_py())
            ids = pa.array(np.arange(start, start + len(texts), dtype=np.int64))
            writer.write_table(pa.table([ids, texts], schema=schema))
            start += len(texts)
    os.replace(tmp, path)
    seconds = time.perf_counter() - t0
    meta = {"params": params, "docs": docs, "words": words, "mean_words": words / docs,
            "generate_s": round(seconds, 2), "bytes": path.stat().st_size, "text_bytes": text_bytes}
    meta_path.write_text(json.dumps(meta, indent=1))
    log(f"generated {docs:,} documents ({words:,} words) in {seconds:.1f} s")
    return {**meta, "reused": False}


def _chunk_sizes(docs: int) -> Iterator[int]:
    for start in range(0, docs, GEN_CHUNK_DOCS):
        yield min(GEN_CHUNK_DOCS, docs - start)


def zipf_corpus(path: Path, docs: int, seed: int, words: pa.Array) -> dict:
    """Documents of Zipf-drawn GloVe words (~3% made up), capitals and punctuation attached."""

    def chunks():
        vocab = GenVocab(words, seed)
        rng = np.random.default_rng(seed)
        for n in _chunk_sizes(docs):
            lengths = doc_lengths(rng, n)
            yield vocab.texts(rng, lengths), lengths

    # The parameters name no generator: corpora cached before the topic generator shared this cache stay valid.
    return _cached_corpus(path, {"generator_version": GENERATOR_VERSION, "docs": docs, "seed": seed}, docs, chunks)


def topic_corpus(path: Path, docs: int, seed: int, vectors, topics: int = 2000, per_topic: int = 200) -> dict:
    """Each document mixes ~60% words of one topic (a seed word's nearest GloVe neighbours) with
    ~40% Zipf-drawn background words (with :class:`GenVocab`'s capitals and punctuation)."""

    def chunks():
        import faiss

        vocab = GenVocab(vectors.words, seed)
        rng = np.random.default_rng([seed, 7])
        # Topic words come from the 50,000 most frequent alphabetic words; seeds from ranks 200-20,000.
        alpha = pc.match_substring_regex(vectors.words, r"^[a-z]+$").to_numpy(zero_copy_only=False)
        cand = np.flatnonzero(alpha)[:50_000]
        m = np.ascontiguousarray(vectors.matrix[cand], dtype=np.float32)
        faiss.normalize_L2(m)
        seeds = rng.choice(np.arange(200, 20_000), topics, replace=False)
        _, nn = faiss.knn(m[seeds], m, per_topic, metric=faiss.METRIC_INNER_PRODUCT)
        topic_words = (vectors.words.take(pa.array(cand[nn.ravel()])).to_numpy(zero_copy_only=False)
                       .reshape(topics, per_topic))
        for n in _chunk_sizes(docs):
            lengths = doc_lengths(rng, n)
            n_topic = np.rint(lengths * 0.6).astype(np.int64)
            background = vocab.texts(rng, np.maximum(lengths - n_topic, 1)).to_numpy(zero_copy_only=False)
            t = rng.integers(0, topics, n)
            picked = topic_words[np.repeat(t, n_topic), rng.integers(0, per_topic, int(n_topic.sum()))]
            texts = [" ".join(w) + " " + b for w, b in zip(np.split(picked, np.cumsum(n_topic)[:-1]), background)]
            # Words per text as written: the background has at least one word.
            yield pa.array(texts, pa.string()), n_topic + np.maximum(lengths - n_topic, 1)

    return _cached_corpus(path, {"generator": "topics", "generator_version": GENERATOR_VERSION, "docs": docs,
                                 "seed": seed, "topics": topics, "per_topic": per_topic}, docs, chunks)


def generated_queries(words: pa.Array, n: int, seed: int) -> list[str]:
    """``n`` short query texts (2-8 words), generated like Zipf documents."""
    vocab = GenVocab(words, seed)
    rng = np.random.default_rng([seed, 2])
    return vocab.texts(rng, rng.integers(2, 9, size=n)).to_pylist()


def window_queries(corpus: Path, n: int, seed: int) -> list[str]:
    """Queries like a user's: 2-8 consecutive words from ``n`` random documents of the corpus."""
    rng = np.random.default_rng([seed, 3])
    texts = sample_texts(corpus, n, rng)
    out = []
    for t in texts:
        w = t.split()
        a = int(rng.integers(0, max(1, len(w) - 2)))
        out.append(" ".join(w[a:a + int(rng.integers(2, 9))]))
    return out


def length_mix_queries(corpus: Path, n: int, seed: int) -> list[str]:
    """Queries of every length a user sends, in turn: 1-3 consecutive words, 4-12, a whole document."""
    rng = np.random.default_rng([seed, 4])
    out = []
    for i, t in enumerate(sample_texts(corpus, n, rng)):
        w = t.split()
        if i % 3 == 2:
            out.append(t)
            continue
        length = int(rng.integers(1, 4)) if i % 3 == 0 else int(rng.integers(4, 13))
        a = int(rng.integers(0, max(1, len(w) - length + 1)))
        out.append(" ".join(w[a:a + length]))
    return out


def sample_texts(corpus: Path, n: int, rng: np.random.Generator) -> list[str]:
    """``min(n, rows)`` texts of the corpus at random rows, in corpus order."""
    column = pq.read_table(corpus, columns=["text"]).column(0)
    rows = np.sort(rng.choice(len(column), size=min(n, len(column)), replace=False))
    return column.take(pa.array(rows)).to_pylist()
