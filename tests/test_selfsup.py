"""Self-supervised training (pseudo pairs, vocabulary growth), build --adapt, train --init,
eval retrieval --model, rank-based SIF weights and the built-in recipes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from glovefaiss.cli import cli
from glovefaiss.config import Config, PoolingConfig, SelfSupervisedConfig, TokeniserConfig, load_config
from glovefaiss.index.search import Index
from glovefaiss.text.tokeniser import Tokeniser
from glovefaiss.text.vocabulary import Vocabulary
from glovefaiss.tower import sif
from glovefaiss.tower.encoder import TextEncoder
from glovefaiss.tower.model_dir import load_towers
from glovefaiss.train.data import data_kind
from glovefaiss.train.losses import InBatchNegativesLoss
from glovefaiss.train.model_dir import load_two_tower
from glovefaiss.train.pseudo import CorpusTexts, make_pairs, pair_texts, tokenise_corpus
from glovefaiss.train.recipes import recipe
from glovefaiss.train.selfsup import train_self_supervised

from .helpers import TOPICS, WORDS, make_two_tower, pair_data

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
MADE_UP = "florbix"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class _Vectors:
    def __init__(self, words, matrix):
        self.words, self.matrix, self.source = pa.array(words, pa.string()), matrix, "test vectors"


def small_config(vectors_path, **over) -> Config:
    """The self-supervised recipe, scaled to a corpus of tens of documents."""
    base = {"embedding.model_name": str(vectors_path), "batch_size": 16, "epochs": 6,
            "self_supervised.span_min": 2, "self_supervised.span_max": 4, "self_supervised.eval_every": 2,
            "self_supervised.validation_documents": 6, "self_supervised.validation_queries": 2}
    base.update(over)
    return recipe("self_supervised").replace(base)


def topic_corpus(n: int = 80, seed: int = 3) -> tuple[list[str], list[str], list[str]]:
    """Seeded documents over TOPICS; the river topic's documents also say MADE_UP (a word no vector has)."""
    rng = np.random.default_rng(seed)
    ids, titles, texts = [], [], []
    for i in range(n):
        t = i % len(TOPICS)
        words = list(rng.choice(TOPICS[t], int(rng.integers(8, 16))))
        if t == 3:
            words.insert(int(rng.integers(0, len(words))), MADE_UP)
        ids.append(f"d{i}")
        titles.append(" ".join(rng.choice(TOPICS[t], 2)))
        texts.append(" ".join(words))
    return ids, titles, texts


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    ids, titles, texts = topic_corpus()
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"id": ids, "title": titles, "text": texts}), path)
    return path


def write_yaml(path: Path, config: Config) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config.to_dict()), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# pairs and growth


