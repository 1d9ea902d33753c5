"""glovefaiss add: new documents are searchable, ids stay unique, the directory stays verifiable."""

import json

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli
from glovefaiss.errors import CorpusError
from glovefaiss.index import faiss_ops as faiss_index
from glovefaiss.index.add import add_documents
from glovefaiss.index.build import build
from glovefaiss.index.families import retune
from glovefaiss.index.layout import verify
from glovefaiss.index.search import Index
from glovefaiss.index.shards import ShardReader, iter_shard_vectors

from .helpers import config_for, write_corpus


@pytest.mark.parametrize("string_ids", [False, True])
def test_add_then_query_finds_new_documents(tmp_path, tiny_vectors, string_ids):
    ids_a = ["a1", "a2"] if string_ids else [1, 2]
    ids_b = ["b1", "b2", "b3"] if string_ids else [3, 4, 5]
    t = None if string_ids else pa.int64()
    a = write_corpus(tmp_path / "a.parquet", ids_a, ["the cat sat on the mat", "stock market fell"], t)
    b = write_corpus(tmp_path / "b.parquet", ids_b, ["river boat bank", "dog barked loudly", "kitten yarn"], t)
    out = tmp_path / "idx"
    build([a], out, config_for(tiny_vectors[0], shard_rows=2), progress=False)
    old = Index.load(out)
    result = CliRunner().invoke(cli, ["add", str(out), str(b)])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"added 3 documents to {out} in ")
    assert result.stderr.rstrip().endswith("it now holds 5")
    idx = Index.load(out)
    assert len(idx) == 5
    hits = idx.hits(["dog barked loudly", "the cat sat on the mat"], k=1)
    assert [(h["id"], h["text"]) for h in hits] == [(ids_b[1], "dog barked loudly"), (ids_a[0], "the cat sat on the mat")]
    m = json.loads((out / "manifest.json").read_text())
    assert m["documents"] == 5 and [s["rows"] for s in m["shards"]] == [2, 2, 1]
    assert m["additions"][0]["documents"] == 3
    assert len(verify(out)) == 3 * 3 + 1 + 6 + (0 if string_ids else 2)  # shards + their texts, index, tower, id lookup
    assert len(old) == 2 and old.hits("stock market fell", k=1)[0]["id"] == ids_a[1]  # the old reader is unaffected


def test_add_files_with_other_column_names(tmp_path, tiny_vectors):
    a = write_corpus(tmp_path / "a.parquet", [1, 2], ["the cat sat on the mat", "stock market fell"], pa.int64())
    out = tmp_path / "idx"
    build([a], out, config_for(tiny_vectors[0]), progress=False)
    b = tmp_path / "b.parquet"
    pq.write_table(pa.table({"doc_id": pa.array([3], pa.int64()), "body": ["river boat bank"]}), b)
    r = CliRunner().invoke(cli, ["add", str(out), str(b)])
    assert r.exit_code == 1 and "has no column 'id'" in r.stderr and "--id-column" in r.stderr
    r = CliRunner().invoke(cli, ["add", str(out), str(b), "--id-column", "doc_id", "--text-column", "body"])
    assert r.exit_code == 0, r.output
    assert Index.load(out).hits("river boat bank", k=1)[0]["id"] == 3
    added = json.loads((out / "manifest.json").read_text())["additions"][-1]
    assert (added["id_column"], added["text_column"]) == ("doc_id", "body")


