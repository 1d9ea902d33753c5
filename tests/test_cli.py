"""The CLI end to end with click's CliRunner: exit codes and exact output."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli, human_bytes
from glovefaiss.index.hits import render

from .helpers import write_corpus, write_glove_text

TEXTS = ["cat", "cat dog", "fish", "dog, dog & bird"]


@pytest.fixture
def onehot(tmp_path):
    """One-hot word vectors, so every score is known by hand."""
    path = write_glove_text(tmp_path / "onehot.txt", ["cat", "dog", "fish", "bird"], np.eye(4, dtype=np.float32))
    corpus = write_corpus(tmp_path / "docs.parquet", [1, 2, 3, 4], TEXTS, pa.int64())
    return path, corpus


@pytest.fixture
def index_dir(tmp_path, onehot):
    vectors, corpus = onehot
    out = tmp_path / "idx"
    result = CliRunner().invoke(cli, ["build", str(corpus), "--out", str(out), "--glove", str(vectors)])
    assert result.exit_code == 0, result.output
    return out


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_build_summary(tmp_path, onehot):
    vectors, corpus = onehot
    result = run("build", corpus, "--out", tmp_path / "x", "--glove", vectors, "--batch-size", 3)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert f"built {tmp_path / 'x'}: 4 documents in " in result.stderr
    assert "OOV rate 0.0%, 0 empty documents, index " in result.stderr
    tower = sum(f.stat().st_size for f in (tmp_path / "x" / "query_tower").iterdir())
    assert f"(+ query tower {human_bytes(tower)})" in result.stderr
    quiet = run("-q", "build", corpus, "--out", tmp_path / "y", "--glove", vectors)
    assert quiet.exit_code == 0 and quiet.stderr == "" and (tmp_path / "y" / "manifest.json").exists()
    # After the command, as users type it, too.
    late = run("build", corpus, "--out", tmp_path / "z", "--glove", vectors, "--quiet")
    assert late.exit_code == 0 and late.stderr == "" and (tmp_path / "z" / "manifest.json").exists()


def test_query_with_no_known_word_says_so(index_dir):
    result = run("query", index_dir, "cat", "xqzzy qwrtp", "-k", 1, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["query_id"] for line in result.stdout.splitlines()] == [1]
    assert "1 of 2 queries have no word in the vocabulary and get no hits: 2" in result.stderr
    # No hits at all: the columns a search with hits would have.
    assert run("query", index_dir, "xqzzy").stdout == (
        "query_id  rank  id  score  text\n"
        "--------  ----  --  -----  ----\n")
    assert run("query", index_dir, "xqzzy", "--format", "csv").stdout.strip() == "query_id,rank,id,score,text"
    out = index_dir.parent / "none.parquet"
    assert run("query", index_dir, "xqzzy", "--output", out).exit_code == 0
    assert pq.read_schema(out).names == ["query_id", "rank", "id", "score", "text"]
    # and none where the index stores no texts
    assert render([], "csv", with_text=False) == "query_id,rank,id,score\n"


def test_query_table(index_dir):
    result = run("query", index_dir, "cat", "-k", 2)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "query_id  rank  id  score   text\n"
        "--------  ----  --  ------  -------\n"
        "1         1     1   1.0000  cat\n"
        "1         2     2   0.7071  cat dog\n"
    )


def test_query_jsonl_csv_trec(index_dir):
    result = run("query", index_dir, "bird", "fish", "-k", 1, "--format", "jsonl")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"query_id": 1, "rank": 1, "id": 4, "score": pytest.approx(1 / np.sqrt(5), abs=1e-6), "text": "dog, dog & bird"},
        {"query_id": 2, "rank": 1, "id": 3, "score": pytest.approx(1.0, abs=1e-6), "text": "fish"},
    ]
    result = run("query", index_dir, "fish", "-k", 1, "--format", "csv")
    assert result.stdout == "query_id,rank,id,score,text\n1,1,3,1.0,fish\n"
    result = run("query", index_dir, "fish", "-k", 1, "--format", "trec")
    assert result.stdout == "1 Q0 3 1 1.000000 glovefaiss\n"


def test_query_files(tmp_path, index_dir):
    txt = tmp_path / "q.txt"
    txt.write_text("fish\n\ncat\n")
    result = run("query", index_dir, "--queries", txt, "-k", 1, "--format", "jsonl")
    assert [(h["query_id"], h["id"]) for h in map(json.loads, result.stdout.splitlines())] == [(1, 3), (3, 1)]

    jl = tmp_path / "q.jsonl"
    jl.write_text('{"id": "a", "text": "bird"}\n{"id": "b", "text": "cat"}\n')
    out = tmp_path / "hits.json"
    result = run("query", index_dir, "--queries", jl, "-k", 1, "--format", "json", "--output", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert [(h["query_id"], h["id"]) for h in json.loads(out.read_text())] == [("a", 4), ("b", 1)]

    pqf = tmp_path / "q.parquet"
    pq.write_table(pa.table({"id": [7], "text": ["dog"]}), pqf)
    result = run("query", index_dir, "--queries", pqf, "-k", 1, "--format", "trec")
    assert result.stdout.startswith("7 Q0 ")

    beir = tmp_path / "beir.jsonl"  # BEIR's id column is accepted too
    beir.write_text('{"_id": "q9", "text": "dog"}\n')
    result = run("query", index_dir, "--queries", beir, "-k", 1, "--format", "trec")
    assert result.exit_code == 0 and result.stdout.startswith("q9 Q0 ")

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": 1, "text": "cat"}\n')
    result = run("query", index_dir, "--queries", bad)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {bad} has no 'id' or '_id' column; columns present: qid, text; "
        "query files need 'id' (or '_id') and 'text'\n"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["query", "{idx}", "cat", "-k", "0"], "Error: k must be at least 1, got 0\n"),
        (["eval", "recall", "{idx}", "-k", "0"], "Error: k must be at least 1, got 0\n"),  # as query says it
        (["eval", "recall", "{idx}", "-n", "-2"], "Error: n must be at least 1, got -2\n"),
        (["eval", "recall", "{idx}", "-k", "5"], "Error: k must be at most the index's 4 documents, got 5; give a smaller k (-k)\n"),
        (["query", "{idx}", "   "], "Error: every query is empty; give some text to search for\n"),
        (["query", "{tmp}/nowhere", "cat"], "Error: index directory not found: {tmp}/nowhere\n"),
        (["query", "{idx}/manifest.json", "cat"], "Error: {idx}/manifest.json is a file, not an index directory; "
                                                  "give the directory that 'glovefaiss build --out' wrote\n"),
        (["build", "{tmp}/missing.parquet", "--out", "{tmp}/o"], "Error: corpus not found: {tmp}/missing.parquet\n"),
    ],
)
def test_errors_are_one_line(tmp_path, index_dir, args, message):
    fill = {"idx": index_dir, "tmp": tmp_path}
    result = run(*[a.format(**fill) for a in args])
    assert result.exit_code == 1
    assert result.stderr == message.format(**fill)


def test_missing_column_lists_columns(tmp_path, onehot):
    vectors, _ = onehot
    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"doc_id": [1], "body": ["cat"]}), corpus)
    result = run("build", corpus, "--out", tmp_path / "o", "--glove", vectors)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {corpus} has no column 'id'; columns present: doc_id, body; choose one with --id-column\n"
    )
    result = run("build", corpus, "--out", tmp_path / "o", "--glove", vectors, "--id-column", "doc_id",
                 "--text-column", "body")
    assert result.exit_code == 0, result.output


def test_usage_errors(index_dir, tmp_path):
    result = run("query", index_dir)
    assert result.exit_code == 2
    assert "give at least one query TEXT, or --queries FILE" in result.stderr
    result = run("query", index_dir, "cat", "--queries", tmp_path / "q.txt")
    assert result.exit_code == 2


def test_existing_output_needs_overwrite(index_dir, onehot):
    vectors, corpus = onehot
    result = run("build", corpus, "--out", index_dir, "--glove", vectors)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {index_dir} already exists; pass --overwrite to replace it\n"
    assert run("build", corpus, "--out", index_dir, "--glove", vectors, "--overwrite").exit_code == 0


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_shows_the_exception(tmp_path, where):
    args = ["query", tmp_path / "nowhere", "cat"]
    result = run("--verbose", *args) if where == "before" else run(*args, "-v")
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "IndexDirError"
    plain = run(*args)
    assert plain.exit_code == 1 and plain.stderr == f"Error: index directory not found: {tmp_path / 'nowhere'}\n"


@pytest.mark.slow
def test_python_dash_m_and_config_flag_override(tmp_path, onehot):
    vectors, corpus = onehot
    cfg = tmp_path / "c.yml"
    cfg.write_text("build:\n  store_text: false\nembedding:\n  model_name: does-not-matter\n")
    out = tmp_path / "idx"
    proc = subprocess.run(
        [sys.executable, "-m", "glovefaiss", "build", str(corpus), "--out", str(out), "--config", str(cfg),
         "--glove", str(vectors)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["store_text"] is False and manifest["config"]["embedding"]["model_name"] == str(vectors)


def test_sizes_are_shown_in_binary_units():
    assert [human_bytes(n) for n in (512, 1536, 3 * 2**20, 5 * 2**30)] == ["512 B", "1.5 KiB", "3.0 MiB", "5.0 GiB"]


def test_output_beside_a_file_is_one_line(onehot, tmp_path):
    vectors, corpus = onehot
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run("build", corpus, "--out", blocker / "idx", "--glove", vectors)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: cannot write {blocker / 'idx'}: {blocker} is a file, not a directory; "
                             "choose another --out\n")


def test_build_help_states_the_config_defaults():
    from glovefaiss.config import BuildConfig

    text = " ".join(run("build", "--help").output.split())
    assert f"Documents encoded per batch (default: {BuildConfig().batch_size})." in text
    assert f"Rows per Parquet shard (default: {BuildConfig().shard_rows})." in text
