import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from glovefaiss.errors import ConfigError
from glovefaiss.tower.pooling import l2_normalize, mean_pool
from glovefaiss.train.embeddings import PAD, GloVeEmbedding
from glovefaiss.train.towers import AveragePoolingTower, pad_batch


class Vec:
    def __init__(self, words, matrix):
        self.words, self.matrix, self.source = pa.array(words), matrix, "tiny"


def test_masked_mean_hand_computed():
    embedded = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False, False]])  # slot 2: a missing word, slot 3: padding
    out = AveragePoolingTower(2)(embedded, mask)
    assert torch.equal(out, torch.tensor([[2.0, 3.0]]))  # (1+3)/2, (2+4)/2 — not divided by 4


def test_nan_in_masked_slot_does_not_leak():
    embedded = torch.tensor([[[1.0], [float("nan")]]])
    out = AveragePoolingTower(1)(embedded, torch.tensor([[True, False]]))
    assert torch.equal(out, torch.tensor([[1.0]]))


@pytest.mark.parametrize("output_dim", [None, 3])
def test_empty_row_is_zero(output_dim):
    torch.manual_seed(0)
    tower = AveragePoolingTower(2, output_dim=output_dim)
    if tower.projection is not None:
        torch.nn.init.constant_(tower.projection.bias, 5.0)
    embedded = torch.randn(2, 3, 2)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = tower(embedded, mask)
    assert out.shape == (2, output_dim or 2)
    assert torch.count_nonzero(out[1]) == 0
    assert torch.count_nonzero(out[0]) == out.shape[1]


def test_empty_batch_of_empty_texts():
    out = AveragePoolingTower(4, output_dim=2)(torch.zeros(3, 0, 4), torch.zeros(3, 0, dtype=torch.bool))
    assert out.shape == (3, 2) and torch.count_nonzero(out) == 0


@pytest.mark.parametrize("output_dim", [None, 5])
def test_matches_numpy_mean_pool(output_dim):
    rng = np.random.default_rng(42)
    dim, n_words = 8, 30
    words = [f"w{i}" for i in range(n_words)]
    vec = Vec(words, rng.standard_normal((n_words, dim)).astype(np.float32))
    # Vocabulary: some words the vectors have, some they lack (missing → masked out).
    vocab = [PAD] + [f"w{i}" for i in range(0, n_words, 2)] + [f"oov{i}" for i in range(6)]
    emb = GloVeEmbedding(len(vocab), vocab=vocab, vectors=vec)
    assert emb.missing_words == 6
    missing_ids = list(range(len(vocab) - 6, len(vocab)))
    id_lists = [list(rng.integers(1, len(vocab), size=int(rng.integers(0, 12)))) for _ in range(40)]
    id_lists += [[], missing_ids[:3], [1], [2, missing_ids[0], 2]]  # empty, all-missing, single, repeat
    ids = pad_batch(id_lists)
    torch.manual_seed(1)
    tower = AveragePoolingTower(dim, output_dim=output_dim).eval()
    with torch.no_grad():
        mask = emb.valid_mask(ids)
        got = tower(emb(ids), mask).numpy().copy()

    matrix, known = emb.export()
    flat = ids[mask].numpy()  # row-major: text by text, in token order
    offsets = np.concatenate([[0], np.cumsum(mask.sum(dim=1).numpy())])
    assert known[flat].all()
    want = mean_pool(matrix, flat, offsets, **tower.export())
    l2_normalize(got)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.count_nonzero(want[len(id_lists) - 4 : len(id_lists) - 2]) == 0  # empty and all-missing
    assert np.count_nonzero(got[len(id_lists) - 4 : len(id_lists) - 2]) == 0


def test_dropout_train_only():
    torch.manual_seed(0)
    tower = AveragePoolingTower(64, output_dim=None, dropout=0.5)
    embedded = torch.randn(4, 3, 64)
    mask = torch.ones(4, 3, dtype=torch.bool)
    plain = embedded.mean(dim=1)
    tower.train()
    a, b = tower(embedded, mask), tower(embedded, mask)
    assert not torch.equal(a, b)
    assert (a == 0).sum() > 0  # some units dropped
    tower.eval()
    torch.testing.assert_close(tower(embedded, mask), plain)
    torch.testing.assert_close(tower(embedded, mask), plain)


def test_export_shapes():
    tower = AveragePoolingTower(4, output_dim=3)
    exp = tower.export()
    assert exp["projection"].shape == (3, 4) and exp["projection"].dtype == np.float32
    assert exp["bias"].shape == (3,) and exp["bias"].dtype == np.float32
    np.testing.assert_array_equal(exp["projection"], tower.projection.weight.detach().numpy())
    assert AveragePoolingTower(4).export() == {"projection": None, "bias": None}
    assert AveragePoolingTower(4).output_dim == 4 and tower.output_dim == 3


def test_bad_arguments():
    with pytest.raises(ConfigError, match="dropout"):
        AveragePoolingTower(4, dropout=1.0)
    with pytest.raises(ConfigError, match="output_dim"):
        AveragePoolingTower(4, output_dim=0)
    with pytest.raises(ValueError, match="mask shape"):
        AveragePoolingTower(2)(torch.zeros(1, 3, 2), torch.ones(1, 2, dtype=torch.bool))


def test_pad_batch():
    ids = pad_batch([[3, 4], [], [5, 6, 7]])
    assert ids.dtype == torch.long
    assert ids.tolist() == [[3, 4, 0], [0, 0, 0], [5, 6, 7]]
    assert pad_batch([]).shape == (0, 0)
    assert pad_batch([[], []]).shape == (2, 0)
    assert pad_batch([np.array([1, 2])]).tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="non-negative"):
        pad_batch([[1, -2]])


@pytest.mark.slow
def test_modules_do_not_import_gensim():
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys; import glovefaiss.train.towers, glovefaiss.train.embeddings; "
        "assert 'torch' in sys.modules; assert 'gensim' not in sys.modules, 'gensim imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={"PYTHONPATH": str(root)})