def test_add_refuses_ids_already_present(tmp_path, tiny_vectors, tiny_corpus):
    out = tmp_path / "idx"
    build([tiny_corpus[0]], out, config_for(tiny_vectors[0]), progress=False)
    before = (out / "manifest.json").read_text()
    dup = write_corpus(tmp_path / "d.parquet", [10, 99], ["cat", "dog"], pa.int64())
    with pytest.raises(CorpusError) as e:
        add_documents(out, [dup], progress=False)
    assert str(e.value) == ("1 ids of the new documents are already in the index or repeated (e.g. 10); ids must be "
                            "unique (pass --upsert to replace documents already in the index)")
    assert (out / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")] == []
    strings = write_corpus(tmp_path / "s.parquet", ["x"], ["cat"])
    with pytest.raises(CorpusError, match="the new documents have string ids but the index has int64 ids"):
        add_documents(out, [strings], progress=False)


def _long_texts(rng, n, words):
    # 5-12 words each: identical documents (tied scores) are then vanishingly rare.
    return [" ".join(words[j] for j in rng.integers(0, len(words), int(rng.integers(5, 13)))) for _ in range(n)]


def test_retune_reaches_the_target_where_a_stale_setting_does_not(tmp_path, random_setup):
    rng, words, _, vec_path, _ = random_setup
    a = write_corpus(tmp_path / "a.parquet", list(range(5000)), _long_texts(rng, 5000, words), pa.int64())
    out = tmp_path / "idx"
    config = config_for(vec_path, index="ivf", tune_queries=200)
    build([a], out, config, progress=False)
    m = json.loads((out / "manifest.json").read_text())
    ids, vectors = zip(*iter_shard_vectors(ShardReader(out, m["shards"])))
    ids, vectors = np.concatenate([i.to_numpy() for i in ids]), np.concatenate(vectors)
    queries = rng.standard_normal((200, vectors.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :10]]  # brute force

    def recall(index):
        found = index.search(queries, 10)[1]
        return np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.tolist(), truth.tolist())])

    index = faiss_index.load(out / m["index"]["file"])
    faiss_index.set_params(index, {"nprobe": 1})
    assert recall(index) < 0.9  # the stale setting falls short
    info = retune(index, out, m["shards"], config.build, True, queries)
    assert info["params"]["nprobe"] > 1 and info["tuning"]["reached"]
    assert recall(index) == pytest.approx(info["tuning"]["recall"], abs=1e-4)
    assert recall(index) >= config.build.target_recall


