"""``build()``: stream a Parquet corpus through the tower into shards, a FAISS index and a manifest."""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import index as faiss_index
from .config import Config
from .corpus import Corpus, open_corpus
from .errors import CorpusError, IndexDirError
from .manifest import FORMAT_VERSION, INDEX_FILE, MANIFEST, SHARDS_DIR, TOWER_DIR, sha256_file, write_json_atomic
from .pooling import EncodeStats, TextEncoder, Vocabulary, save_encoder
from .shards import ShardWriter, shard_schema
from .tokenisers import Tokeniser

logger = logging.getLogger(__name__)

TOP_OOV = 20


@dataclass
class BuildResult:
    """What a build produced; ``manifest`` is the full manifest written to disk."""

    out_dir: Path
    documents: int
    empty_documents: int
    oov_rate: float
    seconds: float
    index_bytes: int
    manifest: dict[str, Any]

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0


def encoder_from_config(config: Config, vectors=None) -> tuple[TextEncoder, Any]:
    """The frozen mean-pool tower of a config: its tokeniser over its word vectors."""
    from .vectors import load_vectors

    if vectors is None:
        vectors = load_vectors(config.embedding.model_name)
    encoder = TextEncoder(Tokeniser(config.tokeniser), Vocabulary(vectors.words), vectors.matrix)
    return encoder, vectors


def _ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """``map`` over a thread pool, in order, with at most ``workers + 1`` items in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise IndexDirError(f"{out} already exists; pass --overwrite to replace it")
    if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists()):
        raise IndexDirError(f"{out} exists and is not a glovefaiss index; refusing to overwrite it, choose another --out")


def _publish(tmp: Path, out: Path) -> None:
    """Swap the finished directory into place; the old index is removed only after the swap."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _duplicates(ids: pa.ChunkedArray) -> list:
    counts = pc.value_counts(ids)
    dup = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    return dup.to_pylist()


def build(
    corpus: Sequence[str | Path] | Corpus,
    out: str | Path,
    config: Config | None = None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    encoder: TextEncoder | None = None,
) -> BuildResult:
    """Encode every document of ``corpus`` and write an index directory at ``out``.

    The directory is assembled in a hidden sibling and renamed into place when complete, so
    a failed build leaves any previous index untouched.
    """
    from tqdm.auto import tqdm

    config = config or Config()
    bc = config.build
    t0 = time.perf_counter()
    if not isinstance(corpus, Corpus):
        corpus = open_corpus(corpus, bc.id_column, bc.text_column)
    out = Path(out).absolute()
    _check_out_dir(out, overwrite)

    vectors_info: dict[str, Any] = {}
    if encoder is None:
        encoder, vectors = encoder_from_config(config)
        vectors_info = {"source": vectors.source, "sha256": vectors.sha256,
                        "vocab_size": len(vectors.words), "dim": int(vectors.matrix.shape[1])}
    t_vectors = time.perf_counter() - t0

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        result = _build_into(tmp, corpus, config, encoder, vectors_info, progress, tqdm)
        result["timings"]["load_vectors_s"] = round(t_vectors, 3)
        result["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
        write_json_atomic(tmp / MANIFEST, result)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(
        out_dir=out,
        documents=result["documents"],
        empty_documents=result["empty_documents"],
        oov_rate=result["oov_rate"],
        seconds=result["timings"]["total_s"],
        index_bytes=result["index"]["bytes"],
        manifest=result,
    )


def _build_into(tmp: Path, corpus: Corpus, config: Config, encoder: TextEncoder,
                vectors_info: dict, progress: bool | None, tqdm) -> dict[str, Any]:
    from . import __version__

    bc = config.build
    tower_meta = save_encoder(encoder, tmp / TOWER_DIR)
    with_ids = corpus.id_type == "int64"
    index = faiss_index.make_index(encoder.dim, bc.index, with_ids=with_ids)
    writer = ShardWriter(tmp / SHARDS_DIR, shard_schema(corpus.id_type, encoder.dim, bc.store_text),
                         bc.shard_rows, bc.row_group_rows)
    stats = EncodeStats()
    all_ids: list[pa.Array] = []

    def encode(batch):
        ids, texts = batch
        vectors, s = encoder.encode_arrow(texts, top_oov=TOP_OOV)
        return ids, texts, vectors, s

    workers = bc.threads or os.cpu_count() or 1
    t_encode = time.perf_counter()
    with tqdm(total=corpus.num_rows, unit="doc", unit_scale=True, desc="encoding",
              disable=None if progress is None else not progress, leave=False) as bar:
        for ids, texts, vectors, s in _ordered_map(encode, corpus.batches(bc.batch_size), workers):
            stats.add(s)
            writer.write(ids, vectors, texts if bc.store_text else None)
            # String ids: FAISS labels are row numbers, mapped back through the shards' id column.
            faiss_index.add(index, vectors, ids.to_numpy() if with_ids else None)
            all_ids.append(ids)
            bar.update(len(ids))
    t_encode = time.perf_counter() - t_encode

    dups = _duplicates(pa.chunked_array(all_ids))
    if dups:
        shown = ", ".join(map(repr, dups[:5]))
        raise CorpusError(f"the corpus has {len(dups)} duplicate ids (e.g. {shown}); ids must be unique")
    shards = writer.close()
    t_index = time.perf_counter()
    faiss_index.save(index, tmp / INDEX_FILE)
    t_index = time.perf_counter() - t_index
    index_bytes = (tmp / INDEX_FILE).stat().st_size
    if stats.empty_texts:
        logger.warning("%d of %d documents have no word in the vocabulary; they get zero vectors",
                       stats.empty_texts, stats.texts)
    return {
        "format_version": FORMAT_VERSION,
        "glovefaiss_version": __version__,
        "config": config.to_dict(),
        "vectors": vectors_info,
        "tokeniser": encoder.tokeniser.describe(),
        "corpus": {"files": [str(f) for f in corpus.files], "id_column": corpus.id_column,
                   "text_column": corpus.text_column, "id_type": corpus.id_type},
        "documents": stats.texts,
        "empty_documents": stats.empty_texts,
        "tokens": stats.tokens,
        "oov_tokens": stats.oov_tokens,
        "oov_rate": round(stats.oov_rate, 6),
        "top_oov_words": [[w, c] for w, c in sorted(stats.oov_words.items(), key=lambda x: (-x[1], x[0]))[:TOP_OOV]],
        "dim": encoder.dim,
        "store_text": bc.store_text,
        "row_group_rows": min(bc.row_group_rows, bc.shard_rows),
        "shards": shards,
        "index": {"type": bc.index, "file": INDEX_FILE, "metric": "inner_product",
                  "labels": "id" if with_ids else "row", "ntotal": int(index.ntotal),
                  "bytes": index_bytes, "sha256": sha256_file(tmp / INDEX_FILE)},
        "query_tower": {"dir": TOWER_DIR, **tower_meta},
        "timings": {"encode_s": round(t_encode, 3), "index_write_s": round(t_index, 3),
                    "docs_per_s": round(stats.texts / t_encode, 1) if t_encode else None},
    }
