"""TwoTower structure, the model directory (save → load), and torch ↔ numpy agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from glovefaiss.errors import ConfigError, ModelError
from glovefaiss.tower.encoder import load_encoder
from glovefaiss.tower.model_dir import load_towers, read_model
from glovefaiss.train.data import PairData
from glovefaiss.train.fit import fit
from glovefaiss.train.model_dir import check_out_dir, export_towers, load_two_tower, save_model

from .helpers import make_two_tower as make
from .helpers import pair_data

TEXTS = ["the cat sat on the mat", "stock market fell sharply", "Boat on the river bank!", "kitten", "",
         "unknownword only", "dog barked loudly at the market rates rise"]


def test_tied_towers_share_every_weight(tiny_vectors):
    model, *_ = make(tiny_vectors, pair_data(), hidden_dim=5, tied=True)
    assert model.tied
    assert model.document_embedding is model.query_embedding and model.document_tower is model.query_tower
    n_emb = model.query_embedding.weight.numel()
    assert sum(p.numel() for p in model.parameters()) == n_emb + 5 * 8 + 5
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(model.encode_query(ids), model.encode_document(ids))


def test_untied_towers_have_separate_weights(tiny_vectors):
    model, tok, *_ = make(tiny_vectors, pair_data(), hidden_dim=5, tied=False)
    assert not model.tied
    assert model.document_embedding.weight is not model.query_embedding.weight
    assert model.document_tower.projection.weight is not model.query_tower.projection.weight
    n_emb = model.query_embedding.weight.numel()
    assert sum(p.numel() for p in model.parameters()) == 2 * (n_emb + 5 * 8 + 5)
    # Both start from the same values; a step on a query-only objective moves only the query side.
    doc_before = [p.detach().clone() for p in (model.document_embedding.weight, model.document_tower.projection.weight)]
    q_before = model.query_embedding.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model.encode_query(tok(["cat sat", "stock market"])).sum().backward()
    opt.step()
    assert not torch.equal(model.query_embedding.weight, q_before)
    assert torch.equal(model.document_embedding.weight, doc_before[0])
    assert torch.equal(model.document_tower.projection.weight, doc_before[1])


def test_dropout_only_in_training(tiny_vectors):
    model, tok, *_ = make(tiny_vectors, pair_data(), dropout=0.5)
    ids = tok(TEXTS[:4])
    torch.manual_seed(0)
    model.train()
    a, b = model.encode_query(ids), model.encode_query(ids)
    assert not torch.equal(a, b)
    model.eval()
    assert torch.equal(model.encode_query(ids), model.encode_query(ids))


def test_unknown_arch(tiny_vectors):
    from glovefaiss.train.towers import build_two_tower

    model, *_ = make(tiny_vectors, pair_data())
    with pytest.raises(ConfigError, match="unknown encoder arch 'lstm'; valid archs: avg_pool"):
        build_two_tower(model.query_embedding, arch="lstm")


@pytest.mark.parametrize("tied,hidden_dim", [(True, None), (False, 6), (True, 8)])
def test_torch_and_numpy_towers_agree(tiny_vectors, tied, hidden_dim):
    data = pair_data()
    model, tok, config, vectors = make(tiny_vectors, data, hidden_dim=hidden_dim, tied=tied)
    fit(model, tok, data, config, epochs=2, seed=0, progress=False)  # weights away from their init
    q_enc, d_enc = export_towers(model, tok, config, vectors)
    texts = TEXTS + data.queries[:10] + data.documents[:10]
    with torch.no_grad():
        tq = model.encode_query(tok(texts)).numpy()
        td = model.encode_document(tok(texts)).numpy()
    np.testing.assert_allclose(q_enc.encode(texts), tq, atol=1e-5)
    np.testing.assert_allclose(d_enc.encode(texts), td, atol=1e-5)
    assert np.count_nonzero(tq[4]) == 0 and np.count_nonzero(q_enc.encode([""])) == 0
    if not tied:
        assert not np.allclose(tq, td, atol=1e-3)  # untied towers did learn different weights


def test_export_falls_back_to_frozen_rows_for_words_outside_the_model(tiny_vectors):
    _, words, matrix = tiny_vectors
    data = PairData.from_triplets([("cat sat", "kitten mat yarn", "stock fell"), ("stock market", "fell sharply", "cat"),
                                   ("kitten", "cat played", "market rates"), ("rates rise", "stock market", "mat")])
    model, tok, config, vectors = make(tiny_vectors, data, **{"batch_size": 4})
    fit(model, tok, data, config, epochs=2, seed=0, progress=False)
    outside = [w for w in words if w not in set(tok.vocab)]
    assert "boat" in outside and "river" in outside  # words the training data never used
    q_enc, _ = export_towers(model, tok, config, vectors)
    for w in outside:
        np.testing.assert_array_equal(q_enc.matrix[words.index(w)], matrix[words.index(w)])
        assert np.count_nonzero(q_enc.encode([w])) > 0  # a query of unseen words still gets a vector
    inside = tok.vocab[1]
    assert not np.array_equal(q_enc.matrix[words.index(inside)], matrix[words.index(inside)])


def test_save_load_identical_vectors(tmp_path, tiny_vectors):
    data = pair_data()
    model, tok, config, vectors = make(tiny_vectors, data, hidden_dim=6, tied=False)
    fit(model, tok, data, config, epochs=2, seed=0, progress=False)
    info = save_model(tmp_path / "m", model, tok, config, vectors=vectors, training={"note": "test"})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "checkpoint.pt", "config.yml", "document_tower", "model.json", "query_tower", "vocab.parquet"]
    assert read_model(tmp_path / "m")["model_id"] == info["model_id"]

    again, tok2, config2, _ = load_two_tower(tmp_path / "m")
    assert tok2.vocab == tok.vocab and config2 == config and not again.tied
    with torch.no_grad():
        for side in ("encode_query", "encode_document"):
            assert torch.equal(getattr(model.eval(), side)(tok(TEXTS)), getattr(again, side)(tok2(TEXTS)))
    q, d, _ = load_towers(tmp_path / "m")
    q0, d0 = export_towers(model, tok, config, vectors)
    assert np.array_equal(q.encode(TEXTS), q0.encode(TEXTS)) and np.array_equal(d.encode(TEXTS), d0.encode(TEXTS))
    assert np.array_equal(load_encoder(tmp_path / "m" / "document_tower").encode(TEXTS), d0.encode(TEXTS))

    # The same weights saved again give the same id; other weights another.
    assert save_model(tmp_path / "m2", again, tok2, config2, vectors=vectors)["model_id"] == info["model_id"]
    with torch.no_grad():
        again.document_tower.projection.bias += 0.01
    assert save_model(tmp_path / "m3", again, tok2, config2, vectors=vectors)["model_id"] != info["model_id"]


def test_tampered_or_missing_model(tmp_path, tiny_vectors):
    data = pair_data()
    model, tok, config, vectors = make(tiny_vectors, data)
    save_model(tmp_path / "m", model, tok, config, vectors=vectors)
    with pytest.raises(ModelError, match=r"already exists; pass --overwrite to replace it"):
        save_model(tmp_path / "m", model, tok, config, vectors=vectors)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(ModelError, match="exists and is not a glovefaiss model; refusing to overwrite it"):
        check_out_dir(tmp_path / "other", overwrite=True)
    np.save(tmp_path / "m" / "query_tower" / "embeddings.npy", np.zeros((3, 8), np.float32))
    with pytest.raises(ModelError, match=r"query_tower/ does not match model.json \(embeddings.npy missing or changed\)"):
        load_towers(tmp_path / "m")
    with pytest.raises(ModelError, match="model directory not found: "):
        read_model(tmp_path / "nope")
    with pytest.raises(ModelError, match=r"is not a glovefaiss model \(model.json missing\)"):
        read_model(tmp_path / "other")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="has model format 99, newer than this glovefaiss reads"):
        read_model(tmp_path / "m")


def test_lookup_embedding_model_exports_its_own_vocabulary(tiny_vectors):
    from glovefaiss.train.data import Tokenizer
    from glovefaiss.train.embeddings import LookupEmbedding
    from glovefaiss.train.towers import build_two_tower

    from .helpers import tiny_config

    data = pair_data()
    config = tiny_config(tiny_vectors[0], **{"embedding.type": "lookup", "embedding.dim": 6})
    tok = Tokenizer.build(data.texts(), config.tokeniser)  # no vectors: every training word
    model = build_two_tower(LookupEmbedding(len(tok), 6, seed=0), hidden_dim=4)
    fit(model, tok, data, config, epochs=1, seed=0, progress=False)
    q, d = export_towers(model, tok, config)
    assert q is d and q.vocabulary.words.to_pylist() == tok.vocab[1:]  # padding left out
    with torch.no_grad():
        want = model.encode_query(tok(TEXTS)).numpy()
    np.testing.assert_allclose(q.encode(TEXTS), want, atol=1e-5)
