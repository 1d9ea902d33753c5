"""SIF weights, common-component removal and anisotropy: hand-computed cases, references, and
the build → query round trip (same transform on both sides, deterministic, resumable)."""

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glovefaiss.config import Config, PoolingConfig, TokeniserConfig
from glovefaiss.errors import ConfigError
from glovefaiss.index.build import build
from glovefaiss.index.search import Index
from glovefaiss.index.shards import vectors_from_arrow
from glovefaiss.text.tokeniser import Tokeniser
from glovefaiss.text.vocabulary import Vocabulary
from glovefaiss.tower.encoder import TextEncoder, load_encoder, save_encoder
from glovefaiss.tower.pooling import mean_pool, remove_components
from glovefaiss.tower.sif import (
    anisotropy,
    count_words,
    prepare_for_texts,
    sample_rows,
    sif_weights,
    top_components,
    wordfreq_frequencies,
)

from .helpers import WORDS, random_texts, write_corpus, write_glove_text


def _encoder(seed=3, dim=6, **kw):
    rng = np.random.default_rng(seed)
    return TextEncoder(Tokeniser(), Vocabulary(pa.array(WORDS)), rng.standard_normal((len(WORDS), dim)).astype(np.float32), **kw)


def _orthonormal(k, dim, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, k)))
    return q.T.astype(np.float32)


# --- hand-computed ------------------------------------------------------------------------------

def test_sif_weights_hand_computed():
    np.testing.assert_allclose(sif_weights(np.array([3.0, 1.0, 0.0, 0.0]), a=0.25), [0.25, 0.5, 1.0, 1.0])
    assert sif_weights(np.zeros(3)).tolist() == [1.0, 1.0, 1.0]
    assert sif_weights(np.array([1.0])).dtype == np.float32


def test_weighted_pool_is_weighted_sum_over_word_count():
    m = np.array([[1, 0], [0, 2], [3, 4]], np.float32)
    w = np.array([2.0, 0.5, 1.0], np.float32)
    out = mean_pool(m, np.array([0, 1, 2]), np.array([0, 2, 2, 3]), normalize=False, weights=w)
    # (2*[1,0] + 0.5*[0,2]) / 2 words, an empty text, then 1*[3,4] / 1
    np.testing.assert_allclose(out, [[1.0, 0.5], [0, 0], [3, 4]])
    single = mean_pool(m, np.array([0, 1]), np.array([0, 2]), normalize=False, weights=w)
    np.testing.assert_allclose(single, [[1.0, 0.5]])


def test_remove_components_hand_computed():
    c = np.array([[1.0, 0.0, 0.0]], np.float32)
    x = np.array([[2.0, 3.0, 4.0], [0, 0, 0]], np.float32)
    np.testing.assert_array_equal(remove_components(x, c), [[0, 3, 4], [0, 0, 0]])
    c2 = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], np.float32)
    np.testing.assert_allclose(remove_components(np.array([[1.0, 1.0, 1.0]], np.float32), c2),
                               [[1 - 1.4 * 0.6, 1 - 1.4 * 0.8, 0.0]], atol=1e-6)


