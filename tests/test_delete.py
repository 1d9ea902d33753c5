"""delete and add --upsert: the result is the index a fresh build of the remaining documents makes."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from glovefaiss.errors import CorpusError
from glovefaiss.index.add import add_documents
from glovefaiss.index.build import build
from glovefaiss.index.delete import delete_documents
from glovefaiss.index.layout import read_manifest, verify
from glovefaiss.index.search import Index

from .helpers import config_for, topic_vectors, write_corpus, write_glove_text

N = 3000


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """3,000 seeded documents over 12 topics of 16-d word vectors; every 50th has no known word."""
    d = tmp_path_factory.mktemp("docs")
    rng = np.random.default_rng(5)
    topics, per_topic = 12, 20
    words, rows = topic_vectors(rng, 16, topics, per_topic, 0.6)
    vec = write_glove_text(d / "v.txt", words, np.asarray(rows, np.float32))
    texts = []
    for i in range(N):
        if i % 50 == 7:
            texts.append("zzunknown qqword")
            continue
        t = rng.integers(topics)
        texts.append(" ".join(f"t{t}w{j}" for j in rng.integers(0, per_topic, int(rng.integers(3, 12)))))
    queries = [" ".join(f"t{t}w{j}" for j in rng.integers(0, per_topic, 3)) for t in rng.integers(0, topics, 60)]
    return d, vec, texts, queries


def _ids(string_ids: bool, n: int = N) -> list:
    return [f"doc-{i}" for i in range(n)] if string_ids else list(range(100, 100 + n))


def _corpus(path, ids, texts, string_ids):
    return write_corpus(path, ids, texts, None if string_ids else pa.int64())


def _built(tmp_path, docs, kind, string_ids):
    """(ids, texts, queries, config) of the index of every document at ``tmp_path/idx``."""
    _, vec, texts, queries = docs
    ids = _ids(string_ids)
    cfg = config_for(vec, index=kind, shard_rows=1000, tune_queries=200)
    build([_corpus(tmp_path / "full.parquet", ids, texts, string_ids)], tmp_path / "idx", cfg, progress=False)
    return ids, texts, queries, cfg


def _same_answers(a, b, queries):
    ra, rb = Index.load(a).search(queries, k=10), Index.load(b).search(queries, k=10)
    assert ra.ids.tolist() == rb.ids.tolist()
    np.testing.assert_array_equal(ra.scores, rb.scores)


def _same_counts(a, b):
    ma, mb = read_manifest(a), read_manifest(b)
    for key in ("documents", "empty_documents", "tokens", "oov_tokens", "oov_rate", "top_oov_words", "anisotropy"):
        assert getattr(ma, key) == getattr(mb, key), key
    assert ma.index["sha256"] == mb.index["sha256"]  # the same FAISS index, byte for byte
    assert ma.index["params"] == mb.index["params"]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
@pytest.mark.parametrize("string_ids", [False, True])
def test_delete_equals_a_fresh_build_without_the_documents(tmp_path, docs, kind, string_ids):
    ids, texts, queries, cfg = _built(tmp_path, docs, kind, string_ids)
    # All of the second shard, scattered rows of the others (empty documents among them).
    gone = set(range(1000, 2000)) | set(range(7, N, 50)[:10]) | set(range(3, N, 97))
    keep = [i for i in range(N) if i not in gone]
    result = delete_documents(tmp_path / "idx", [ids[i] for i in sorted(gone)])
    assert result.deleted == len(gone) and result.documents == len(keep)

    rest = _corpus(tmp_path / "rest.parquet", [ids[i] for i in keep], [texts[i] for i in keep], string_ids)
    build([rest], tmp_path / "fresh", cfg, progress=False)
    _same_answers(tmp_path / "idx", tmp_path / "fresh", queries)
    _same_counts(tmp_path / "idx", tmp_path / "fresh")
    verify(tmp_path / "idx")
    hits = Index.load(tmp_path / "idx").hits(queries, k=N)
    assert not {h["id"] for h in hits} & {ids[i] for i in gone}  # never returned again

    m = read_manifest(tmp_path / "idx")
    assert m.index["type"] == kind and ("nprobe" in m.index["params"]) == (kind == "ivf")
    assert [s["file"] for s in m.shards] == ["shards/part-00000.parquet", "shards/part-00002.parquet"]
    assert m.deletions[0]["documents"] == len(gone) and m.deletions[0]["missing"] == 0
    # Adding after a shard was removed numbers the new shard after the last one, not by count.
    more = _corpus(tmp_path / "more.parquet", _ids(string_ids, N + 5)[N:], texts[:5], string_ids)
    add_documents(tmp_path / "idx", [more], progress=False)
    assert read_manifest(tmp_path / "idx").shards[-1]["file"] == "shards/part-00003.parquet"
    verify(tmp_path / "idx")


def test_unknown_ids_delete_nothing_unless_missing_ok(tmp_path, docs):
    _, vec, texts, _ = docs
    ids = _ids(False, 100)
    build([_corpus(tmp_path / "c.parquet", ids, texts[:100], False)], tmp_path / "idx", config_for(vec), progress=False)
    before = (tmp_path / "idx" / "manifest.json").read_text()
    with pytest.raises(CorpusError) as e:
        delete_documents(tmp_path / "idx", [100, 5, 6])
    assert str(e.value) == (f"2 of the 3 ids to delete are not in {tmp_path / 'idx'} (5, 6); nothing was deleted "
                            "(pass --missing-ok to skip unknown ids)")
    assert (tmp_path / "idx" / "manifest.json").read_text() == before
    r = delete_documents(tmp_path / "idx", ["100", 5], missing_ok=True)  # ids from a command line are strings
    assert (r.deleted, r.missing, r.documents) == (1, [5], 99)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")] == []
    with pytest.raises(CorpusError, match="would leave .* empty; build a new index instead"):
        delete_documents(tmp_path / "idx", ids[1:])


@pytest.mark.parametrize("kind", ["flat", "ivf"])
@pytest.mark.parametrize("string_ids", [False, True])
def test_upsert_equals_a_fresh_build_of_old_minus_replaced_plus_new(tmp_path, docs, kind, string_ids):
    ids, texts, queries, cfg = _built(tmp_path, docs, kind, string_ids)
    # 20 replaced (an empty document among them gets words, a document loses its words), 10 new.
    replaced = list(range(0, 2000, 100)) + [7]
    new_ids = [ids[i] for i in replaced] + _ids(string_ids, N + 10)[N:]
    new_texts = [texts[(i + 1) % N] for i in replaced[:-1]] + ["t1w1 t1w2"] + texts[500:510]
    new_texts[0] = "nothing known here"
    upd = _corpus(tmp_path / "upd.parquet", new_ids, new_texts, string_ids)
    with pytest.raises(CorpusError, match="pass --upsert to replace documents already in the index"):
        add_documents(tmp_path / "idx", [upd], progress=False)
    r = add_documents(tmp_path / "idx", [upd], progress=False, upsert=True)
    assert (r.added, r.replaced, r.documents) == (len(new_ids), len(replaced), N + 10)

    keep = [i for i in range(N) if i not in set(replaced)]
    rest = _corpus(tmp_path / "rest.parquet", [ids[i] for i in keep], [texts[i] for i in keep], string_ids)
    build([rest, upd], tmp_path / "fresh", cfg, progress=False)
    _same_answers(tmp_path / "idx", tmp_path / "fresh", queries + new_texts[1:5])
    _same_counts(tmp_path / "idx", tmp_path / "fresh")
    verify(tmp_path / "idx")
    hit = Index.load(tmp_path / "idx").hits(["t1w1 t1w2"], k=1)[0]
    assert hit["text"] == "t1w1 t1w2"
    m = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert m["additions"][-1]["replaced"] == len(replaced) and m["additions"][-1]["documents"] == len(new_ids)


def test_upsert_without_existing_ids_is_a_plain_add(tmp_path, docs):
    _, vec, texts, _ = docs
    build([_corpus(tmp_path / "a.parquet", [1, 2], texts[:2], False)], tmp_path / "idx", config_for(vec),
          progress=False)
    before = read_manifest(tmp_path / "idx").index
    r = add_documents(tmp_path / "idx", [_corpus(tmp_path / "b.parquet", [3], texts[2:3], False)], progress=False,
                      upsert=True)
    assert (r.added, r.replaced, r.documents) == (1, 0, 3)
    assert read_manifest(tmp_path / "idx").index["key"] == before["key"]