def test_pairs_on_a_tiny_corpus_are_exact():
    vectors = _Vectors(WORDS, np.arange(len(WORDS) * 2, dtype=np.float32).reshape(-1, 2))
    corpus = CorpusTexts(pa.array(["a", "b", "c"]), pa.array([
        "The cat sat on the mat, the kitten played with yarn.",
        "Dog barked loudly on the river bank by a boat",
        "Stock market fell sharply; zorblat rates rise, zorblat"]), pa.array(["Cat mat", "", "Stock market"]), "t")
    cfg = replace(SelfSupervisedConfig(), span_min=2, span_max=3, p_title=0.5, grow_min_count=2, grow_window=1)
    tokenizer, docs, growth = tokenise_corpus(corpus, Tokeniser(TokeniserConfig()), vectors, cfg)
    # Corpus words the vectors have (most frequent first, ties by word), then the grown word.
    assert tokenizer.words.to_pylist() == [
        "<pad>", "the", "cat", "market", "mat", "on", "stock", "bank", "barked", "boat", "dog", "fell", "kitten",
        "loudly", "played", "rates", "rise", "river", "sat", "sharply", "yarn", "zorblat"]
    assert docs.tokens.offsets.tolist() == [0, 12, 20, 30] and docs.title_lengths.tolist() == [2, 0, 2]
    # zorblat's row: the mean of its neighbours within 1 position: sharply, rates (1st), rise (2nd; then the end).
    assert growth.words == ["zorblat"] and growth.first_id == 21 and growth.occurrences == 2
    m = vectors.matrix
    np.testing.assert_array_equal(growth.rows, [(m[11] + m[15] + m[16]) / 3])

    rng = np.random.default_rng(0)
    assert pair_texts(tokenizer, docs, make_pairs(docs, np.array([0, 1, 2]), rng, cfg)) == [
        ("cat mat the", "cat sat on the mat the kitten played yarn"),
        ("dog barked loudly", "on the river bank boat"),
        ("zorblat rates rise", "stock market stock market fell sharply zorblat")]
    # The next epoch's pairs are fresh; doc 0 now gets its title as the query.
    assert pair_texts(tokenizer, docs, make_pairs(docs, np.array([2, 0, 1]), rng, cfg)) == [
        ("rise zorblat", "stock market stock market fell sharply zorblat rates"),
        ("cat mat", "the cat sat on the mat the kitten played yarn"),
        ("dog barked loudly", "on the river bank boat")]
    # Without titles, spans only; never more than half a document.
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = make_pairs(docs, np.array([0, 1, 2]), rng, cfg, titles=False)
        assert (p.length >= 1).all() and (p.length <= docs.lengths // 2).all()
        assert (p.start + p.length <= docs.lengths).all()


def test_growth_off_keeps_only_vector_words():
    vectors = _Vectors(WORDS, np.ones((len(WORDS), 2), np.float32))
    corpus = CorpusTexts(pa.array(["a"]), pa.array(["cat zorblat zorblat"]), None, "t")
    tok, docs, growth = tokenise_corpus(corpus, Tokeniser(TokeniserConfig()), vectors,
                                        replace(SelfSupervisedConfig(), grow_min_count=0))
    assert tok.words.to_pylist() == ["<pad>", "cat"] and growth.words == [] and docs.lengths.tolist() == [1]
    tok, _, growth = tokenise_corpus(corpus, Tokeniser(TokeniserConfig()), vectors,
                                     replace(SelfSupervisedConfig(), grow_min_count=3))
    assert growth.words == []  # seen twice, below 3


# --------------------------------------------------------------------------------------------
# training


def test_grown_word_is_trained_exported_and_findable(tmp_path, tiny_vectors, corpus_file):
    out = tmp_path / "m"
    s = train_self_supervised(corpus_file, out, small_config(tiny_vectors[0]), progress=False)
    info = json.loads((out / "model.json").read_text())
    assert info["added_words"] == s.info["training"]["words_added"] == 1
    t = info["training"]
    assert t["objective"] == "self_supervised" and t["titles"] is True
    assert t["validation_documents"] == 6 and t["validation_queries"] == 12 and t["pairs"] == 6 * 74
    assert [e["epoch"] for e in t["history"]] == [0, 2, 4, 6]

    # The numpy query tower knows the made-up word and equals the torch tower on it.
    q, d, _ = load_towers(out)
    assert MADE_UP in q.vocabulary.words.to_pylist()
    model, tokenizer, _, _ = load_two_tower(out)
    for text in (MADE_UP, f"river {MADE_UP} boat"):
        want = model.encode_query(tokenizer([text])).detach().numpy()[0]
        np.testing.assert_allclose(q.encode([text])[0], want, atol=1e-6)

    # An index built through the model finds the word's documents; its manifest counts the added words.
    idx = tmp_path / "idx"
    r = run("build", corpus_file, "--out", idx, "--model", out)
    assert r.exit_code == 0, r.output
    index = Index.load(idx)
    assert index.manifest["model"]["added_words"] == 1
    texts = pq.read_table(corpus_file).column("text").to_pylist()
    ids = pq.read_table(corpus_file).column("id").to_pylist()
    hits = index.hits([MADE_UP], k=5)
    assert len(hits) == 5 and all(MADE_UP in texts[ids.index(h["id"])] for h in hits)
    # Without the model the word is unknown: no hits at all.
    plain = tmp_path / "plain"
    assert run("build", corpus_file, "--out", plain, "--glove", tiny_vectors[0]).exit_code == 0
    assert Index.load(plain).hits([MADE_UP], k=5) == []


def test_same_seed_same_model(tmp_path, tiny_vectors, corpus_file):
    cfg = small_config(tiny_vectors[0], epochs=2)
    a = train_self_supervised(corpus_file, tmp_path / "a", cfg, progress=False)
    b = train_self_supervised(corpus_file, tmp_path / "b", cfg, progress=False)
    c = train_self_supervised(corpus_file, tmp_path / "c", cfg, seed=1, progress=False)
    assert a.model_id == b.model_id != c.model_id


def test_bag_encoding_equals_padded_encoding(tiny_vectors):
    model = make_two_tower(tiny_vectors, pair_data(8), hidden_dim=8, tied=False)[0]
    lists = [[1, 2, 3], [4], [5, 6, 1, 1, 2], [7, 8]]
    ids = torch.tensor([i for x in lists for i in x])
    lengths = torch.tensor([len(x) for x in lists])
    torch.testing.assert_close(model.encode_query_bags(ids, lengths), model.encode_query(lists))
    torch.testing.assert_close(model.encode_document_bags(ids, lengths), model.encode_document(lists))


def test_symmetric_loss_averages_both_directions():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=-1)
    logits = q @ p.T / 0.1
    target = torch.arange(5)
    want = 0.5 * (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target))
    torch.testing.assert_close(InBatchNegativesLoss(0.1, symmetric=True)(q, p), want)
    torch.testing.assert_close(InBatchNegativesLoss(0.1)(q, p), torch.nn.functional.cross_entropy(logits, target))


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_self_supervised_train_and_errors(tmp_path, tiny_vectors, corpus_file):
    cfg = write_yaml(tmp_path / "ss.yml", small_config(tiny_vectors[0]))
    out = tmp_path / "m"
    r = run("train", corpus_file, "--self-supervised", "--out", out, "--config", cfg, "--epochs", 2,
            "--grow-vocabulary", 0)
    assert r.exit_code == 0, r.output
    info = json.loads((out / "model.json").read_text())
    lines = r.stderr.splitlines()
    assert lines[-2] == ("self-supervised on 80 documents: 148 pseudo pairs (74 an epoch, 2 epochs), validated on 12 "
                         "span queries of 6 held-out documents; 0 words added (min count 0)")
    assert lines[-1].startswith(f"trained {out} (model {info['model_id'][:12]}) in ")
    assert f"kept epoch {info['training']['best_epoch']} (pseudo ndcg@10 " in lines[-1]
    assert info["added_words"] == 0

    # The objective can come from the config alone; JSONL corpora with _id work too.
    jsonl = tmp_path / "corpus.jsonl"
    table = pq.read_table(corpus_file)
    jsonl.write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in
                             zip(*(table.column(c).to_pylist() for c in ("id", "title", "text")))), encoding="utf-8")
    r = run("train", jsonl, "--out", tmp_path / "j", "--config", cfg, "--epochs", 2, "--grow-vocabulary", 0)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "j" / "model.json").read_text())["model_id"] == info["model_id"]

    r = run("train", corpus_file, "--self-supervised", "--out", tmp_path / "x", "--config", cfg, "--holdout", 0.2)
    assert r.exit_code == 2
    assert ("Error: --holdout does not apply to self-supervised training (it validates on held-out documents "
            "of DATA)") in r.stderr
    r = run("train", corpus_file, "--self-supervised", "--out", tmp_path / "x", "--config", cfg,
            "--title-column", "heading")
    assert r.exit_code == 1
    assert r.stderr == (f"Error: {corpus_file} has no column 'heading'; columns present: id, title, text; "
                        "choose one with --title-column\n")
    sup = write_yaml(tmp_path / "sup.yml", Config().replace({"embedding.model_name": str(tiny_vectors[0])}))
    r = run("train", corpus_file, "--out", tmp_path / "x", "--config", sup, "--grow-vocabulary", 2)
    assert r.exit_code == 2 and "Error: --grow-vocabulary is for --self-supervised training" in r.stderr
    r = run("train", corpus_file, "--self-supervised", "--out", tmp_path / "x", "--config", sup)
    assert r.exit_code == 1
    assert r.stderr == ("Error: self-supervised training needs loss.type contrastive (in-batch negatives), "
                        "not triplet\n")


