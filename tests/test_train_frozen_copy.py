"""``encoder.frozen_copy``: rows ``[trainable | frozen copy]``, exported as the same mean + projection tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glovefaiss.errors import ConfigError
from glovefaiss.model import load_towers, load_two_tower
from glovefaiss.train import train

from .test_train_helpers import scored_data, tiny_config

OUTSIDE = {"river", "boat"}  # kept out of the training data: served from their original rows


def _csv(path, data):
    rows = [(a, b, s) for a, b, s in zip(data.first, data.second, data.scores) if not OUTSIDE & set(f"{a} {b}".split())]
    path.write_text("".join(f"{a},{b},{s:.3f}\n" for a, b, s in rows))
    return path


def _config(tiny_vectors, **over):
    return tiny_config(tiny_vectors[0], **{
        "embedding.trainable": True, "encoder.frozen_copy": True, "encoder.hidden_dim": 16,
        "encoder.dropout": 0.1, "loss.type": "cosine", "pooling.weighting": "sif", "pooling.frequencies": "corpus",
        "pooling.components": 1, "optimizer.ema": 0.9, **over})


def _torch_encode(model_dir, texts):
    model, tok, _, _ = load_two_tower(model_dir)
    batch = tok.encode_texts(texts).batch(np.arange(len(texts)))
    with torch.no_grad():
        return model, model.encode_query(batch).numpy(), model.encode_document(batch).numpy()


@pytest.mark.parametrize("hidden_dim,tied", [(16, True), (8, True), (16, False)])
def test_exported_tower_equals_torch_tower_and_frozen_half_stays(tmp_path, tiny_vectors, hidden_dim, tied):
    path = _csv(tmp_path / "train.csv", scored_data(seed=0))
    val = _csv(tmp_path / "dev.csv", scored_data(seed=1))
    config = _config(tiny_vectors, **{"encoder.hidden_dim": hidden_dim, "encoder.tied_weights": tied})
    train(path, tmp_path / "start", config, epochs=0, seed=3, progress=False)
    train(path, tmp_path / "m", config, epochs=4, seed=3, validation=val, progress=False)

    start_q, start_d, _ = load_towers(tmp_path / "start")
    q, d, info = load_towers(tmp_path / "m")
    assert info["embedding_dim"] == 16 and q.matrix.shape[1] == 16 and q.dim == hidden_dim
    assert info["training"]["best_epoch"] > 0  # something trained (else the checks below are vacuous)

    # The numpy towers serve the torch towers, also on texts with words outside the model.
    texts = ["the cat sat on the mat", "stock market fell sharply", "dog barked loudly", "kitten played yarn"]
    model, tq, td = _torch_encode(tmp_path / "m", texts)
    np.testing.assert_allclose(q.encode(texts), tq, atol=1e-5)
    np.testing.assert_allclose(d.encode(texts), td, atol=1e-5)
    outside = ["river boat", "the river bank"]
    assert np.abs(q.encode(outside)).sum() > 0

    # The frozen half is bit-identical to the start, in torch and in the served rows; the trained half moved.
    start_model = load_two_tower(tmp_path / "start")[0]
    for side in ("query_embedding", "document_embedding"):
        assert torch.equal(getattr(model, side).frozen, getattr(start_model, side).frozen)
        assert getattr(model, side).frozen.requires_grad is False
    for enc, start in ((q, start_q), (d, start_d)):
        assert np.array_equal(enc.matrix[:, 8:], start.matrix[:, 8:])
        assert np.array_equal(start.matrix[:, :8], start.matrix[:, 8:])  # the start: the same row twice
        assert not np.allclose(enc.matrix[:, :8], start.matrix[:, :8], atol=1e-3)
        rows = enc.vocabulary.lookup(sorted(OUTSIDE))
        assert np.array_equal(enc.matrix[rows], start.matrix[rows])  # words outside the model: original rows


def test_start_has_the_cosines_of_the_plain_start(tmp_path, tiny_vectors):
    """Epoch 0 with the copy (projection blockdiag(P, P) or [P | 0]) scores as without it."""
    path = _csv(tmp_path / "train.csv", scored_data(seed=0))
    plain = _config(tiny_vectors, **{"encoder.frozen_copy": False, "encoder.hidden_dim": 8})
    train(path, tmp_path / "plain", plain, epochs=0, progress=False)
    ref = load_towers(tmp_path / "plain")[0]
    a, b = ["the cat sat on the mat", "dog barked", "river boat"], ["kitten played yarn", "stock rates rise", "bank"]
    want = (ref.encode(a) * ref.encode(b)).sum(1)
    for hidden_dim in (16, 8):
        train(path, tmp_path / f"copy{hidden_dim}", _config(tiny_vectors, **{"encoder.hidden_dim": hidden_dim}),
              epochs=0, progress=False)
        q = load_towers(tmp_path / f"copy{hidden_dim}")[0]
        np.testing.assert_allclose((q.encode(a) * q.encode(b)).sum(1), want, atol=1e-5)
    np.testing.assert_allclose(q.encode(a), ref.encode(a), atol=1e-5)  # [I | 0]: the same vectors


def test_frozen_copy_needs_trainable_rows(tmp_path, tiny_vectors):
    path = _csv(tmp_path / "train.csv", scored_data(seed=0))
    with pytest.raises(ConfigError, match="frozen_copy .* needs embedding.trainable: true"):
        train(path, tmp_path / "m", _config(tiny_vectors, **{"embedding.trainable": False}), progress=False)
