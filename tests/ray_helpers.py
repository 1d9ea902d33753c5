"""Seeded corpora for the Ray engine's tests, and the files of an index to compare byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .helpers import config_for, write_glove_text

WORDS = [f"w{i}" for i in range(300)]


def ray_vectors(directory: Path) -> Path:
    rng = np.random.default_rng(3)
    return write_glove_text(directory / "v.glove.txt", WORDS, rng.standard_normal((len(WORDS), 12)).astype(np.float32))


def ray_corpus(directory: Path, sizes=(1234, 3, 1501), string_ids: bool = False, seed: int = 0,
               first_id: int = 0) -> list[str]:
    """Parquet files of ``sizes`` rows (row groups of 333), with words the vectors know and some they do not."""
    rng = np.random.default_rng(seed)
    files, start = [], first_id
    for i, n in enumerate(sizes):
        texts = [" ".join(rng.choice(WORDS, rng.integers(0, 9))) + (f" zz{j % 7}q" if rng.random() < .1 else "")
                 for j in range(n)]
        ids = np.arange(start, start + n) * 7 + 3
        path = directory / f"part{i}.parquet"
        pq.write_table(pa.table({"id": [f"doc-{x}" for x in ids] if string_ids else ids, "text": texts}), path,
                       row_group_size=333)
        files.append(str(path))
        start += n
    return files


def ray_config(vectors: Path, **build):
    return config_for(vectors, **{"shard_rows": 377, "batch_size": 100, "tune_queries": 200, "workers": 2, **build})


def digests(index_dir: Path) -> dict[str, str]:
    """sha256 of every file but the manifest, by relative name (the manifest has timings)."""
    return {str(p.relative_to(index_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(index_dir.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def index_bytes(index_dir: Path, params: dict | None = None) -> bytes:
    """index.faiss, with ``params`` (nprobe, k_factor) set first when given."""
    from glovefaiss.index.faiss_ops import set_params

    index = faiss.read_index(str(index_dir / "index.faiss"))
    if params:
        set_params(index, params)
    return bytes(faiss.serialize_index(index))


def assert_same_build(a: Path, b: Path) -> None:
    """Shards, texts, towers, id lookup and index of ``a`` and ``b`` byte-identical, and their statistics.

    The tuned search parameters are chosen by timing where several reach the target (fast-scan's
    nprobe x k_factor): when the two builds chose differently, the index files must be equal with
    the same parameters set.
    """
    da, db = digests(a), digests(b)
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["shards"] == mb["shards"]
    for key in ("documents", "tokens", "oov_tokens", "empty_documents", "top_oov_words", "anisotropy"):
        assert ma[key] == mb[key], key
    if ma["index"].get("params") != mb["index"].get("params"):
        da.pop("index.faiss"), db.pop("index.faiss")
        assert index_bytes(a, ma["index"]["params"]) == index_bytes(b, ma["index"]["params"])
    assert da == db
