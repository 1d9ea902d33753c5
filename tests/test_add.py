"""glovefaiss add: new documents are searchable, ids stay unique, the directory stays verifiable."""

import json

import pyarrow as pa
import pytest
from click.testing import CliRunner

from glovefaiss.append import add_documents
from glovefaiss.cli import cli
from glovefaiss.errors import CorpusError
from glovefaiss.manifest import verify
from glovefaiss.pipeline import build
from glovefaiss.query import Index

from .conftest import write_corpus
from .test_build_query import config_for


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


def test_add_refuses_ids_already_present(tmp_path, tiny_vectors, tiny_corpus):
    out = tmp_path / "idx"
    build([tiny_corpus[0]], out, config_for(tiny_vectors[0]), progress=False)
    before = (out / "manifest.json").read_text()
    dup = write_corpus(tmp_path / "d.parquet", [10, 99], ["cat", "dog"], pa.int64())
    with pytest.raises(CorpusError) as e:
        add_documents(out, [dup], progress=False)
    assert str(e.value) == "1 ids of the new documents are already in the index or repeated (e.g. 10); ids must be unique"
    assert (out / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")] == []
    strings = write_corpus(tmp_path / "s.parquet", ["x"], ["cat"])
    with pytest.raises(CorpusError, match="the new documents have string ids but the index has int64 ids"):
        add_documents(out, [strings], progress=False)


def test_add_to_ivf_index_keeps_tuned_params(tmp_path, tiny_vectors):
    import numpy as np

    from .conftest import WORDS, random_texts

    rng = np.random.default_rng(3)
    texts = random_texts(rng, 3000, WORDS, 0.0)
    a = write_corpus(tmp_path / "a.parquet", list(range(3000)), texts, pa.int64())
    out = tmp_path / "idx"
    build([a], out, config_for(tiny_vectors[0], index="ivf", tune_queries=100), progress=False)
    params = json.loads((out / "manifest.json").read_text())["index"]["params"]
    b = write_corpus(tmp_path / "b.parquet", [5000], ["zebra-free river boat text"], pa.int64())
    add_documents(out, [b], progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["index"]["params"] == params and m["index"]["ntotal"] == 3001
    idx = Index.load(out)
    assert 5000 in idx.search("river boat", k=3000).ids[0].tolist()
