"""``glovefaiss train`` → ``build --model`` → ``query`` through the CLI, with exact errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli
from glovefaiss.index.search import Index
from glovefaiss.tower.encoder import load_encoder
from glovefaiss.tower.model_dir import load_towers
from glovefaiss.train.data import load_training_data
from glovefaiss.train.fit import evaluate_scored

from .helpers import scored_data, triplets


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def setup(tmp_path, tiny_vectors, tiny_corpus):
    cfg = tmp_path / "train.yml"
    cfg.write_text(
        f"embedding:\n  model_name: {tiny_vectors[0]}\n  trainable: true\n"
        "encoder:\n  hidden_dim: 8\n  dropout: 0.1\n"
        "loss:\n  type: triplet\n  margin: 0.3\n"
        "optimizer:\n  lr: 0.05\nbatch_size: 8\nepochs: 2\n", encoding="utf-8")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"query": q, "positive": p, "negative": n}) + "\n"
                            for q, p, n in triplets(40, seed=0)), encoding="utf-8")
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps({"query": q, "positive": p}) + "\n" for q, p, _ in triplets(12, seed=9)),
                   encoding="utf-8")
    return cfg, data, val, tiny_corpus[0]


def test_train_build_query_round_trip(tmp_path, setup):
    cfg, data, val, corpus = setup
    model = tmp_path / "model"
    r = run("train", data, "--config", cfg, "--out", model, "--validation", val, "--epochs", 3, "--seed", 1,
            "--corpus", corpus)
    assert r.exit_code == 0, r.output
    info = json.loads((model / "model.json").read_text())
    assert r.stderr.splitlines()[-1].startswith(f"trained {model} (model {info['model_id'][:12]}) in ")
    assert f"kept epoch {info['training']['best_epoch']} (recall@10 " in r.stderr
    assert [e["epoch"] for e in info["training"]["history"]] == [0, 1, 2, 3]
    assert info["training"]["metric"] == "recall@10" and info["training"]["peak_rss_mb"] > 0
    assert "xylophones" not in json.dumps(info)  # (sanity: the report holds no corpus text)

    # Same seed, same data: the same model, byte for byte (and a path with ".." shown folded).
    (tmp_path / "sub").mkdir()
    r2 = run("train", data, "--config", cfg, "--out", tmp_path / "sub" / ".." / "model2", "--validation", val,
             "--epochs", 3, "--seed", 1, "--corpus", corpus)
    assert r2.stderr.splitlines()[-1].startswith(f"trained {tmp_path / 'model2'} (model ")
    assert r2.exit_code == 0, r2.output
    assert json.loads((tmp_path / "model2" / "model.json").read_text())["model_id"] == info["model_id"]

    idx = tmp_path / "idx"
    r = run("build", corpus, "--out", idx, "--model", model)
    assert r.exit_code == 0, r.output
    manifest = json.loads((idx / "manifest.json").read_text())
    assert manifest["model"]["id"] == info["model_id"]
    assert manifest["model"]["dir"] == str(model)
    # The index serves the model's query tower, and its documents are the document tower's vectors.
    doc_tower = load_encoder(model / "document_tower")
    index = Index.load(idx)
    texts = ["The cat sat on the mat.", "Stock market fell sharply."]
    np.testing.assert_array_equal(index.encode(texts), load_encoder(model / "query_tower").encode(texts))
    res = index.search_vectors(doc_tower.encode(texts), k=1)
    assert res.ids[:, 0].tolist() == [10, 12] and np.allclose(res.scores[:, 0], 1.0, atol=1e-5)

    r = run("query", idx, "kitten yarn", "-k", 1, "--format", "jsonl", "--model", model)
    assert r.exit_code == 0, r.output
    hit = json.loads(r.stdout)
    assert hit["query_id"] == 1 and hit["rank"] == 1

    # Another model: refused with a clear message.
    other = tmp_path / "other"
    assert run("train", data, "--config", cfg, "--out", other, "--epochs", 1, "--seed", 2).exit_code == 0
    other_id = json.loads((other / "model.json").read_text())["model_id"]
    assert other_id != info["model_id"]
    r = run("query", idx, "kitten", "--model", other)
    assert r.exit_code == 1
    assert r.stderr == (
        f"Error: model mismatch: {idx} was built with model {info['model_id'][:12]}, but {other} is model "
        f"{other_id[:12]}; query with the model the index was built with, or rebuild it with "
        f"`glovefaiss build CORPUS --model {other}`\n")


def test_query_model_on_an_index_built_without_one(tmp_path, setup, tiny_vectors):
    cfg, data, _, corpus = setup
    model = tmp_path / "model"
    assert run("train", data, "--config", cfg, "--out", model, "--epochs", 1).exit_code == 0
    idx = tmp_path / "plain"
    assert run("build", corpus, "--out", idx, "--glove", tiny_vectors[0]).exit_code == 0
    r = run("query", idx, "kitten", "--model", model)
    assert r.exit_code == 1
    assert r.stderr == (f"Error: model mismatch: {idx} was built without a trained model, not with {model}; "
                        f"rebuild it with `glovefaiss build CORPUS --model {model}` or drop --model\n")
    r = run("build", corpus, "--out", tmp_path / "x", "--model", model, "--glove", tiny_vectors[0])
    assert r.exit_code == 2
    assert "Error: --glove cannot be combined with --model: the model fixes the word vectors" in r.stderr
    r = run("build", corpus, "--out", tmp_path / "y", "--model", tmp_path / "nope")
    assert r.exit_code == 1 and r.stderr == f"Error: model directory not found: {tmp_path / 'nope'}\n"


def test_train_errors(tmp_path, setup):
    cfg, data, _, corpus = setup
    sts = tmp_path / "sts.csv"
    s = scored_data(8)
    sts.write_text("".join(f'"{a}",{b},{c}\n' for a, b, c in zip(s.first, s.second, s.scores)), encoding="utf-8")
    r = run("train", sts, "--config", cfg, "--out", tmp_path / "m")
    assert r.exit_code == 1
    assert r.stderr == (f"Error: loss.type 'triplet' needs (query, positive) pairs, but the training data ({sts}) "
                        "has scored sentence pairs; use loss.type (--loss) cosine or cosent\n")
    r = run("train", data, "--config", cfg, "--out", tmp_path / "m", "--spread", 1)
    assert r.exit_code == 1
    assert r.stderr == ("Error: loss.spread applies to scored pairs (loss.type cosine or cosent), not triplet; "
                        "set loss.spread to 0 (or leave out --spread)\n")
    r = run("train", sts, "--config", cfg, "--out", tmp_path / "m", "--loss", "cosine", "--spread", 0.5, "--epochs", 1)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m" / "model.json").read_text())["config"]["loss"]["spread"] == 0.5
    # eval sts scores the trained towers directly, as training validation does.
    r = run("eval", "sts", sts, "--model", tmp_path / "m", "--format", "json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)[0]["metrics"]
    q, d, _ = load_towers(tmp_path / "m")
    want = evaluate_scored(q, d, load_training_data(sts))
    assert got == pytest.approx(want, abs=1e-6)
    r = run("eval", "sts", sts, "--model", tmp_path / "m", "--index", tmp_path)
    assert r.exit_code == 2 and "give --index or --model, not both" in r.stderr
    # Untied towers: an index built with the model scores pairs as the model does (document tower for sentence2).
    untied = tmp_path / "untied.yml"
    untied.write_text(cfg.read_text(encoding="utf-8") + "encoder:\n  hidden_dim: 8\n  tied_weights: false\n",
                      encoding="utf-8")
    r = run("train", sts, "--config", untied, "--out", tmp_path / "mu", "--loss", "cosine", "--epochs", 2)
    assert r.exit_code == 0, r.output
    assert run("build", corpus, "--out", tmp_path / "iu", "--model", tmp_path / "mu").exit_code == 0
    by_model = json.loads(run("eval", "sts", sts, "--model", tmp_path / "mu", "--format", "json").stdout)
    by_index = json.loads(run("eval", "sts", sts, "--index", tmp_path / "iu", "--format", "json").stdout)
    assert by_index[0]["metrics"] == by_model[0]["metrics"]
    r = run("train", sts, "--config", cfg, "--out", tmp_path / "m", "--loss", "cosine")
    assert r.exit_code == 1 and r.stderr == f"Error: {tmp_path / 'm'} already exists; pass --overwrite to replace it\n"
    r = run("train", tmp_path / "missing.jsonl", "--config", cfg, "--out", tmp_path / "m2")
    assert r.exit_code == 1 and r.stderr == f"Error: training data not found: {tmp_path / 'missing.jsonl'}\n"
    r = run("train", data, "--config", cfg, "--out", tmp_path / "m3", "--frozen")
    assert r.exit_code == 0, r.output  # frozen rows, the projection learns
    r = run("train", data, "--config", cfg, "--out", tmp_path / "m4", "--frozen", "--loss", "contrastive",
            "--negatives", "none", "--holdout", 0.25)
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "m4" / "model.json").read_text())
    assert info["training"]["negatives"] == "none" and "held-out part" in info["training"]["validation"]