def test_build_adapt_keeps_its_model_and_reproduces(tmp_path, tiny_vectors, corpus_file):
    cfg = write_yaml(tmp_path / "b.yml", small_config(tiny_vectors[0], **{"self_supervised.max_documents": 50}))
    idx = tmp_path / "idx"
    r = run("build", corpus_file, "--out", idx, "--config", cfg, "--adapt")
    assert r.exit_code == 0, r.output
    m = json.loads((idx / "manifest.json").read_text())
    a = m["adapt"]
    assert a["documents"] == 80 and a["sample_documents"] == 50 and a["model_dir"] == "model"
    assert m["model"]["dir"] == str(idx / "model") and (idx / "model" / "model.json").is_file()
    line = next(x for x in r.stderr.splitlines() if x.startswith("adapted: "))
    assert line.startswith("adapted: self-supervised tower trained on 50 of 80 documents in ")
    assert f"(kept epoch {a['best_epoch']} of 6, pseudo ndcg@10 " in line
    assert line.endswith(f"; {a['words_added']} words added); model in {idx / 'model'}")
    assert run("verify", idx).exit_code == 0
    # info names the word vectors the model was trained from (the manifest keeps them with the model).
    r = run("info", idx)
    assert r.exit_code == 0, r.output
    assert f"vectors: {m['model']['vectors']['source']} ({m['query_tower']['vocab_size']:,} words x " in r.stdout
    assert not list(tmp_path.glob(".idx.adapt-*"))
    # build --model DIR/model builds the same index.
    again = tmp_path / "again"
    assert run("build", corpus_file, "--out", again, "--model", idx / "model").exit_code == 0
    q = ["river boat", f"{MADE_UP} bank", "stock market"]
    assert Index.load(idx).hits(q, k=5) == Index.load(again).hits(q, k=5)
    r = run("build", corpus_file, "--out", tmp_path / "z", "--adapt", "--model", idx / "model")
    assert r.exit_code == 2 and "Error: --adapt trains its own model; it cannot be combined with --model" in r.stderr


