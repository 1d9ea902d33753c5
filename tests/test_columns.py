"""build --columns: extra corpus columns stored in the shards and returned in every hit."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli
from glovefaiss.config import from_dict
from glovefaiss.errors import ConfigError, CorpusError
from glovefaiss.index.add import add_documents
from glovefaiss.index.build import build
from glovefaiss.index.delete import delete_documents
from glovefaiss.index.layout import read_manifest, verify
from glovefaiss.index.search import Index

from .helpers import config_for

TEXTS = ["the cat sat on the mat", "stock market fell", "river boat bank", "dog barked loudly", "xylophones"]


def _corpus(path, ids, texts):
    pq.write_table(pa.table({
        "id": pa.array(ids, pa.int64()), "text": texts,
        "title": [f"T{i}" for i in ids], "year": pa.array([2000 + i for i in ids], pa.int32()),
        "body": ["unused"] * len(ids)}), path)
    return path


def test_columns_are_stored_and_returned_in_hits(tmp_path, tiny_vectors):
    c = _corpus(tmp_path / "c.parquet", list(range(5)), TEXTS)
    out = tmp_path / "idx"
    r = CliRunner().invoke(cli, ["build", str(c), "--out", str(out), "--glove", str(tiny_vectors[0]),
                                 "--columns", "title,year", "--shard-rows", "2"])
    assert r.exit_code == 0, r.output
    hits = Index.load(out).hits(["stock market fell", "dog barked loudly"], k=1)
    assert [(h["id"], h["title"], h["year"]) for h in hits] == [(1, "T1", 2001), (3, "T3", 2003)]
    assert pq.read_schema(out / "shards" / "part-00000.parquet").names == ["id", "vector", "text", "title", "year"]
    assert read_manifest(out).corpus["columns"] == ["title", "year"]
    q = CliRunner().invoke(cli, ["query", str(out), "river boat bank", "-k", "1", "--format", "jsonl"])
    assert '"title": "T2", "year": 2002' in q.stdout

    # Deleting rewrites a shard with its columns; added and upserted documents bring theirs.
    delete_documents(out, [0])
    add_documents(out, [_corpus(tmp_path / "u.parquet", [1, 9], ["kitten yarn", "rates rise"])], upsert=True,
                  progress=False)
    idx = Index.load(out)
    got = {h["id"]: (h["title"], h["year"]) for h in idx.hits(["kitten yarn", "rates rise", "the cat sat"], k=1)}
    assert got == {1: ("T1", 2001), 9: ("T9", 2009)}
    verify(out)


def test_columns_without_stored_texts_and_from_the_config(tmp_path, tiny_vectors):
    c = _corpus(tmp_path / "c.parquet", list(range(5)), TEXTS)
    cfg = config_for(tiny_vectors[0], columns="title", store_text=False)
    build([c], tmp_path / "idx", cfg, progress=False)
    hit = Index.load(tmp_path / "idx").hits("river boat bank", k=1)[0]
    assert hit == {"query_id": 1, "rank": 1, "id": 2, "score": pytest.approx(1.0), "title": "T2"}


def test_columns_config_is_a_list_of_names():
    assert from_dict({"build": {"columns": ["a", "b"]}}).build.columns == ("a", "b")
    assert from_dict({"build": {"columns": "a, b"}}).build.columns == ("a", "b")
    with pytest.raises(ConfigError, match="'build.columns' must be a list of names, got 3"):
        from_dict({"build": {"columns": 3}})


def test_unknown_or_reserved_column_is_refused(tmp_path, tiny_vectors):
    c = _corpus(tmp_path / "c.parquet", list(range(5)), TEXTS)
    r = CliRunner().invoke(cli, ["build", str(c), "--out", str(tmp_path / "idx"), "--glove", str(tiny_vectors[0]),
                                 "--columns", "title,url"])
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1] == (f"Error: {c} has no column 'url'; columns present: id, text, title, year, "
                                         "body; choose the stored ones with --columns")
    r = CliRunner().invoke(cli, ["build", str(c), "--out", str(tmp_path / "idx"), "--glove", str(tiny_vectors[0]),
                                 "--columns", "score"])
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1] == (
        "Error: column 'score' cannot be stored with --columns: the index has its own 'score' (names taken: id, "
        "vector, text, query_id, rank, score, and the id and text columns)")
    assert not (tmp_path / "idx").exists()


def test_add_needs_the_stored_columns_with_their_types(tmp_path, tiny_vectors):
    c = _corpus(tmp_path / "c.parquet", list(range(5)), TEXTS)
    build([c], tmp_path / "idx", config_for(tiny_vectors[0], columns=["title", "year"]), progress=False)
    plain = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": pa.array([7], pa.int64()), "text": ["cat"], "title": ["x"]}), plain)
    with pytest.raises(CorpusError, match=f"{plain} has no column 'year'; columns present: id, text, title"):
        add_documents(tmp_path / "idx", [plain], progress=False)
    typed = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": pa.array([7], pa.int64()), "text": ["cat"], "title": ["x"],
                             "year": ["1999"]}), typed)
    with pytest.raises(CorpusError, match="column 'year' has type string in the new documents but int32 in the index"):
        add_documents(tmp_path / "idx", [typed], progress=False)


def test_stored_columns_in_table_csv_and_parquet_output(tmp_path):
    from glovefaiss.index.hits import render

    # As Index.hits makes them: the text, then the stored columns.
    hits = [{"query_id": 1, "rank": 1, "id": 7, "score": 0.5, "text": "cat", "year": 2001, "title": "A"},
            {"query_id": 1, "rank": 2, "id": 8, "score": 0.25, "text": "dog", "year": 1999, "title": "B"}]
    table = render(hits, "table").splitlines()
    assert table[0].split() == ["query_id", "rank", "id", "score", "year", "title", "text"]  # wide text last
    assert table[2].split() == ["1", "1", "7", "0.5000", "2001", "A", "cat"]
    # Every other format in one order, the hits' own.
    order = list(hits[0])
    assert render(hits, "csv").splitlines() == [",".join(order), "1,1,7,0.5,cat,2001,A", "1,2,8,0.25,dog,1999,B"]
    assert list(json.loads(render(hits, "json"))[0]) == order
    assert list(json.loads(render(hits, "jsonl").splitlines()[0])) == order
    from glovefaiss.index.hits import HitsWriter

    with HitsWriter(tmp_path / "h.parquet") as w:
        w.write(hits)
    got = pq.read_table(tmp_path / "h.parquet")
    assert got.column_names == order
    assert got.column("year").to_pylist() == [2001, 1999] and got.column("title").to_pylist() == ["A", "B"]


def test_output_without_hits_still_names_the_stored_columns(tmp_path, tiny_vectors):
    c = _corpus(tmp_path / "c.parquet", list(range(5)), TEXTS)
    out = tmp_path / "idx"
    build([c], out, config_for(tiny_vectors[0], columns="year,title"), progress=False)
    csv_out = CliRunner().invoke(cli, ["query", str(out), "qqqzzz", "--format", "csv"])
    assert csv_out.exit_code == 0, csv_out.output
    assert csv_out.stdout == "query_id,rank,id,score,text,year,title\n"
    table = CliRunner().invoke(cli, ["query", str(out), "qqqzzz"])
    assert table.stdout.splitlines()[0].split() == ["query_id", "rank", "id", "score", "year", "title", "text"]
    Index.load(out).write_hits([1], ["qqqzzz"], output=tmp_path / "h.parquet")
    schema = pq.read_schema(tmp_path / "h.parquet")
    assert schema.names == ["query_id", "rank", "id", "score", "text", "year", "title"]
    assert schema.field("year").type == pa.int32()  # as stored, not guessed from values there are none of
