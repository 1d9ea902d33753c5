"""build → index directory → Index.load → search, checked against a brute-force numpy reference."""

import json

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from glovefaiss.errors import CorpusError, IndexDirError, QueryError
from glovefaiss.index.build import build
from glovefaiss.index.search import Index

from .helpers import config_for, random_texts, reference_vector, write_corpus


def brute_force(doc_vectors, queries, k):
    scores = queries @ doc_vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_flat_search_equals_brute_force(tmp_path, random_setup):
    rng, words, matrix, vec_path, texts = random_setup
    ids = rng.permutation(10_000)[: len(texts)].astype(np.int64)
    corpus = write_corpus(tmp_path / "c.parquet", ids, texts, pa.int64())
    cfg = config_for(vec_path, batch_size=37, shard_rows=101, row_group_rows=13, threads=2)
    result = build([corpus], tmp_path / "idx", cfg, progress=False)
    assert result.documents == len(texts)
    assert [s["rows"] for s in result.manifest.shards] == [101] * 9 + [88]

    stored = ds.dataset(tmp_path / "idx" / "shards", format="parquet").to_table()
    assert stored.column("id").to_pylist() == ids.tolist()
    assert stored.column("text").to_pylist() == texts
    doc_vectors = np.asarray(stored.column("vector").to_pylist(), np.float32)
    reference = np.vstack([reference_vector(t, words, matrix) for t in texts])
    np.testing.assert_allclose(doc_vectors, reference, atol=1e-5)

    idx = Index.load(tmp_path / "idx")
    queries = random_texts(rng, 40, words, oov_rate=0.0)
    queries = [q if q.strip(".! ") else "w1" for q in queries]
    k = 15
    res = idx.search(queries, k=k)
    qv = np.vstack([reference_vector(q, words, matrix) for q in queries])
    ref_scores, ref_rows = brute_force(reference, qv, k)
    np.testing.assert_allclose(res.scores, ref_scores, atol=1e-5)
    row_of = {int(i): r for r, i in enumerate(ids)}
    for qi in range(len(queries)):
        # Ties may order differently: every returned id must score what the reference says,
        # and every id strictly above the k-th reference score must be returned.
        rows = [row_of[int(i)] for i in res.ids[qi]]
        np.testing.assert_allclose(reference[rows] @ qv[qi], res.scores[qi], atol=1e-5)
        strict = ref_scores[qi] > ref_scores[qi, -1] + 1e-5
        assert set(ids[ref_rows[qi][strict]].tolist()) <= set(res.ids[qi].tolist())
    assert np.all(np.diff(res.scores, axis=1) <= 1e-6)


def test_plain_faiss_read_index_returns_corpus_ids(tmp_path, tiny_vectors, tiny_corpus):
    corpus, ids, texts = tiny_corpus
    build([corpus], tmp_path / "idx", config_for(tiny_vectors[0]), progress=False)
    raw = faiss.read_index(str(tmp_path / "idx" / "index.faiss"))
    idx = Index.load(tmp_path / "idx")
    q = idx.encode(["the cat sat on the mat"])
    _, labels = raw.search(q, 1)
    assert labels[0, 0] == 10
    assert raw.ntotal == len(ids)


def test_manifest_records_the_build(tmp_path, tiny_vectors, tiny_corpus):
    corpus, ids, texts = tiny_corpus
    result = build([corpus], tmp_path / "idx", config_for(tiny_vectors[0]), progress=False)
    m = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert m == result.manifest.to_dict()
    assert m["format_version"] == 2
    assert m["documents"] == 8
    assert m["empty_documents"] == 2  # "" and "Xylophones!"
    assert m["vectors"]["source"] == str(tiny_vectors[0].resolve())
    assert len(m["vectors"]["sha256"]) == 64
    assert m["vectors"]["vocab_size"] == 20 and m["dim"] == 8
    assert m["tokeniser"] == {"type": "word", "lowercase": True, "strip_punctuation": True, "max_len": None}
    assert m["index"]["type"] == "flat" and m["index"]["labels"] == "id" and m["index"]["ntotal"] == 8
    assert m["shards"][0]["file"] == "shards/part-00000.parquet" and m["shards"][0]["rows"] == 8
    assert m["config"]["embedding"]["model_name"] == str(tiny_vectors[0])
    # "of", "a", "with", "xylophones" are not in the tiny vocabulary.
    assert m["top_oov_words"] == [["a", 2], ["of", 1], ["with", 1], ["xylophones", 1]]
    assert m["oov_tokens"] == 5 and m["tokens"] == 31