def test_add_retunes_the_index_for_the_enlarged_corpus(tmp_path, random_setup):
    rng, words, _, vec_path, _ = random_setup
    a = write_corpus(tmp_path / "a.parquet", list(range(3000)), _long_texts(rng, 3000, words), pa.int64())
    out = tmp_path / "idx"
    build([a], out, config_for(vec_path, index="ivf", tune_queries=100), progress=False)
    before = json.loads((out / "manifest.json").read_text())["index"]
    b = write_corpus(tmp_path / "b.parquet", list(range(3000, 9000)), _long_texts(rng, 6000, words), pa.int64())
    r = CliRunner().invoke(cli, ["add", str(out), str(b)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    retuned = m["additions"][-1]["retuned"]
    assert retuned["params_before"] == before["params"] and retuned["params"] == m["index"]["params"]
    assert m["index"]["tuning"]["queries"] > 0 and m["index"]["tuning"]["tried"] != before["tuning"]["tried"]
    assert m["index"]["tuning"]["query_source"] == "windows of 1-3 and 4-12 tokens and whole documents, from sampled documents"
    params = ", ".join(f"{k}={v}" for k, v in retuned["params"].items())
    assert (f"search retuned: nprobe={before['params']['nprobe']} -> {params}, "
            f"recall@10 {retuned['recall']:.3f}, p50 ") in r.stderr
    idx = Index.load(out)
    assert faiss.extract_index_ivf(idx.faiss).nprobe == retuned["params"]["nprobe"]
    # The file itself carries the new setting too (for plain faiss.read_index users).
    assert faiss.extract_index_ivf(faiss.read_index(str(out / "index.faiss"))).nprobe == retuned["params"]["nprobe"]
    assert verify(out)


def test_add_without_texts_keeps_the_parameters_when_too_few_tuning_queries(tmp_path, random_setup, caplog):
    rng, words, _, vec_path, _ = random_setup
    a = write_corpus(tmp_path / "a.parquet", list(range(3000)), _long_texts(rng, 3000, words), pa.int64())
    out = tmp_path / "idx"
    build([a], out, config_for(vec_path, index="ivf", tune_queries=100, store_text=False), progress=False)
    before = json.loads((out / "manifest.json").read_text())["index"]
    b = write_corpus(tmp_path / "b.parquet", [5000, 5001], ["w1 w2 w3 w4 w5", "zzz"], pa.int64())
    with caplog.at_level("WARNING", logger="glovefaiss.index.add"):
        r = add_documents(out, [b], progress=False)
    assert r.retuned is None
    m = json.loads((out / "manifest.json").read_text())
    assert m["index"]["params"] == before["params"] and m["index"]["tuning"] == before["tuning"]
    assert "only 1 tuning queries (windows of 1-3 and 4-12 tokens and whole documents, from sampled documents (the added ones)), fewer than " \
           "100: search parameters kept ({'nprobe': " in caplog.text
    assert 5000 in Index.load(out).search("w1 w2 w3 w4 w5", k=5).ids[0].tolist()
    # Enough added documents: retuned with windows of the added ones.
    c = write_corpus(tmp_path / "c.parquet", list(range(6000, 7000)), _long_texts(rng, 1000, words), pa.int64())
    r = add_documents(out, [c], progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert r.retuned is not None and m["index"]["tuning"]["query_source"].endswith("(the added ones)")


def test_add_retunes_with_the_builds_tuning_query_file_from_any_directory(tmp_path, random_setup, monkeypatch):
    rng, words, _, vec_path, _ = random_setup
    write_corpus(tmp_path / "a.parquet", list(range(3000)), _long_texts(rng, 3000, words), pa.int64())
    (tmp_path / "q.txt").write_text("\n".join(_long_texts(rng, 150, words)) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["build", "a.parquet", "--out", "idx", "--index", "ivf", "--glove", str(vec_path),
                                 "--tuning-queries", "q.txt"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert m["config"]["build"]["tuning_queries"] == str(tmp_path / "q.txt")
    write_corpus(tmp_path / "b.parquet", list(range(3000, 3500)), _long_texts(rng, 500, words), pa.int64())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = add_documents(tmp_path / "idx", [tmp_path / "b.parquet"], progress=False)
    m = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert r.retuned is not None
    assert m["index"]["tuning"]["query_source"] == f"150 queries from {tmp_path / 'q.txt'}"


def test_add_to_ivf_index_finds_the_new_document(tmp_path, tiny_vectors):
    from .helpers import WORDS, random_texts

    rng = np.random.default_rng(3)
    texts = random_texts(rng, 3000, WORDS, 0.0)
    a = write_corpus(tmp_path / "a.parquet", list(range(3000)), texts, pa.int64())
    out = tmp_path / "idx"
    build([a], out, config_for(tiny_vectors[0], index="ivf", tune_queries=100), progress=False)
    b = write_corpus(tmp_path / "b.parquet", [5000], ["zebra-free river boat text"], pa.int64())
    add_documents(out, [b], progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["index"]["ntotal"] == 3001 and "retuned" in m["additions"][-1]
    idx = Index.load(out)
    assert 5000 in idx.search("river boat", k=3000).ids[0].tolist()


def test_add_drops_the_builds_comparison_of_families_when_it_retunes(tmp_path, random_setup, monkeypatch):
    from glovefaiss.index import faiss_ops

    rng, words, _, vec_path, _ = random_setup
    monkeypatch.setattr(faiss_ops, "FLAT_MAX_FLOATS", 0)  # auto: IVF, its forecast, candidates
    a = write_corpus(tmp_path / "a.parquet", list(range(3000)), _long_texts(rng, 3000, words), pa.int64())
    out = tmp_path / "idx"
    build([a], out, config_for(vec_path, index="auto", tune_queries=100), progress=False)
    assert json.loads((out / "manifest.json").read_text())["index"]["candidates"][0]["forecast"]
    b = write_corpus(tmp_path / "b.parquet", list(range(3000, 9000)), _long_texts(rng, 6000, words), pa.int64())
    r = CliRunner().invoke(cli, ["add", str(out), str(b)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert "retuned" in m["additions"][-1] and "candidates" not in m["index"]
    assert "auto compared" not in CliRunner().invoke(cli, ["info", str(out)]).output