def test_eval_retrieval_with_a_model(tmp_path, tiny_vectors, corpus_file):
    table = pq.read_table(corpus_file)
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": i, "title": t, "text": x}) + "\n"
        for i, t, x in zip(*(table.column(c).to_pylist() for c in ("id", "title", "text")))), encoding="utf-8")
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": " ".join(t[:2])}) + "\n"
                                                for i, t in enumerate(TOPICS)), encoding="utf-8")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i % 4}\td{i}\t1\n" for i in range(0, 80, 5)), encoding="utf-8")
    cfg = write_yaml(tmp_path / "ss.yml", small_config(tiny_vectors[0], epochs=2))
    model = tmp_path / "m"
    assert run("train", beir, "--self-supervised", "--out", model, "--config", cfg).exit_code == 0
    r = run("eval", "retrieval", beir, "--model", model, "--format", "json")
    assert r.exit_code == 0, r.output
    assert "built " in r.stderr and f"through model {model}" in r.stderr
    got = json.loads(r.stdout)[0]
    # The same as evaluating an index built with the model.
    idx = tmp_path / "idx"
    pq.write_table(pa.table({"id": table.column("id"), "text": pa.array(
        [f"{t} {x}" for t, x in zip(table.column("title").to_pylist(), table.column("text").to_pylist())])}),
        tmp_path / "c.parquet")
    assert run("build", tmp_path / "c.parquet", "--out", idx, "--model", model).exit_code == 0
    want = json.loads(run("eval", "retrieval", beir, "--index", idx, "--format", "json").stdout)[0]
    assert got["metrics"] == want["metrics"]
    r = run("eval", "retrieval", beir, "--model", model, "--glove", tiny_vectors[0])
    assert r.exit_code == 2
    assert "Error: --model brings its towers and word vectors; --config and --glove cannot be combined with it" in r.stderr


