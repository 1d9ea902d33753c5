"""Shard readers: vectors held across passes, texts taken few or many at a time, over several shards."""

import json

import numpy as np
import pyarrow as pa

from glovefaiss.index.build import build
from glovefaiss.index.shards import FEW_ROWS, ShardReader, TextStore, iter_shard_vectors

from .helpers import config_for, write_corpus, write_glove_text


def _built(tmp_path, n=450):
    rng = np.random.default_rng(21)
    words = [f"w{i}" for i in range(60)]
    vec = write_glove_text(tmp_path / "v.txt", words, rng.standard_normal((60, 8)).astype(np.float32))
    texts = [" ".join(rng.choice(words, int(rng.integers(1, 9)))) + f" é{i}" for i in range(n)]
    corpus = write_corpus(tmp_path / "c.parquet", list(range(n)), texts, pa.int64())
    out = tmp_path / "idx"
    build([corpus], out, config_for(vec, shard_rows=100, row_group_rows=30), progress=False)
    return out, json.loads((out / "manifest.json").read_text())["shards"], texts


def test_held_vectors_serve_later_passes_without_the_files(tmp_path):
    out, shards, _ = _built(tmp_path)
    assert len(shards) == 5
    reader = ShardReader(out, shards)
    reader.hold_vectors()
    first = [(ids.to_pylist(), v.copy()) for ids, v in iter_shard_vectors(reader, batch_rows=64)]
    for s in shards:
        (out / s["file"]).unlink()
    again = [(ids.to_pylist(), v) for ids, v in iter_shard_vectors(reader)]
    assert [i for i, _ in again] == [i for i, _ in first]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(again, first))
    assert sum(len(i) for i, _ in again) == 450


def test_text_store_takes_few_rows_as_it_takes_many(tmp_path):
    out, shards, texts = _built(tmp_path)
    store = TextStore(out, shards)
    rows = np.random.default_rng(3).permutation(450)
    n = 10 * (FEW_ROWS // 10 + 5)
    many = store.take(rows[:n])  # past FEW_ROWS: per shard, vectorised
    few = [t for start in range(0, n, 10) for t in store.take(rows[start:start + 10].tolist())]
    assert many == few == [texts[r] for r in rows[:n]]
    assert store.take([449, 0, 100, 99]) == [texts[449], texts[0], texts[100], texts[99]]  # shard edges
    assert store.take(np.array([], np.int64)) == []
