"""glovefaiss query and info as a new user meets them: outputs, --like, empty queries, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli

from .helpers import write_corpus, write_glove_text

TEXTS = ["cat", "cat dog", "fish", "dog, dog & bird", "xqzzy"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(params=["int", "str"])
def id_kind(request):
    return request.param


@pytest.fixture
def index_dir(id_kind, tmp_path):
    """One-hot word vectors over five documents, the last without a known word."""
    vectors = write_glove_text(tmp_path / "onehot.txt", ["cat", "dog", "fish", "bird"], np.eye(4, dtype=np.float32))
    ids = [1, 2, 3, 4, 5] if id_kind == "int" else ["a", "b", "c", "d", "e"]
    corpus = write_corpus(tmp_path / "docs.parquet", ids, TEXTS, pa.int64() if id_kind == "int" else pa.string())
    result = run("build", corpus, "--out", tmp_path / "idx", "--glove", vectors)
    assert result.exit_code == 0, result.output
    return tmp_path / "idx"


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


def test_unwritable_output_is_one_line(index_dir, tmp_path):
    for target in (tmp_path / "no" / "such" / "out.txt", tmp_path / "no" / "such" / "out.parquet"):
        result = run("query", index_dir, "cat", "--output", target)
        assert result.exit_code == 1
        assert result.stderr == f"Error: cannot write {target}: No such file or directory\n"
    (tmp_path / "q.txt").write_text("cat\n")
    result = run("query", index_dir, "--queries", tmp_path / "q.txt", "--output", tmp_path)
    assert (result.exit_code, result.stderr) == (1, f"Error: cannot write {tmp_path}: Is a directory\n")
    result = run("query", index_dir, "--like", "3", "--output", tmp_path / "no" / "out.jsonl")
    assert (result.exit_code, result.stderr) == (1, f"Error: cannot write {tmp_path / 'no' / 'out.jsonl'}: "
                                                    "No such file or directory\n")
    assert "Traceback" not in result.output


def test_parquet_inferred_from_the_output_suffix(index_dir, tmp_path):
    out = tmp_path / "hits.parquet"
    result = run("query", index_dir, "cat", "fish", "-k", 2, "--output", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == f"wrote 4 hits of 2 queries to {out} (parquet)\n"
    rows = pq.read_table(out).to_pylist()
    assert [(r["query_id"], r["rank"], r["text"]) for r in rows][:3] == [(1, 1, "cat"), (1, 2, "cat dog"), (2, 1, "fish")]
    assert (rows[3]["query_id"], rows[3]["score"]) == (2, 0) and rows[3]["text"] != "xqzzy"  # never the empty one
    result = run("query", index_dir, "cat", "-k", 1, "--output", out)
    assert (result.exit_code, result.stderr) == (0, f"wrote 1 hit of 1 query to {out} (parquet)\n")
    result = run("query", index_dir, "cat", "--format", "parquet")
    assert (result.exit_code, result.stderr) == (1, "Error: parquet hits need a file: give --output FILE.parquet\n")


def test_queries_file_to_jsonl_same_hits_as_arguments(index_dir, tmp_path):
    pq.write_table(pa.table({"id": ["q1", "q2"], "text": ["cat", "fish"]}), tmp_path / "q.parquet")
    result = run("query", index_dir, "--queries", tmp_path / "q.parquet", "-k", 2, "--output", tmp_path / "h.jsonl",
                 "--batch-size", 1)
    assert result.exit_code == 0, result.output
    from_file = jsonl((tmp_path / "h.jsonl").read_text())
    from_args = jsonl(run("query", index_dir, "cat", "fish", "-k", 2, "--format", "jsonl").stdout)
    assert [h["query_id"] for h in from_file] == ["q1", "q1", "q2", "q2"]
    assert [{**h, "query_id": None} for h in from_file] == [{**h, "query_id": None} for h in from_args]


def test_empty_queries_are_skipped_alike_from_arguments_and_text_files(index_dir, tmp_path):
    result = run("query", index_dir, "cat", "", "fish", "-k", 1, "--format", "jsonl")
    assert result.exit_code == 0
    assert [h["query_id"] for h in jsonl(result.stdout)] == [1, 3]
    assert result.stderr == "1 of 3 queries are empty and skipped: 2\n"
    (tmp_path / "q.txt").write_text("cat\n  \nfish\n")
    result = run("query", index_dir, "--queries", tmp_path / "q.txt", "-k", 1, "--format", "jsonl")
    assert result.exit_code == 0
    assert [h["query_id"] for h in jsonl(result.stdout)] == [1, 3]
    assert result.stderr == "1 of 3 queries are empty and skipped: 2\n"
    result = run("query", index_dir, " ", "")
    assert (result.exit_code, result.stderr) == (1, "Error: every query is empty; give some text to search for\n")


def test_trec_refuses_query_ids_with_whitespace(index_dir, tmp_path):
    (tmp_path / "q.jsonl").write_text('{"id": "a b", "text": "cat"}\n')
    result = run("query", index_dir, "--queries", tmp_path / "q.jsonl", "--format", "trec")
    assert result.exit_code == 1
    assert result.stderr == ("Error: query id 'a b' contains whitespace, which a TREC run line cannot hold; "
                             "use --format jsonl or ids without spaces\n")
    result = run("query", index_dir, "--queries", tmp_path / "q.jsonl", "--output", tmp_path / "run.trec")
    assert result.exit_code == 1 and not (tmp_path / "run.trec").exists()


def test_trec_refuses_document_ids_with_whitespace(tmp_path):
    vectors = write_glove_text(tmp_path / "v.txt", ["cat"], np.ones((1, 2), np.float32))
    corpus = write_corpus(tmp_path / "d.parquet", ["doc 1"], ["cat"], pa.string())
    assert run("build", corpus, "--out", tmp_path / "idx", "--glove", vectors).exit_code == 0
    result = run("query", tmp_path / "idx", "cat", "--format", "trec")
    assert result.exit_code == 1
    assert result.stderr == ("Error: document id 'doc 1' contains whitespace, which a TREC run line cannot hold; "
                             "use --format jsonl or ids without spaces\n")


def test_like_finds_neighbours_without_the_document(index_dir, id_kind):
    ids = ["1", "2"] if id_kind == "int" else ["a", "b"]
    result = run("query", index_dir, "--like", *ids, "-k", 1, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    q1, q2 = (int(i) if id_kind == "int" else i for i in ids)
    assert [(h["query_id"], h["id"], h["text"]) for h in jsonl(result.stdout)] == [(q1, q2, "cat dog"), (q2, q1, "cat")]
    result = run("query", index_dir, "--like", ids[1], "-k", 3, "--format", "jsonl")
    hits = jsonl(result.stdout)
    assert [h["text"] for h in hits] == ["cat", "dog, dog & bird", "fish"]  # itself and the empty document left out
    np.testing.assert_allclose([h["score"] for h in hits], [1 / np.sqrt(2), 2 / np.sqrt(10), 0], atol=1e-6)


def test_like_unknown_id_is_named(index_dir, id_kind):
    result = run("query", index_dir, "--like", "zz")
    expected = "no document with id 'zz' in the index; like takes ids of indexed documents" if id_kind == "str" else \
        "id 'zz' is not an integer; this index has integer ids"
    assert (result.exit_code, result.stderr) == (1, f"Error: {expected}\n")
    result = run("query", index_dir, "--like", "99")
    shown = "99" if id_kind == "int" else "'99'"  # an integer id as the index holds it, a string quoted
    assert (result.exit_code, result.stderr) == (
        1, f"Error: no document with id {shown} in the index; like takes ids of indexed documents\n")
    result = run("query", index_dir, "--like")
    assert result.exit_code == 2 and "give at least one document ID with --like" in result.stderr


def test_empty_documents_never_come_back(index_dir):
    result = run("query", index_dir, "fish", "-k", 10, "--format", "jsonl")
    assert result.exit_code == 0
    texts = [h["text"] for h in jsonl(result.stdout)]
    assert texts[0] == "fish" and sorted(texts[1:]) == ["cat", "cat dog", "dog, dog & bird"]  # not "xqzzy"


def test_a_build_with_many_unknown_words_names_them_and_info_shows_the_token_limit(tmp_path):
    vectors = write_glove_text(tmp_path / "onehot.txt", ["cat", "dog", "fish", "bird"], np.eye(4, dtype=np.float32))
    corpus = write_corpus(tmp_path / "docs.parquet", [1, 2], ["cat 5±2 µm", "dog µm"], pa.int64())
    config = tmp_path / "c.yml"
    config.write_text("tokeniser:\n  max_len: 128\n")
    result = run("build", corpus, "--out", tmp_path / "idx", "--glove", vectors, "--config", config)
    assert result.exit_code == 0, result.output
    assert (f"unknown words most often: 'µm', '5±2' (glovefaiss info {tmp_path / 'idx'} lists them; check the "
            "vectors and the tokeniser settings)") in result.stderr.splitlines()
    assert ", at most 128 tokens a text" in run("info", tmp_path / "idx").stdout.splitlines()[1]


def test_info(index_dir, id_kind):
    result = run("info", index_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    kind = "int64" if id_kind == "int" else "string"
    assert lines[0] == f"{index_dir}: 5 documents (1 empty: no known word), {kind} ids, texts stored"
    assert lines[1].startswith(f"vectors: {index_dir.parent / 'onehot.txt'} (4 words x 4), mean pooling, tokeniser word")
    assert lines[2] == "unknown tokens: 12.5%, most often 'xqzzy'"
    assert lines[3] == "index: flat (Flat), search with defaults"
    assert lines[4].startswith("sizes: index ") and "query tower" in lines[4]
    assert lines[5].startswith(f"built from {index_dir.parent / 'docs.parquet'} by glovefaiss ")
    data = json.loads(run("info", index_dir, "--json").stdout)
    assert (data["documents"], data["empty_documents"], data["dim"], data["index"]["family"]) == (5, 1, 4, "flat")
    assert (data["oov_rate"], data["top_unknown_words"]) == (0.125, ["xqzzy"])
    result = run("info", index_dir.parent / "nowhere")
    assert (result.exit_code, result.stderr) == (1, f"Error: index directory not found: {index_dir.parent / 'nowhere'}\n")


def test_a_reader_that_goes_away_ends_the_query_quietly(index_dir, tmp_path, id_kind):
    import os
    import subprocess
    import sys

    if id_kind == "str":
        pytest.skip("one id kind is enough")
    queries = tmp_path / "many.txt"
    queries.write_text("cat dog\n" * 20000)  # far more output than a pipe buffers
    proc = subprocess.Popen([sys.executable, "-m", "glovefaiss", "query", str(index_dir), "--queries", str(queries),
                             "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.stdout.read(100)
    proc.stdout.close()  # as `| head -c 100` does
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (1, b"")  # click's ending for a closed pipe: no message, no traceback


def test_query_ids_given_twice_are_answered_and_named_in_a_note(index_dir, tmp_path, id_kind):
    if id_kind != "int":
        pytest.skip("one id kind is enough")
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": 1, "text": "cat"}\n{"id": 1, "text": "fish"}\n{"id": 2, "text": "dog"}\n')
    result = run("query", index_dir, "--queries", q, "-k", 1, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert [h["query_id"] for h in jsonl(result.stdout)] == [1, 1, 2]
    assert result.stderr == "query id 1 is given to more than one query; their hits share it\n"