def test_string_ids_and_directory_of_files(tmp_path, tiny_vectors):
    d = tmp_path / "corpus"
    d.mkdir()
    write_corpus(d / "b.parquet", ["doc-c", "doc-d"], ["the dog barked", "stock market fell"])
    write_corpus(d / "a.parquet", ["doc-a", "doc-b"], ["the cat sat", "kitten played with yarn"])
    (d / "notes.txt").write_text("ignored")
    build([d], tmp_path / "idx", config_for(tiny_vectors[0]), progress=False)
    idx = Index.load(tmp_path / "idx")
    hits = idx.hits(["stock market", "kitten yarn"], k=1)
    assert [(h["query_id"], h["id"], h["text"]) for h in hits] == [
        (1, "doc-d", "stock market fell"), (2, "doc-b", "kitten played with yarn")]
    res = idx.search("the dog", k=4)
    assert res.ids.dtype == object and res.ids[0, 0] == "doc-c"
    shard_ids = pq.read_table(tmp_path / "idx" / "shards" / "part-00000.parquet").column("id").to_pylist()
    assert shard_ids == ["doc-a", "doc-b", "doc-c", "doc-d"]  # files in name order


def test_no_store_text(tmp_path, tiny_vectors, tiny_corpus):
    build([tiny_corpus[0]], tmp_path / "idx", config_for(tiny_vectors[0], store_text=False), progress=False)
    assert pq.read_schema(tmp_path / "idx" / "shards" / "part-00000.parquet").names == ["id", "vector"]
    hits = Index.load(tmp_path / "idx").hits("the cat sat on the mat", k=1)
    assert hits == [{"query_id": 1, "rank": 1, "id": 10, "score": pytest.approx(hits[0]["score"])}]


def test_k_beyond_corpus_and_unknown_query(tmp_path, tiny_vectors, tiny_corpus):
    build([tiny_corpus[0]], tmp_path / "idx", config_for(tiny_vectors[0]), progress=False)
    idx = Index.load(tmp_path / "idx")
    res = idx.search(["cat", "qqqq"], k=50)
    assert res.ids.shape == (2, 8)
    assert (res.ids[1] == -1).all() and np.isneginf(res.scores[1]).all()
    assert idx.hits("qqqq", k=3) == []
    with pytest.raises(QueryError, match="k must be at least 1"):
        idx.search("cat", k=0)
    with pytest.raises(QueryError, match="query 1 is empty"):
        idx.search("  ", k=1)


def test_duplicate_ids_fail_and_leave_nothing(tmp_path, tiny_vectors):
    corpus = write_corpus(tmp_path / "c.parquet", [1, 2, 2, 3, 3], ["a", "b", "c", "d", "e"], pa.int64())
    with pytest.raises(CorpusError) as e:
        build([corpus], tmp_path / "idx", config_for(tiny_vectors[0]), progress=False)
    assert str(e.value) == ("the corpus has 2 duplicate ids (e.g. 2, 3); ids must be unique; drop the repeated "
                            "rows, or choose another column with --id-column")
    assert not (tmp_path / "idx").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")] == []


def test_overwrite_rules(tmp_path, tiny_vectors, tiny_corpus):
    cfg = config_for(tiny_vectors[0])
    out = tmp_path / "idx"
    build([tiny_corpus[0]], out, cfg, progress=False)
    with pytest.raises(IndexDirError, match="already exists; pass --overwrite"):
        build([tiny_corpus[0]], out, cfg, progress=False)
    build([tiny_corpus[0]], out, cfg, overwrite=True, progress=False)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    for overwrite in (True, False):  # without --overwrite too: the fix is another --out, not --overwrite
        with pytest.raises(IndexDirError, match="is not a glovefaiss index; refusing to overwrite it, choose another --out"):
            build([tiny_corpus[0]], other, cfg, overwrite=overwrite, progress=False)
    assert (other / "precious.txt").read_text() == "keep"