def test_train_init_starts_from_the_checkpoint(tmp_path, tiny_vectors, corpus_file):
    cfg = write_yaml(tmp_path / "ss.yml", small_config(tiny_vectors[0], epochs=2))
    base = tmp_path / "base"
    assert run("train", corpus_file, "--self-supervised", "--out", base, "--config", cfg).exit_code == 0
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": f"{t[0]} {t[1]} lemur", "positive": " ".join(t)}) + "\n"
                             for t in TOPICS * 3), encoding="utf-8")
    sup = write_yaml(tmp_path / "sup.yml", recipe("train_scifact").replace(
        {"embedding.model_name": str(tiny_vectors[0]), "batch_size": 4}))
    r = run("train", pairs, "--out", tmp_path / "zero", "--config", sup, "--init", base, "--epochs", 0)
    assert r.exit_code == 0, r.output
    # Zero epochs from the checkpoint serve what the checkpoint served (grown word included).
    q0, _, _ = load_towers(base)
    q1, _, info = load_towers(tmp_path / "zero")
    texts = ["river boat", f"{MADE_UP} bank", "cat yarn"]
    np.testing.assert_allclose(q1.encode(texts), q0.encode(texts), atol=1e-6)
    assert info["training"]["init"] == str(base) and info["added_words"] == 1
    assert info["config"]["tokeniser"] == json.loads((base / "model.json").read_text())["config"]["tokeniser"]
    r = run("train", pairs, "--out", tmp_path / "more", "--config", sup, "--init", base, "--epochs", 2)
    assert r.exit_code == 0, r.output
    r = run("train", pairs, "--out", tmp_path / "bad", "--config", sup, "--init", tmp_path / "nope")
    assert r.exit_code == 1 and r.stderr == f"Error: model directory not found: {tmp_path / 'nope'}\n"


@pytest.mark.slow  # loads the bundled 400k-word vectors
def test_train_without_config_picks_the_recipe_for_the_data(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": f"{t[0]} {t[1]}", "positive": " ".join(t)}) + "\n"
                             for t in TOPICS * 2), encoding="utf-8")
    r = run("train", pairs, "--out", tmp_path / "m", "--epochs", 1)
    assert r.exit_code == 0, r.output
    assert ("recipe: configs/train_scifact.yml (built in; no --config given and the data holds (query, positive) "
            "pairs)") in r.stderr.splitlines()
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    assert info["config"] == recipe("train_scifact").to_dict()


def test_recipes_equal_their_config_files():
    for name in ("train_scifact", "train_stsb_spread", "self_supervised"):
        assert recipe(name) == load_config(CONFIGS / f"{name}.yml"), name
    assert load_config(CONFIGS / "self_supervised.yml").train.objective == "self_supervised"


def test_data_kind(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"query": "a", "positive": "b"}\n', encoding="utf-8")
    (tmp_path / "s.jsonl").write_text('{"sentence1": "a", "sentence2": "b", "score": 1}\n', encoding="utf-8")
    (tmp_path / "s.csv").write_text("a,b,1\n", encoding="utf-8")
    assert [data_kind(tmp_path / f) for f in ("p.jsonl", "s.jsonl", "s.csv")] == ["pairs", "scored", "scored"]
    assert data_kind(tmp_path) == "pairs"


# --------------------------------------------------------------------------------------------
# rank-based SIF weights


def test_rank_frequencies_give_zipf_sif_weights():
    words = ["the", "of", "cat", "xylophone"]
    enc = TextEncoder(Tokeniser(TokeniserConfig()), Vocabulary(pa.array(words)), np.eye(4, dtype=np.float32))
    cfg = PoolingConfig(weighting="sif", frequencies="rank", sif_a=0.1)
    weights, _, info = sif.fit(enc, cfg, lambda: [], 0)
    p = (1 / np.arange(1, 5)) / (1 / np.arange(1, 5)).sum()
    np.testing.assert_allclose(weights, 0.1 / (0.1 + p), rtol=1e-6)
    assert info["frequencies"] == "rank" and list(np.argsort(weights)) == [0, 1, 2, 3]