def test_pool_removes_components_before_normalising():
    m = np.array([[3, 4, 1], [0, 0, 2]], np.float32)
    c = np.array([[0.0, 0.0, 1.0]], np.float32)
    out = mean_pool(m, np.array([0, 1]), np.array([0, 1, 2]), components=c)
    np.testing.assert_allclose(out, [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)


def test_anisotropy_reference():
    assert anisotropy(np.array([[1.0, 0], [1, 0], [0, 0]])) == pytest.approx(1.0)
    assert anisotropy(np.array([[1.0, 0], [-1, 0]])) == 0.0
    # unit vectors at 0 and 90 degrees: centroid at 45 degrees, cos 45 = 0.7071
    assert anisotropy(np.array([[2.0, 0], [0, 3]])) == pytest.approx(np.sqrt(0.5))
    assert anisotropy(np.zeros((2, 3))) is None


# --- against references ---------------------------------------------------------------------------

def test_encoder_with_weights_and_components_matches_numpy_reference():
    enc0 = _encoder()
    weights = np.random.default_rng(1).uniform(0.05, 1.0, len(WORDS)).astype(np.float32)
    comps = _orthonormal(2, 6)
    enc = enc0.with_pooling(weights, comps)
    text = "The cat, the MAT and an unknownword!"
    rows = [WORDS.index(w) for w in ["the", "cat", "the", "mat"]]
    v = (enc0.matrix[rows] * weights[rows, None]).sum(axis=0) / 4
    v = v - (v @ comps.T) @ comps
    v /= np.linalg.norm(v)
    np.testing.assert_allclose(enc.encode(text)[0], v, atol=1e-6)
    np.testing.assert_allclose(enc.encode(pa.array([text]))[0], v, atol=1e-6)
    assert np.abs(enc.encode_unnormalized(pa.array([text])) @ comps.T).max() < 1e-5


def test_top_components_are_the_right_singular_vectors():
    x = np.random.default_rng(4).standard_normal((200, 7)) @ np.diag([5, 4, 3, 2, 1, 0.5, 0.1])
    comps, values = top_components(x.T @ x, 3)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(np.abs(comps @ vt[:3].T), np.eye(3), atol=1e-5)
    np.testing.assert_allclose(values, s[:3] ** 2, rtol=1e-9)
    assert np.all(comps[np.arange(3), np.abs(comps).argmax(axis=1)] > 0)  # sign fixed
    again, _ = top_components((-x).T @ (-x), 3)
    np.testing.assert_array_equal(comps, again)
    with pytest.raises(ConfigError, match="between 1 and the vector size 7"):
        top_components(x.T @ x, 8)


def test_count_words_matches_counter():
    enc = _encoder()
    texts = random_texts(np.random.default_rng(2), 200, WORDS, oov_rate=0.2)
    expected = Counter(t for text in texts for t in Tokeniser().tokenise(text) if t in WORDS)
    counts = count_words(enc, [pa.array(texts[:70]), pa.array(texts[70:])])
    assert {WORDS[i]: int(c) for i, c in enumerate(counts) if c} == dict(expected)


def test_sample_rows_seeded_sorted_and_complete_when_small():
    a = sample_rows(1000, 50, seed=1)
    assert len(a) == 50 and len(set(a)) == 50 and np.all(np.diff(a) > 0) and a.max() < 1000
    np.testing.assert_array_equal(a, sample_rows(1000, 50, seed=1))
    assert not np.array_equal(a, sample_rows(1000, 50, seed=2))
    np.testing.assert_array_equal(sample_rows(7, 50, seed=1), np.arange(7))


def test_wordfreq_frequencies():
    pytest.importorskip("wordfreq")
    f = wordfreq_frequencies(["the", "cat", "zzqxjv"], "en")
    assert f[0] > f[1] > f[2] == 1e-8
    with pytest.raises(ConfigError, match="no frequency list for language 'xx'"):
        wordfreq_frequencies(["a"], "xx")


def test_prepare_for_texts_fits_sif_and_components():
    pytest.importorskip("wordfreq")
    enc = _encoder()
    texts = random_texts(np.random.default_rng(5), 300, WORDS)
    cfg = PoolingConfig(weighting="sif", components=2, components_sample=100)
    enc2, info = prepare_for_texts(enc, cfg, texts, seed=0)
    assert enc2.weights[WORDS.index("the")] < enc2.weights[WORDS.index("kitten")] <= 1.0
    assert enc2.components.shape == (2, 6)
    assert info["components_sample"] == 100 and 0 < info["components_energy"] <= 1
    enc3, _ = prepare_for_texts(enc, cfg, texts, seed=0)
    np.testing.assert_array_equal(enc2.components, enc3.components)
    enc4, _ = prepare_for_texts(enc, cfg, texts, seed=1)
    assert not np.array_equal(enc2.components, enc4.components)


@pytest.mark.parametrize("cfg, message", [
    (PoolingConfig(weighting="tfidf"), "pooling.weighting must be one of mean, sif, got 'tfidf'"),
    (PoolingConfig(frequencies="zipf"), "pooling.frequencies must be wordfreq, wordfreq:LANG, corpus or rank"),
    (PoolingConfig(sif_a=0.0), "pooling.sif_a must be positive"),
    (PoolingConfig(components=-1), "pooling.components must be 0 or more"),
])
def test_bad_pooling_config(cfg, message):
    with pytest.raises(ConfigError, match=message):
        prepare_for_texts(_encoder(), cfg, ["the cat"])


def test_batch_invariance_with_weights_and_components():
    enc = _encoder(weights=np.random.default_rng(6).uniform(0.1, 1, len(WORDS)).astype(np.float32),
                   components=_orthonormal(3, 6, seed=2))
    texts = random_texts(np.random.default_rng(8), 400, WORDS)
    whole = enc.encode(pa.array(texts))
    for cut in (1, 37, 399):
        parts = np.vstack([enc.encode(pa.array(texts[:cut])), enc.encode(pa.array(texts[cut:]))])
        np.testing.assert_array_equal(parts, whole)
    single = np.vstack([enc.encode(t) for t in texts[:50]])
    np.testing.assert_array_equal(single, whole[:50])


def test_tower_round_trip_keeps_weights_and_components(tmp_path):
    enc = _encoder(weights=np.linspace(0.1, 1, len(WORDS)).astype(np.float32), components=_orthonormal(2, 6))
    meta = save_encoder(enc, tmp_path / "tower")
    assert meta["weights"] is True and meta["components"] == 2
    back = load_encoder(tmp_path / "tower")
    texts = ["the cat sat on the mat", "river boat", "nothing known"]
    np.testing.assert_array_equal(back.encode(texts), enc.encode(texts))
    plain = save_encoder(_encoder(), tmp_path / "plain")
    assert "weights" not in plain and "components" not in plain
    assert load_encoder(tmp_path / "plain").weights is None


def test_encoder_rejects_misshapen_weights_and_components():
    with pytest.raises(ValueError, match="one per vocabulary word"):
        _encoder(weights=np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"want \(k, 6\)"):
        _encoder(components=np.ones((2, 5), np.float32))


# --- build → query ----------------------------------------------------------------------------------

@pytest.fixture
def sif_setup(tmp_path):
    rng = np.random.default_rng(12)
    words = [f"w{i}" for i in range(200)]
    vec = write_glove_text(tmp_path / "v.txt", words, rng.standard_normal((200, 12)).astype(np.float32))
    # Zipf-like usage so corpus frequencies differ a lot between words.
    p = 1 / np.arange(1, 201)
    p /= p.sum()
    texts = [" ".join(words[i] for i in rng.choice(200, rng.integers(0, 15), p=p)) for _ in range(1500)]
    corpus = write_corpus(tmp_path / "c.parquet", np.arange(1500), texts, pa.int64())
    cfg = Config().replace({"embedding.model_name": str(vec), "build.shard_rows": 400, "build.batch_size": 128,
                            "pooling.weighting": "sif", "pooling.frequencies": "corpus", "pooling.sif_a": 0.01,
                            "pooling.components": 2, "pooling.components_sample": 500})
    return words, texts, corpus, cfg


def _shard_vectors(directory):
    m = json.loads((directory / "manifest.json").read_text())
    return np.vstack([vectors_from_arrow(pq.read_table(directory / s["file"]).column("vector")) for s in m["shards"]])


def test_sif_build_stores_the_transform_and_queries_use_it(tmp_path, sif_setup):
    words, texts, corpus, cfg = sif_setup
    result = build([corpus], tmp_path / "idx", cfg, progress=False)
    m = result.manifest
    assert m["pooling"]["weighting"] == "sif" and m["pooling"]["components"] == 2
    assert m["pooling"]["components_sample"] == 500 and m["pooling"]["corpus_tokens_counted"] > 0
    assert {"weights.npy", "components.npy"} <= set(m["query_tower"]["files"])
    # Corpus frequencies: a / (a + count / total), counted with the build's tokeniser.
    counts = Counter(t for text in texts for t in text.split())
    total = sum(counts.values())
    tower = load_encoder(tmp_path / "idx" / "query_tower")
    expected = np.array([0.01 / (0.01 + counts[w] / total) for w in words], np.float32)
    np.testing.assert_allclose(tower.weights, expected, rtol=1e-6)
    # A document's text as a query gets exactly its stored vector back.
    idx = Index.load(tmp_path / "idx")
    stored = _shard_vectors(tmp_path / "idx")
    for row in (0, 7, 123):
        if texts[row]:
            np.testing.assert_array_equal(idx.encode(texts[row])[0], stored[row])
            res = idx.search(texts[row], k=1)
            assert res.scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    # Documents have no component left along the removed directions.
    assert np.abs(stored @ tower.components.T).max() < 1e-5
    # Anisotropy in the manifest equals the reference over the stored vectors.
    assert m["anisotropy"] == pytest.approx(anisotropy(stored), abs=1e-6)


def test_anisotropy_drops_with_component_removal(tmp_path, sif_setup):
    _, _, corpus, cfg = sif_setup
    plain = build([corpus], tmp_path / "plain", cfg.replace({"pooling.weighting": "mean", "pooling.components": 0}),
                  progress=False)
    removed = build([corpus], tmp_path / "removed", cfg, progress=False)
    assert plain.manifest["pooling"] == {"weighting": "mean"}
    assert plain.manifest["anisotropy"] == pytest.approx(anisotropy(_shard_vectors(tmp_path / "plain")), abs=1e-6)
    assert removed.manifest["anisotropy"] < plain.manifest["anisotropy"]


def test_sif_build_is_deterministic_and_resumes(tmp_path, sif_setup, monkeypatch):
    _, _, corpus, cfg = sif_setup

    def sums(d):
        m = json.loads((d / "manifest.json").read_text())
        return [s["sha256"] for s in m["shards"]], m["index"]["sha256"], m["query_tower"]["files"], m["anisotropy"]

    build([corpus], tmp_path / "a", cfg, progress=False)
    build([corpus], tmp_path / "b", cfg, progress=False)
    assert sums(tmp_path / "a") == sums(tmp_path / "b")

    import glovefaiss.index.build as pipeline

    real_add = pipeline._BuildState.add
    calls = []

    def crash_on_third(self, shard):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_add(self, shard)

    monkeypatch.setattr(pipeline._BuildState, "add", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        build([corpus], tmp_path / "c", cfg, progress=False)
    monkeypatch.setattr(pipeline._BuildState, "add", real_add)
    resumed = build([corpus], tmp_path / "c", cfg, resume=True, progress=False)
    assert resumed.manifest["timings"]["resumed_documents"] == 800  # two shards of 400 adopted
    assert sums(tmp_path / "c") == sums(tmp_path / "a")


@pytest.mark.slow
def test_sif_with_wordfreq_via_cli_and_query_path_stays_light(tmp_path, sif_setup):
    pytest.importorskip("wordfreq")
    from click.testing import CliRunner

    from glovefaiss.cli import cli

    words, _, corpus, _ = sif_setup
    vec = tmp_path / "real.txt"
    real = ["the", "of", "cat", "kitten", "mat", "quantum", "sat", "on"]
    write_glove_text(vec, real, np.random.default_rng(0).standard_normal((len(real), 8)).astype(np.float32))
    write_corpus(tmp_path / "r.parquet", [1, 2, 3], ["the cat sat on the mat", "the kitten", "quantum of the"],
                 pa.int64())
    cfg = tmp_path / "sif.yml"
    cfg.write_text("pooling:\n  weighting: sif\n  components: 1\n")
    res = CliRunner().invoke(cli, ["build", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "idx"),
                                   "--glove", str(vec), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "anisotropy" in res.output
    tower = load_encoder(tmp_path / "idx" / "query_tower")
    w = dict(zip(real, tower.weights))
    assert w["the"] < w["of"] < w["cat"] < w["quantum"] <= 1.0
    code = ("import sys, glovefaiss\n"
            f"idx = glovefaiss.Index.load({str(tmp_path / 'idx')!r})\n"
            "assert idx.hits('kitten', k=1)[0]['id'] == 2\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'gensim', 'wordfreq'))))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_alnum_tokeniser_config_round_trips_through_an_index(tmp_path, sif_setup):
    words, _, _, _ = sif_setup
    vec = write_glove_text(tmp_path / "v2.txt", ["do", "not", "3.5", "cat"],
                           np.eye(4, dtype=np.float32))
    corpus = write_corpus(tmp_path / "t.parquet", [1, 2], ["I don't", "a cat at 3.5%"], pa.int64())
    cfg = Config().replace({"embedding.model_name": str(vec), "tokeniser.type": "alnum",
                            "tokeniser.contractions": True, "tokeniser.numbers": True})
    build([corpus], tmp_path / "idx", cfg, progress=False)
    idx = Index.load(tmp_path / "idx")
    assert idx.encoder.tokeniser == Tokeniser(TokeniserConfig(type="alnum", contractions=True, numbers=True))
    assert idx.hits("doesn't", k=1)[0]["id"] == 1  # "does not": only "not" is known
    assert idx.hits("3.5", k=1)[0]["id"] == 2


def test_shipped_quality_configs():
    from pathlib import Path

    from glovefaiss.config import load_config

    configs = Path(__file__).resolve().parent.parent / "configs"
    anchor = load_config(configs / "anchor_mean.yml")
    assert anchor.tokeniser == TokeniserConfig(type="alnum", contractions=True)
    assert anchor.pooling == PoolingConfig()
    sif = load_config(configs / "sif.yml")
    assert sif.tokeniser == TokeniserConfig(type="alnum", contractions=True, numbers=True)
    assert sif.pooling == PoolingConfig(weighting="sif", sif_a=0.001, frequencies="wordfreq", components=10)
