"""Training data readers: pairs (JSONL/Parquet), BEIR directories, scored pairs (CSV/TSV/Parquet); the tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glovefaiss.config import TokeniserConfig
from glovefaiss.errors import ConfigError
from glovefaiss.train.data import PairData, Tokenizer, load_training_data


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def beir(tmp_path):
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    write_jsonl(d / "corpus.jsonl", [{"_id": "d1", "title": "Cats", "text": "Cats purr."},
                                     {"_id": "d2", "title": "", "text": "Stocks fell."},
                                     {"_id": "d3", "title": "Rivers", "text": "Boats float."}])
    write_jsonl(d / "queries.jsonl", [{"_id": "q1", "text": "purring cats"}, {"_id": "q2", "text": "markets"},
                                      {"_id": "q3", "text": "boats"}])
    (d / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq2\td3\t0\n")
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td3\t1\n")
    return d


def test_beir_directory_and_split_file(beir):
    train = load_training_data(beir)
    assert train.kind == "pairs" and train.documents == ["Cats Cats purr.", "Stocks fell.", "Rivers Boats float."]
    assert train.pairs.tolist() == [[0, 0], [1, 1]]  # the score-0 judgment is not a pair
    assert train.relevant() == {0: {0}, 1: {1}}
    test = load_training_data(beir / "qrels" / "test.tsv")
    assert test.pairs.tolist() == [[2, 2]] and test.queries[2] == "boats"


def test_beir_errors(beir):
    with pytest.raises(ConfigError, match="is not a BEIR directory with a 'train' split .* splits present: test"):
        (beir / "qrels" / "train.tsv").unlink()
        load_training_data(beir)
    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnope\t1\n")
    with pytest.raises(ConfigError, match=r"dev.tsv:2: document 'nope' is not in corpus.jsonl"):
        load_training_data(beir / "qrels" / "dev.tsv")


def test_beir_trec_qrels_and_parquet_corpus(beir):
    """Training reads what evaluation reads: 4-column TREC qrels, a Parquet corpus named corpus.jsonl."""
    (beir / "qrels" / "trec.tsv").write_text("q2 0 d3 1\nq1 0 d1 2\nq1 0 d2 0\n".replace(" ", "\t"))
    data = load_training_data(beir / "qrels" / "trec.tsv")
    assert data.pairs.tolist() == [[1, 2], [0, 0]]  # file order, score 0 left out
    pq.write_table(pa.table({"_id": ["d1", "d2", "d3"], "title": ["Cats", None, ""], "text": ["a", "b", "c"]}),
                   beir / "corpus.jsonl")
    assert load_training_data(beir).documents == ["Cats a", "b", "c"]


def test_pairs_jsonl_and_parquet(tmp_path):
    rows = [{"query": "a cat", "positive": "cats purr", "negative": "stocks"},
            {"query": "a cat", "positive": "kittens", "negative": "stocks"},
            {"query": "money", "positive": "stocks", "negative": "cats purr"}]
    jl = load_training_data(write_jsonl(tmp_path / "p.jsonl", rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    pa_ = load_training_data(tmp_path / "p.parquet")
    for d in (jl, pa_):
        assert d.queries == ["a cat", "money"] and d.documents == ["cats purr", "stocks", "kittens"]
        assert d.pairs.tolist() == [[0, 0], [0, 2], [1, 1]] and d.negatives.tolist() == [1, 1, 0]
    no_neg = load_training_data(write_jsonl(tmp_path / "n.jsonl", [{"anchor": "x", "positive": "y"}]))
    assert no_neg.negatives is None and no_neg.pairs.tolist() == [[0, 0]]
    with pytest.raises(ConfigError, match=r"cannot tell what this data is \(columns: a, b\)"):
        load_training_data(write_jsonl(tmp_path / "bad.jsonl", [{"a": 1, "b": 2}]))


def test_scored_csv_without_header_tsv_with_header_parquet(tmp_path):
    (tmp_path / "s.csv").write_text('"A plane, taking off.",An air plane is taking off.,5.0\n"He said ""hi"".",Hi.,1.5\n')
    csv = load_training_data(tmp_path / "s.csv")
    assert csv.kind == "scored"
    assert csv.first == ["A plane, taking off.", 'He said "hi".'] and csv.second == ["An air plane is taking off.", "Hi."]
    assert csv.scores.tolist() == [5.0, 1.5]
    (tmp_path / "s.tsv").write_text('genre\tscore\tsentence1\tsentence2\nnews\t2.5\tA "quoted\tB\n')
    tsv = load_training_data(tmp_path / "s.tsv")
    assert tsv.first == ['A "quoted'] and tsv.second == ["B"] and tsv.scores.tolist() == [2.5]
    pq.write_table(pa.table({"sentence1": ["a"], "sentence2": ["b"], "score": [0.5]}), tmp_path / "s.parquet")
    assert load_training_data(tmp_path / "s.parquet").scores.tolist() == [0.5]
    np.testing.assert_allclose(csv.scaled_scores(0.0, 5.0), [1.0, 0.3])
    (tmp_path / "bad.csv").write_text("a,b,3\nc,d,high\n")
    with pytest.raises(ConfigError, match=r"bad.csv:2: expected sentence1, sentence2, score"):
        load_training_data(tmp_path / "bad.csv")


def test_holdout_split_by_query():
    data = PairData.from_triplets([(f"q{i % 10}", f"d{i}") for i in range(30)])
    rest, held = data.split_queries(0.2, seed=0)
    assert len(held) == 6 and len(rest) == 24  # 2 of 10 queries, with all 3 of their pairs each
    assert not set(rest.pairs[:, 0]) & set(held.pairs[:, 0])
    assert held.pairs.tolist() == data.split_queries(0.2, seed=0)[1].pairs.tolist()


def test_tokenizer_vocabulary_and_ids():
    class Vec:
        words = pa.array(["the", "cat", "sat", "mat"])

    tok = Tokenizer.build([["The cat sat.", "the mat, the zebra"]], TokeniserConfig(), Vec())
    assert tok.vocab == ["<pad>", "the", "cat", "mat", "sat"]  # most frequent first, ties by word; zebra left out
    ids = tok(["the zebra sat", "", "cat"])
    assert ids.tolist() == [[1, 4], [0, 0], [2, 0]]
    with pytest.raises(ConfigError, match="a model vocabulary starts with '<pad>'"):
        Tokenizer(TokeniserConfig(), ["the"])
