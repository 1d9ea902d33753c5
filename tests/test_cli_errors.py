"""What a new user hit: each failure is one line on stderr naming the fix, with exit code 1."""

from __future__ import annotations

import socket

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli
from glovefaiss.index.search import Index


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No name resolves, and gensim-data lives in an empty temp dir: a download must fail, fast."""
    def no_network(*_, **__):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("GENSIM_DATA_DIR", str(tmp_path / "gensim-data"))


def test_download_failure_is_one_line_without_verbose(tmp_path, tiny_corpus, offline):
    result = run("build", tiny_corpus[0], "--out", tmp_path / "idx", "--glove", "glove-wiki-gigaword-300")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO:")]
    assert lines == ["Error: could not download 'glove-wiki-gigaword-300' with gensim (ValueError: unable to read "
                     f"local cache '{tmp_path / 'gensim-data' / 'information.json'}' during fallback, connect to "
                     "the Internet and retry); connect to the network, or pass --glove PATH to a local vectors file"]
    assert "Traceback" not in result.stderr


def test_download_failure_details_with_verbose(tmp_path, tiny_corpus, offline):
    result = run("--verbose", "build", tiny_corpus[0], "--out", tmp_path / "idx", "--glove", "glove-wiki-gigaword-300")
    assert result.exit_code != 0
    assert "Traceback" in result.stderr  # gensim's own report of the failed request


def test_uint64_ids_above_int64_are_refused_with_the_range(tmp_path, tiny_vectors):
    ids = pa.array([1, 2**63 + 5], pa.uint64())
    pq.write_table(pa.table({"id": ids, "text": ["cat", "dog"]}), tmp_path / "c.parquet")
    result = run("build", tmp_path / "c.parquet", "--out", tmp_path / "idx", "--glove", tiny_vectors[0])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: {tmp_path / 'c.parquet'}: column 'id' has ids above 9223372036854775807, the largest int64 id; "
        "store them as strings (e.g. pyarrow's cast to pa.string())")
    assert "Traceback" not in result.stderr


def test_small_uint64_and_int32_ids_work(tmp_path, tiny_vectors):
    for t in (pa.uint64(), pa.int32()):
        pq.write_table(pa.table({"id": pa.array([7, 9], t), "text": ["cat", "dog"]}), tmp_path / "c.parquet")
        result = run("build", tmp_path / "c.parquet", "--out", tmp_path / "idx", "--glove", tiny_vectors[0], "--overwrite")
        assert result.exit_code == 0, result.stderr
        assert Index.load(tmp_path / "idx").search("cat", 1).ids.tolist() == [[7]]


def test_dictionary_encoded_text_column_is_read_as_strings(tmp_path, tiny_vectors):
    texts = pa.array(["the cat sat", "the dog barked", "the cat sat"]).dictionary_encode()
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "text": texts}), tmp_path / "c.parquet")
    assert pa.types.is_dictionary(pq.read_schema(tmp_path / "c.parquet").field("text").type)
    result = run("build", tmp_path / "c.parquet", "--out", tmp_path / "idx", "--glove", tiny_vectors[0])
    assert result.exit_code == 0, result.stderr
    hits = Index.load(tmp_path / "idx").hits("dog", 1)
    assert [(h["id"], h["text"]) for h in hits] == [(2, "the dog barked")]
