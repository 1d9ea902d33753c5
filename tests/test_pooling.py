import numpy as np
import pyarrow as pa
import pytest

from glovefaiss.config import TokeniserConfig
from glovefaiss.text.tokeniser import Tokeniser
from glovefaiss.text.vocabulary import Vocabulary
from glovefaiss.tower.encoder import EncodeStats, TextEncoder, load_encoder, save_encoder
from glovefaiss.tower.pooling import mean_pool

from .helpers import WORDS, random_texts


@pytest.fixture
def encoder():
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((len(WORDS), 6)).astype(np.float32)
    return TextEncoder(Tokeniser(), Vocabulary(pa.array(WORDS)), matrix)


def test_mean_pool_hand_computed():
    m = np.array([[1, 0], [0, 2], [3, 4]], np.float32)
    out = mean_pool(m, np.array([0, 1, 2, 2]), np.array([0, 2, 2, 4]), normalize=False)
    np.testing.assert_allclose(out, [[0.5, 1.0], [0, 0], [3, 4]])
    out = mean_pool(m, np.array([2]), np.array([0, 1]))
    np.testing.assert_allclose(out, [[0.6, 0.8]])


def test_projection_keeps_empty_rows_zero():
    m = np.eye(2, dtype=np.float32)
    w = np.array([[2, 0], [0, 1], [1, 1]], np.float32)
    b = np.array([1, 1, 1], np.float32)
    out = mean_pool(m, np.array([0]), np.array([0, 1, 1]), w, b, normalize=False)
    np.testing.assert_allclose(out, [[3, 1, 2], [0, 0, 0]])


def test_document_vector_is_normalised_mean_of_known_words(encoder):
    text = "The cat, the MAT and an unknownword!"
    rows = [WORDS.index(w) for w in ["the", "cat", "the", "mat"]]  # "and", "an", "unknownword" are OOV
    expected = encoder.matrix[rows].mean(axis=0)
    expected /= np.linalg.norm(expected)
    stats = EncodeStats()
    vectors = encoder.encode(pa.array([text]), stats=stats, top_oov=5)
    np.testing.assert_allclose(vectors[0], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(text)[0], expected, rtol=1e-6, atol=1e-6)
    assert (stats.tokens, stats.oov_tokens, stats.empty_texts) == (7, 3, 0)
    assert stats.oov_words == {"and": 1, "an": 1, "unknownword": 1}


def test_matches_gensim_keyedvectors_mean(encoder):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=encoder.matrix.shape[1])
    kv.add_vectors(WORDS, encoder.matrix)
    words = ["dog", "barked", "loudly", "dog"]
    ref = kv.get_mean_vector(words, pre_normalize=False, post_normalize=True)
    np.testing.assert_allclose(encoder.encode(" ".join(words))[0], ref, rtol=1e-5, atol=1e-6)


def test_text_without_known_word_is_zero_and_counted(encoder):
    stats = EncodeStats()
    vectors = encoder.encode(pa.array(["qqq zzz", None, "", "cat"]), stats=stats)
    assert not vectors[:3].any()
    assert np.isclose(np.linalg.norm(vectors[3]), 1.0)
    assert stats.empty_texts == 3 and stats.texts == 4


def test_batch_and_single_paths_agree(encoder):
    texts = random_texts(np.random.default_rng(0), 300, WORDS)
    batch = encoder.encode(pa.array(texts))
    single = np.vstack([encoder.encode(t) for t in texts])
    np.testing.assert_allclose(batch, single, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(texts[:5]), batch[:5], atol=1e-6)
    _, counts = encoder.encode_counted(pa.array(texts))
    assert [int(encoder.encode_counted(t)[1][0]) for t in texts[:20]] == counts[:20].tolist()
    assert encoder.encode_counted(texts[:5])[1].tolist() == counts[:5].tolist()
    norms = np.linalg.norm(batch, axis=1)
    assert np.all(np.isclose(norms, 1.0, atol=1e-5) | (norms == 0))


def test_save_and_load_round_trip(encoder, tmp_path):
    enc = TextEncoder(Tokeniser(TokeniserConfig(max_len=4)), encoder.vocabulary, encoder.matrix,
                      np.ones((3, 6), np.float32), np.arange(3, dtype=np.float32))
    save_encoder(enc, tmp_path / "tower")
    back = load_encoder(tmp_path / "tower")
    assert back.tokeniser == enc.tokeniser and back.dim == 3
    texts = ["the cat sat on the mat", "river boat", "nothing known"]
    np.testing.assert_array_equal(back.encode(texts), enc.encode(texts))


@pytest.mark.parametrize("backend", ["scipy", "torch"])
@pytest.mark.parametrize("weighted", [False, True])
def test_batch_backends_and_numpy_sums_are_the_same_bits(weighted, backend):
    from glovefaiss.tower.pooling import segment_sums

    rng = np.random.default_rng(8)
    matrix = rng.standard_normal((500, 24)).astype(np.float32)
    lengths = rng.integers(0, 70, 400)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(0, 500, offsets[-1])
    weights = rng.random(500).astype(np.float32) if weighted else None
    dense = segment_sums(matrix, ids, offsets, weights)
    np.testing.assert_array_equal(segment_sums(matrix, ids, offsets, weights, backend=backend), dense)
    one = segment_sums(matrix, ids[offsets[5]:offsets[6]], np.array([0, lengths[5]]), weights)
    np.testing.assert_array_equal(one[0], dense[5])
