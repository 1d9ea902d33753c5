"""What a new user hit: each failure is one line on stderr naming the fix, with exit code 1."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys

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


def _built(tmp_path, tiny_vectors, tiny_corpus, string_ids=False):
    out = tmp_path / "idx"
    corpus = tiny_corpus[0]
    if string_ids:
        corpus = tmp_path / "s.parquet"
        pq.write_table(pa.table({"id": [f"d{i}" for i in tiny_corpus[1]], "text": tiny_corpus[2]}), corpus)
    assert run("build", corpus, "--out", out, "--glove", tiny_vectors[0]).exit_code == 0
    return out


@pytest.mark.parametrize("string_ids", [False, True])
def test_delete_removes_documents_and_says_so(tmp_path, tiny_vectors, tiny_corpus, string_ids):
    out = _built(tmp_path, tiny_vectors, tiny_corpus, string_ids)
    gone = ["d10", "d11"] if string_ids else ["10", "11"]
    (tmp_path / "ids.txt").write_text(f"{gone[1]}\n\n", encoding="utf-8")
    result = run("delete", out, gone[0], "--ids-file", tmp_path / "ids.txt")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"deleted 2 documents from {out} in ")
    assert result.stderr.rstrip().endswith("it now holds 6")
    ids = {h["id"] for h in Index.load(out).hits(tiny_corpus[2][:6], k=8)}
    assert ids and not ids & ({"d10", "d11"} if string_ids else {10, 11})
    assert run("verify", out).exit_code == 0
    assert run("delete", out, "d12" if string_ids else "12").exit_code == 0
    assert run("info", out).output.splitlines()[-2:] == ["deleted 2 documents", "deleted 1 document"]


def test_delete_of_unknown_ids_is_refused_or_skipped(tmp_path, tiny_vectors, tiny_corpus):
    out = _built(tmp_path, tiny_vectors, tiny_corpus)
    result = run("delete", out, "99")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: id 99 is not in {out}; nothing was deleted (pass --missing-ok to skip unknown ids)"]
    result = run("delete", out, "10", "98", "99")
    assert result.stderr.splitlines() == [
        f"Error: 2 of the 3 ids to delete are not in {out} (98, 99); nothing was deleted "
        "(pass --missing-ok to skip unknown ids)"]
    assert len(Index.load(out)) == 8
    result = run("delete", out, "10", "98", "99", "--missing-ok")
    assert result.exit_code == 0
    assert result.stderr.startswith(f"deleted 1 document from {out} (2 ids not in the index, skipped) in ")
    result = run("delete", out, "abc")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: id 'abc' is not an integer; the index at {out} has integer ids"]
    result = run("delete", out, *range(11, 18))
    assert result.stderr.splitlines() == [
        f"Error: deleting these 7 ids would leave {out} empty; build a new index instead"]
    result = run("delete", out)
    assert result.exit_code == 2 and "give at least one ID, or --ids-file FILE" in result.stderr
    result = run("delete", tmp_path / "nope", "1")
    assert result.stderr.splitlines() == [f"Error: index directory not found: {tmp_path / 'nope'}"]


def test_add_upsert_replaces_and_plain_add_still_refuses(tmp_path, tiny_vectors, tiny_corpus):
    out = _built(tmp_path, tiny_vectors, tiny_corpus)
    new = tmp_path / "new.parquet"
    pq.write_table(pa.table({"id": pa.array([16, 30], pa.int64()), "text": ["river boat", "stock market"]}), new)
    result = run("add", out, new)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: 1 ids of the new documents are already in the index or repeated (e.g. 16); ids must be unique "
        "(pass --upsert to replace documents already in the index)"]
    result = run("add", out, new, "--upsert")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        f"added 2 documents (1 of them replacing documents with the same id) to {out} in ")
    assert result.stderr.rstrip().endswith("it now holds 9")
    assert f"added 2 documents from {new} (1 of them replacing documents with the same id)" in run("info", out).output
    idx = Index.load(out)
    assert [h["text"] for h in idx.hits(["river boat"], k=8) if h["id"] == 16] == ["river boat"]
    assert idx.manifest.empty_documents == 1  # document 16 was empty; its replacement has words


def test_resume_of_a_complete_index_says_so(tmp_path, tiny_vectors, tiny_corpus):
    out = _built(tmp_path, tiny_vectors, tiny_corpus)
    result = run("build", tiny_corpus[0], "--out", out, "--glove", tiny_vectors[0], "--resume")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {out} is already a complete index; nothing to resume (pass --overwrite to rebuild it)"]
    result = run("build", tiny_corpus[0], "--out", out, "--glove", tiny_vectors[0], "--resume", "--overwrite")
    assert result.exit_code == 0


def test_resume_with_changed_input_is_refused_without_overwrite(tmp_path, tiny_vectors, tiny_corpus):
    import dataclasses

    from glovefaiss.index.build import build
    from glovefaiss.io.corpus import Corpus, open_corpus

    from .helpers import config_for

    class Interrupted(Corpus):
        def batches(self, batch_size):
            for i, batch in enumerate(super().batches(batch_size)):
                if i == 2:
                    raise KeyboardInterrupt
                yield batch

    out = tmp_path / "idx"
    plain = open_corpus([tiny_corpus[0]])
    with pytest.raises(KeyboardInterrupt):
        build(Interrupted(**{f.name: getattr(plain, f.name) for f in dataclasses.fields(Corpus)}), out,
              config_for(tiny_vectors[0], shard_rows=2, batch_size=2, threads=1), progress=False)
    partial = tmp_path / ".idx.partial"
    assert (partial / "build-state.json").is_file()
    args = ["build", tiny_corpus[0], "--out", out, "--glove", tiny_vectors[0], "--batch-size", 2, "--resume"]
    result = run(*args, "--shard-rows", 3)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: cannot resume {out}: the config changed since the interrupted build (build.shard_rows 2 → 3); "
        "build with the interrupted build's input and settings, or pass --overwrite to start it afresh"]
    assert (partial / "build-state.json").is_file()  # kept for a resume with the original input
    other = tmp_path / "other.parquet"
    pq.write_table(pq.read_table(tiny_corpus[0]), other)
    result = run(*[other if a == tiny_corpus[0] else a for a in args], "--shard-rows", 2)
    assert result.stderr.splitlines()[-1] == (
        f"Error: cannot resume {out}: the corpus files changed since the interrupted build; build with the "
        "interrupted build's input and settings, or pass --overwrite to start it afresh")
    result = run(*args, "--shard-rows", 3, "--overwrite")
    assert result.exit_code == 0, result.output
    assert "building from the start (--overwrite)" in result.stderr
    assert Index.load(out).manifest.timings["resumed_documents"] == 0


def _distinct_texts(words, n):
    """``n`` texts of two known words each, no two alike (so no two document vectors alike)."""
    return [f"{a} {b}" for a, b in itertools.islice(itertools.combinations(words, 2), n)]


def test_an_index_key_with_more_lists_than_vectors_is_one_line_naming_the_fix(tmp_path, tiny_vectors):
    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": list(range(30)), "text": _distinct_texts(tiny_vectors[1], 30)}), corpus)
    r = run("build", corpus, "--out", tmp_path / "i", "--glove", tiny_vectors[0], "--index-key", "IVF99999,Flat")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1] == ("Error: an index of 99999 lists needs at least 99999 distinct vectors to train on, and "
                                         "30 are there; give fewer lists (e.g. IVF1 in place of IVF99999 in "
                                         "--index-key) or --index auto")


def test_an_index_key_with_more_lists_than_distinct_documents_counts_the_distinct_ones(tmp_path, tiny_vectors):
    corpus = tmp_path / "c.parquet"
    texts = _distinct_texts(tiny_vectors[1], 3) * 100  # 300 documents, 3 different
    pq.write_table(pa.table({"id": list(range(300)), "text": texts}), corpus)
    r = run("build", corpus, "--out", tmp_path / "i", "--glove", tiny_vectors[0], "--index-key", "IVF4,Flat")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1] == ("Error: an index of 4 lists needs at least 4 distinct vectors to train on, and "
                                         "3 are there; give fewer lists (e.g. IVF1 in place of IVF4 in --index-key) "
                                         "or --index auto")


def test_a_small_sample_for_pq_codebooks_is_one_warning_not_one_per_sub_quantizer(tmp_path, tiny_vectors):
    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": list(range(30)), "text": _distinct_texts(tiny_vectors[1], 30)}), corpus)
    r = subprocess.run([sys.executable, "-m", "glovefaiss", "build", str(corpus), "--out", str(tmp_path / "i"),
                        "--glove", str(tiny_vectors[0]), "--index-key", "IVF2,PQ4x4fs"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "please provide" not in r.stderr  # FAISS's own warnings, one per sub-quantizer
    assert [line for line in r.stderr.splitlines() if "FAISS advises" in line] == [
        "WARNING: training on 30 vectors, where FAISS advises at least 624 (39 per centroid of its k-means); "
        "recall may suffer: give fewer lists or a smaller code, or more documents"]


@pytest.mark.parametrize("texts, message", [
    (["qqq zzz", "xxyy"], "Error: none of the 2 documents has a word the vectors know (unknown words include 'qqq', "
                          "'xxyy', 'zzz'); check the vectors ({glove}) and the tokeniser settings"),
    (["", "  ...  "], "Error: all 2 documents are empty (no words at all); check that --text-column names the column "
                      "of texts"),
])
def test_a_corpus_of_only_empty_documents_is_refused_naming_the_cause(tmp_path, tiny_vectors, texts, message):
    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": texts}), corpus)
    r = run("build", corpus, "--out", tmp_path / "i", "--glove", tiny_vectors[0])
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1] == message.format(glove=tiny_vectors[0])