def test_same_input_gives_identical_files(tmp_path, random_setup):
    _, _, _, vec_path, texts = random_setup
    corpus = write_corpus(tmp_path / "c.parquet", list(range(len(texts))), texts, pa.int64())
    a = build([corpus], tmp_path / "a", config_for(vec_path, batch_size=50, shard_rows=300), progress=False).manifest
    b = build([corpus], tmp_path / "b", config_for(vec_path, batch_size=333, shard_rows=300, threads=1),
              progress=False).manifest
    assert a.shards == b.shards
    assert a.index["sha256"] == b.index["sha256"]


def test_parts_written_apart_then_finished_once_equal_one_build(tmp_path, random_setup):
    from glovefaiss.index.writer import finish_index, new_manifest, write_shards
    from glovefaiss.io.corpus import open_corpus
    from glovefaiss.tower.encoder import encoder_from_config

    _, _, _, vec_path, texts = random_setup
    a = write_corpus(tmp_path / "a.parquet", list(range(600)), texts[:600], pa.int64())
    b = write_corpus(tmp_path / "b.parquet", list(range(600, len(texts))), texts[600:], pa.int64())
    cfg = config_for(vec_path, shard_rows=300, index="ivf", tune_queries=200)
    whole = build([a, b], tmp_path / "whole", cfg, progress=False).manifest

    # The seam a distributed build uses: each part into shard numbers of its own, the index once.
    out = tmp_path / "parts"
    out.mkdir()
    encoder, _ = encoder_from_config(cfg)
    bc = cfg.build
    parts = [write_shards(open_corpus([path]), out, encoder, bc, store_text=True, row_group_rows=bc.row_group_rows,
                          first_shard=first) for path, first in ((b, 2), (a, 0))]  # in any order
    assert [s["file"] for s in parts[0].shards] == ["shards/part-00002.parquet", "shards/part-00003.parquet"]
    shards = parts[1].shards + parts[0].shards
    everything = open_corpus([a, b])
    finished = finish_index(out, shards, pa.chunked_array(parts[1].ids + parts[0].ids), everything, cfg, encoder,
                            encoder.dim)
    m = new_manifest(cfg, everything, encoder, shards, finished, {}, {"query": {"files": {}}}, {})
    assert m.shards == whole.shards
    assert m.index["sha256"] == whole.index["sha256"] and m.index["params"] == whole.index["params"]
    assert (m.documents, m.tokens, m.oov_rate, m.top_oov_words, m.anisotropy) == (
        whole.documents, whole.tokens, whole.oov_rate, whole.top_oov_words, whole.anisotropy)
    assert sorted(p.name for p in out.iterdir()) == ["ids_order.npy", "ids_sorted.npy", "index.faiss", "shards",
                                                     "texts"]


def test_manifest_reads_and_writes_back_unchanged(tmp_path, tiny_vectors, tiny_corpus):
    from glovefaiss.index.layout import Manifest, read_manifest, write_manifest

    out = tmp_path / "idx"
    build([tiny_corpus[0]], out, config_for(tiny_vectors[0]), progress=False, extra_manifest={"model": {"id": "m1"}})
    m = read_manifest(out)
    assert isinstance(m, Manifest) and m.extra == {"model": {"id": "m1"}}
    assert m.labels_are_ids and m.index_file == "index.faiss" and m.query_tower_dir == "query_tower"
    assert m.document_tower is None and m.document_tower_dir == "query_tower"
    # The JSON view, for code that reads manifest["key"]:
    assert m["model"] == {"id": "m1"} and m["documents"] == 8 and m.get("document_tower") is None
    assert "document_tower" not in m and "anisotropy" in m and "extra" not in m
    keys = list(json.loads((out / "manifest.json").read_text()))
    assert keys[-3:] == ["timings", "model", "pooling"]
    copy = tmp_path / "copy"
    copy.mkdir()
    write_manifest(copy, m)
    assert (copy / "manifest.json").read_bytes() == (out / "manifest.json").read_bytes()


@pytest.mark.parametrize("drop", ["shards", "index"])
def test_manifest_without_a_required_section_is_refused(tmp_path, tiny_vectors, tiny_corpus, drop):
    out = tmp_path / "idx"
    build([tiny_corpus[0]], out, config_for(tiny_vectors[0]), progress=False)
    m = json.loads((out / "manifest.json").read_text())
    del m[drop]
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexDirError, match=f"corrupt \\(no '{drop}'\\); rebuild the index"):
        Index.load(out)
