"""Index.search_file / write_hits / like, the hits writer, empty documents, info: against brute force."""

from __future__ import annotations

import io
import json

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glovefaiss.errors import OutputError, QueryError
from glovefaiss.index import faiss_ops
from glovefaiss.index.build import build
from glovefaiss.index.hits import HitsWriter, render
from glovefaiss.index.info import summary
from glovefaiss.index.search import Index
from glovefaiss.index.shards import ShardReader, iter_shard_vectors

from .helpers import config_for, write_corpus, write_glove_text

N_DOCS = 3000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3000 seeded documents over 300 random 16-d words; every tenth has no known word."""
    d = tmp_path_factory.mktemp("docs")
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(300)]
    vec = write_glove_text(d / "v.txt", words, rng.standard_normal((300, 16)).astype(np.float32))
    texts = [" ".join(rng.choice(words, int(rng.integers(1, 7)))) if i % 10 else "zzq unknownword"
             for i in range(N_DOCS)]
    return d, vec, words, texts


@pytest.fixture(scope="module", params=[("flat", "int"), ("flat", "str"), ("ivf", "int"), ("ivf", "str")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def built(request, corpus):
    """(index searched exhaustively, ids, shard vectors) for each family and id kind."""
    d, vec, _, texts = corpus
    kind, id_kind = request.param
    ids = list(range(100, 100 + N_DOCS)) if id_kind == "int" else [f"doc-{i}" for i in range(N_DOCS)]
    c = write_corpus(d / f"{kind}-{id_kind}.parquet", ids, texts, pa.int64() if id_kind == "int" else pa.string())
    out = d / f"idx-{kind}-{id_kind}"
    build([c], out, config_for(vec, index=kind, tune_queries=100), progress=False)
    index = Index.load(out)
    if kind == "ivf":  # every list probed: IVF-Flat is then exact, so brute force is the reference
        faiss_ops.set_params(index.faiss, {"nprobe": faiss.extract_index_ivf(index.faiss).nlist})
        index.set_params_by_length([])  # the setting above for every query length
    reader = ShardReader(out, index.manifest["shards"])
    vectors = np.concatenate([v for _, v in iter_shard_vectors(reader)])
    return index, ids, vectors


def brute_force(vectors, query, k, exclude=()):
    """(rows, scores) of the top k non-empty documents by inner product, ``exclude`` rows left out."""
    scores = vectors @ query
    scores[~np.any(vectors != 0, axis=1)] = -np.inf
    scores[list(exclude)] = -np.inf
    rows = np.argsort(-scores, kind="stable")[:k]
    rows = rows[np.isfinite(scores[rows])]
    return rows, scores[rows]


def check_against(result, qi, vectors, ids, query, k, exclude=()):
    rows, scores = brute_force(vectors, query, k, exclude)
    got = result.rows[qi][result.rows[qi] >= 0]
    assert len(got) == len(rows)
    # Scores equal the reference's and each returned document truly has its score (duplicate texts
    # tie, so ids may come in another order); each id is its row's.
    np.testing.assert_allclose(result.scores[qi][: len(got)], scores, atol=1e-5)
    np.testing.assert_allclose(vectors[got] @ query, scores, atol=1e-5)
    assert [result.ids[qi][j] for j in range(len(got))] == [ids[r] for r in got]
    assert -1 not in result.ids[qi][: len(got)].tolist() and None not in result.ids[qi][: len(got)].tolist()


def test_search_matches_brute_force_and_skips_empty_documents(built, corpus):
    index, ids, vectors = built
    _, _, words, _ = corpus
    rng = np.random.default_rng(1)
    queries = [" ".join(rng.choice(words, 3)) for _ in range(15)]
    empty = set(np.flatnonzero(~np.any(vectors != 0, axis=1)).tolist())
    assert len(empty) == N_DOCS // 10
    for k in (10, 400):  # 400 > the 300 empty documents: they fit in the first search
        res = index.search(queries, k=k)
        assert not empty & set(res.rows.ravel().tolist())
        encoded = index.encode(queries)
        for qi in range(len(queries)):
            check_against(res, qi, vectors, ids, encoded[qi], k)


def test_like_matches_brute_force_and_leaves_the_document_out(built):
    index, ids, vectors = built
    rows = [1, 7, 123, 2999]
    res = index.like([ids[r] for r in rows], k=8)
    assert res.rows.shape == (4, 8)
    for qi, r in enumerate(rows):
        assert r not in res.rows[qi]
        check_against(res, qi, vectors, ids, vectors[r], 8, exclude=[r])


def test_like_unknown_ids_are_named(built):
    index, ids, _ = built
    missing = 99 if isinstance(ids[0], int) else "doc-nope"
    with pytest.raises(QueryError,
                       match=f"^no document with id {missing!r} in the index; like takes ids of indexed documents$"):
        index.like([ids[0], missing])
    if isinstance(ids[0], int):  # not even an id of the index's kind
        with pytest.raises(QueryError, match=r"^id 'x' is not an integer; this index has integer ids$"):
            index.like(["x", "y"])
        with pytest.raises(QueryError, match=r"^no documents with ids 98, 99 in the index; like takes ids of indexed documents$"):
            index.like([98, 99])
    else:
        with pytest.raises(QueryError, match=r"^no documents with ids 'x', 'y' in the index; like takes ids of indexed documents$"):
            index.like(["x", "y"])


def test_like_of_an_empty_document_has_no_hits(built):
    index, ids, _ = built
    res = index.like([ids[0], ids[1]], k=3)  # row 0 has no known word
    assert (res.rows[0] == -1).all() and (res.rows[1] >= 0).all()


def test_int_index_takes_digit_string_ids(built):
    index, ids, _ = built
    if not isinstance(ids[0], int):
        pytest.skip("string ids")
    np.testing.assert_array_equal(index.like([str(ids[5])], 4).rows, index.like([ids[5]], 4).rows)


@pytest.fixture
def crowded(tmp_path):
    """Ten empty documents before three others, which score 1, 0 (a tie with the empty ones) and below 0 to 'up'."""
    vec = write_glove_text(tmp_path / "v.txt", ["up", "down"], np.array([[1, 0], [-1, 0.1]], np.float32))
    texts = ["nothing"] * 10 + ["up", "up down", "down"]
    c = write_corpus(tmp_path / "c.parquet", list(range(13)), texts, pa.int64())
    build([c], tmp_path / "idx", config_for(vec, index="flat"), progress=False)
    return Index.load(tmp_path / "idx")


def test_search_goes_deeper_when_empty_documents_crowd_the_top(crowded):
    res = crowded.search(["up"], k=3)
    assert res.ids[0].tolist() == [10, 11, 12]
    np.testing.assert_allclose(res.scores[0], [1, 0, -1 / np.sqrt(1.01)], atol=1e-6)
    res = crowded.search(["up"], k=6)
    assert res.ids[0].tolist() == [10, 11, 12, -1, -1, -1]


def test_search_file_streams_batches_to_parquet_and_jsonl(built, corpus, tmp_path):
    index, ids, _ = built
    _, _, words, _ = corpus
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(words, 2)) for _ in range(23)]
    texts[4] = "  "
    qids = [f"q{i}" for i in range(23)]
    pq.write_table(pa.table({"id": qids, "text": texts}), tmp_path / "q.parquet")
    run = index.search_file(tmp_path / "q.parquet", 5, tmp_path / "hits.parquet", batch_size=4)
    assert (run.queries, run.hits, run.format, run.empty) == (23, 22 * 5, "parquet", ["q4"])
    table = pq.read_table(tmp_path / "hits.parquet")
    assert table.schema.field("id").type == (pa.int64() if isinstance(ids[0], int) else pa.string())
    assert table.num_rows == 22 * 5 and pq.ParquetFile(tmp_path / "hits.parquet").num_row_groups == 6
    expected = index.hits([t for t in texts if t.strip()], 5, query_ids=[q for q, t in zip(qids, texts) if t.strip()])
    got = table.to_pylist()
    assert [(h["query_id"], h["rank"], h["id"], h["text"]) for h in got] == \
           [(h["query_id"], h["rank"], h["id"], h["text"]) for h in expected]
    np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in expected], rtol=1e-6)
    index.search_file(tmp_path / "q.parquet", 5, tmp_path / "hits.jsonl", batch_size=4)
    lines = [json.loads(line) for line in (tmp_path / "hits.jsonl").read_text().splitlines()]
    assert lines == expected


def test_text_file_blank_lines_are_empty_queries(crowded, tmp_path):
    (tmp_path / "q.txt").write_text("up\n\ndown\n   \n")
    buf = io.StringIO()
    run = crowded.search_file(tmp_path / "q.txt", 1, buf, "jsonl")
    assert (run.queries, run.empty) == (4, [2, 4])
    assert [json.loads(line)["query_id"] for line in buf.getvalue().splitlines()] == [1, 3]
    run = crowded.write_hits([1, 2, 3, 4], ["up", "", "down", "   "], 1, io.StringIO(), "jsonl")
    assert (run.queries, run.empty) == (4, [2, 4])
    with pytest.raises(QueryError, match="^every query is empty; give some text to search for$"):
        crowded.write_hits([1], [" "], 1, io.StringIO())


HITS = [{"query_id": 1, "rank": 1, "id": 7, "score": 0.5, "text": "a, \"b\"\nc"},
        {"query_id": 2, "rank": 1, "id": 8, "score": -0.25, "text": "d"}]


def test_writer_formats_stream_batch_by_batch():
    def batched(fmt):
        buf = io.StringIO()
        with HitsWriter(buf, fmt) as w:
            w.write(HITS[:1])
            w.write([])
            w.write(HITS[1:])
        return buf.getvalue()

    assert batched("json") == render(HITS, "json") == json.dumps(HITS, indent=2) + "\n"
    assert render([], "json") == "[]\n"
    assert batched("jsonl") == "".join(json.dumps(h) + "\n" for h in HITS)
    assert batched("csv") == 'query_id,rank,id,score,text\n1,1,7,0.5,"a, ""b""\nc"\n2,1,8,-0.25,d\n'
    assert batched("trec") == "1 Q0 7 1 0.500000 glovefaiss\n2 Q0 8 1 -0.250000 glovefaiss\n"
    assert batched("table") == ("query_id  rank  id  score    text\n"
                                "--------  ----  --  -------  --------\n"
                                "1         1     7   0.5000   a, \"b\" c\n"
                                "2         1     8   -0.2500  d\n")


@pytest.mark.parametrize("hit, message", [
    ({"query_id": "a b", "id": 1}, "query id 'a b' contains whitespace, which a TREC run line cannot hold; "
                                   "use --format jsonl or ids without spaces"),
    ({"query_id": 1, "id": "doc\t2"}, "document id 'doc\\t2' contains whitespace, which a TREC run line cannot "
                                      "hold; use --format jsonl or ids without spaces"),
])
def test_trec_refuses_ids_with_whitespace(hit, message):
    with pytest.raises(OutputError) as e:
        render([{"rank": 1, "score": 1.0, **hit}], "trec")
    assert str(e.value) == message


def test_unwritable_output_is_a_typed_error_and_a_failed_run_leaves_no_file(tmp_path, crowded):
    target = tmp_path / "missing" / "out.txt"
    with pytest.raises(OutputError) as e:
        HitsWriter(target)
    assert str(e.value) == f"cannot write {target}: No such file or directory"
    with pytest.raises(OutputError, match=f"^cannot write {tmp_path}: Is a directory$"):
        HitsWriter(tmp_path, "jsonl")
    (tmp_path / "old.trec").write_text("kept\n")
    with pytest.raises(OutputError):
        crowded.write_hits(["a b"], ["up"], 1, tmp_path / "old.trec")
    assert (tmp_path / "old.trec").read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet", "idx", "old.trec", "v.txt"]
    with pytest.raises(OutputError, match=r"^parquet hits need a file: give --output FILE.parquet$"):
        HitsWriter(io.StringIO(), "parquet")


def test_repr_and_summary(crowded, tmp_path):
    assert repr(crowded) == f"Index('{tmp_path / 'idx'}', documents=13, dim=2, index='flat (Flat)')"
    s = summary(tmp_path / "idx")
    assert s == {**s, "documents": 13, "empty_documents": 10, "dim": 2, "ids": "int64", "texts": True,
                 "tuning": None, "additions": [], "deletions": [], "model": None}
    assert s["index"] == {"family": "flat", "key": "Flat", "params": {}, "labels": "id"}
    assert s["vectors"] == {"source": str(tmp_path / "v.txt"), "vocab_size": 2, "dim": 2}
    assert s["built_from"] == {"files": [str(tmp_path / "c.parquet")], "id_column": "id", "text_column": "text"}
    assert s["bytes"]["index"] == (tmp_path / "idx" / "index.faiss").stat().st_size
    assert s["bytes"]["query_tower"] == sum(f.stat().st_size for f in (tmp_path / "idx" / "query_tower").iterdir())
    assert summary(crowded.manifest)["bytes"]["query_tower"] is None  # sizes on disk need the directory


def test_summary_reports_tuning(built):
    index, _, _ = built
    s = summary(index.manifest)
    if s["index"]["family"] == "flat":
        assert s["tuning"] is None
    else:
        t = index.manifest["index"]["tuning"]
        assert s["tuning"] == {"params": t["params"], "k": 10, "recall": t["recall"],
                               "recall_lower_bound": t["recall_lower_bound"], "target_recall": 0.95,
                               "reached": t["reached"], "buckets": t["buckets"], "short_buckets": t["short_buckets"],
                               "params_by_length": index.manifest["index"].get("params_by_length", [])}
        assert t["buckets"] and set(t["buckets"]) <= {"1-3 tokens", "4-12 tokens", "13+ tokens"}
        assert s["index"]["params"] == index.manifest["index"]["params"]
