"""The one index writer: documents -> shards -> ids -> FAISS index -> tuning -> manifest.

Two steps with a seam between them, so that parts of a corpus can be encoded apart and the
index made once over all of their shards:

* :func:`write_shards` encodes a corpus, or one part of it, into shards numbered from
  ``first_shard`` and returns their manifest entries (each with its statistics) and ids;
* :func:`finish_index` checks the ids of every shard, writes the id lookup, builds, tunes and
  saves the FAISS index; :func:`new_manifest` records the result.

``build`` writes a whole corpus into a new directory with these; ``add`` writes new shards after
the existing ones, then extends the existing FAISS index (:func:`append_shards`) and saves it
(:func:`save_index`) instead of building one.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import BuildConfig, Config
from ..errors import CorpusError
from ..io.corpus import Corpus
from ..io.files import sha256_file
from ..tower.encoder import EncodeStats, TextEncoder
from . import faiss_ops as faiss_index
from .families import build_index, resolve_index
from .layout import DOCUMENT_TOWER_DIR, INDEX_FILE, SHARDS_DIR, TOWER_DIR, Manifest
from .shards import ShardReader, ShardWriter, iter_shard_vectors, shard_schema, write_id_lookup
from .tuning_queries import WINDOW_QUERIES, corpus_window_queries, file_tuning_queries, stored_window_queries

logger = logging.getLogger(__name__)

TOP_OOV = 20
KEEP_OOV_PER_SHARD = 200  # unknown words kept per shard; the manifest's top 20 merge these lists

# From this many documents the build pools with torch (see pooling.segment_sums): several times
# faster than scipy (0.07 s against 0.47 s for 300,000 documents on one thread); below it, the
# 1.4-2.4 s torch import costs more than it saves.
TORCH_POOLING_ROWS = 300_000


def pooling_backend(rows: int) -> str:
    """How encoding ``rows`` documents sums word vectors (every choice gives the same bits)."""
    if rows >= TORCH_POOLING_ROWS:
        try:
            import torch  # noqa: F401
        except ImportError:  # a core dependency, but the build can do without it
            return "scipy"
        return "torch"
    return "scipy"


def _ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """``map`` over a thread pool, in order, with at most ``workers + 1`` items in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(workers)
    pending: deque = deque()
    done = False
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        done = True
    finally:
        # Closed early (an error, Ctrl-C): waiting here for batches nobody will read made a second
        # interrupt land in the generator's finalisation, which Python prints as a traceback.
        pool.shutdown(wait=done, cancel_futures=True)


class SerialCalls:
    """Runs calls one after another, in submission order, on a thread of their own, at most ``depth`` waiting.

    Shard writing goes here so that the thread that reads the corpus and hands batches to the
    encoders never stops for a Parquet write. A failed call raises at the next submit or on
    exit, and the calls after it do not run.
    """

    def __init__(self, depth: int = 1):
        self._pool = ThreadPoolExecutor(1)
        self._pending: deque = deque()
        self._depth = depth

    def submit(self, fn: Callable, *args) -> None:
        self._pending.append(self._pool.submit(fn, *args))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def __enter__(self) -> SerialCalls:
        return self

    def __exit__(self, exc_type, *_) -> None:
        try:
            while self._pending:
                future = self._pending.popleft()
                if exc_type is None:
                    future.result()
                else:
                    future.cancel()
        finally:
            self._pool.shutdown(wait=True)


def _aligned(batches: Iterable[tuple], shard_rows: int, skip: int) -> Iterator[tuple]:
    """Batches (tuples of ids, texts, [columns]) cut so that none crosses a shard boundary, after skipping ``skip`` rows.

    Each shard's counts can then be recorded with it, which is what lets a build resume.
    """
    pos = 0
    for ids, texts, columns in batches:
        n = len(ids)
        start = max(0, skip - pos)
        while start < n:
            end = min(n, start + shard_rows - (pos + start) % shard_rows)
            yield (ids.slice(start, end - start), texts.slice(start, end - start),
                   [c.slice(start, end - start) for c in columns])
            start = end
        pos += n


def encode_corpus(corpus: Corpus, encoder: TextEncoder, bc: BuildConfig, skip: int = 0,
                  backend: str = "scipy") -> Iterator:
    """(ids, texts, vectors, stats, columns) per batch, in corpus order, encoded on ``bc.threads`` threads.

    Batches never cross a multiple of ``bc.shard_rows`` (counted from the corpus start), and
    the first ``skip`` rows are passed over. ``backend``: see :func:`pooling_backend`.
    """
    encoder = encoder.for_batches(backend)

    def encode(batch):
        ids, texts, columns = batch
        s = EncodeStats()
        vectors = encoder.encode(texts, stats=s, top_oov=TOP_OOV)
        return ids, texts, vectors, s, columns

    batches = _aligned(corpus.batches_with_columns(bc.batch_size), bc.shard_rows, skip)
    return _ordered_map(encode, batches, bc.threads or os.cpu_count() or 1)


def stats_to_json(s: EncodeStats) -> dict:
    """A shard's statistics as recorded with it (its ``KEEP_OOV_PER_SHARD`` commonest unknown words)."""
    top = sorted(s.oov_words.items(), key=lambda x: (-x[1], x[0]))[:KEEP_OOV_PER_SHARD]
    out = {"texts": s.texts, "tokens": s.tokens, "oov_tokens": s.oov_tokens, "empty_texts": s.empty_texts,
           "top_oov_words": top}
    if s.vector_sum is not None:
        out["vector_sum"] = [float(x) for x in s.vector_sum]  # float64 round-trips exactly through JSON
    return out


def stats_from_json(d: dict) -> EncodeStats:
    """The inverse of :func:`stats_to_json`."""
    vector_sum = d.get("vector_sum")
    return EncodeStats(d["texts"], d["tokens"], d["oov_tokens"], d["empty_texts"],
                       Counter(dict((w, c) for w, c in d["top_oov_words"])),
                       None if vector_sum is None else np.array(vector_sum, dtype=np.float64))


def shard_stats(shards: Iterable[dict]) -> EncodeStats:
    """The statistics of shards, summed from those recorded with each (see :func:`write_shards`)."""
    total = EncodeStats()
    for shard in shards:
        total.add(stats_from_json(shard["stats"]))
    return total


@dataclass
class WrittenShards:
    """What :func:`write_shards` wrote: the shards' manifest entries, their ids and statistics."""

    shards: list[dict]  # each with "stats" (stats_to_json), which the manifest leaves out
    ids: list[pa.Array]  # in row order
    stats: EncodeStats  # exact totals, before any per-shard cut of the unknown words
    backend: str = "scipy"
    setup_s: float = 0.0
    encode_s: float = 0.0


def write_shards(corpus: Corpus, directory: Path, encoder: TextEncoder, bc: BuildConfig, *,
                 store_text: bool, row_group_rows: int, first_shard: int = 0, skip: int = 0,
                 on_shard: Callable[[dict], None] | None = None, progress: bool | None = None,
                 backend: str | None = None) -> WrittenShards:
    """Encode ``corpus`` into ``directory/shards/part-NNNNN.parquet``, shards numbered from ``first_shard``.

    Shards hold ``bc.shard_rows`` rows counted from the corpus start (the last may hold fewer);
    the first ``skip`` rows are passed over (a resumed build has their shards already). The
    result is the same whatever ``bc.threads`` and ``bc.batch_size``. ``on_shard`` is told each
    shard's entry, in order, when its files are complete. A part of a corpus can be written
    alone: give it shard numbers of its own and pass the entries of every part to
    :func:`finish_index`. ``backend``: see :func:`pooling_backend` (default: by the rows to encode).
    """
    from tqdm.auto import tqdm

    entries: list[dict] = []
    total = EncodeStats()
    current = EncodeStats()

    def shard_done(meta: dict) -> None:  # on the writing thread
        nonlocal current
        entry = {**meta, "stats": stats_to_json(current)}
        entries.append(entry)
        current = EncodeStats()
        if on_shard is not None:
            on_shard(entry)

    writer = ShardWriter(directory / SHARDS_DIR, shard_schema(corpus.id_type, encoder.dim, store_text, corpus.columns),
                         bc.shard_rows, row_group_rows, first_shard=first_shard, on_shard=shard_done)

    # One-time set-up, timed apart from the per-document encoding: the torch (or scipy) import,
    # the (weighted) rows as a tensor and the vocabulary's key table.
    t_setup = time.perf_counter()
    backend = backend or pooling_backend(corpus.num_rows - skip)
    encoder = encoder.for_batches(backend)
    t_setup = time.perf_counter() - t_setup

    def write(ids, texts, vectors, s, columns) -> None:  # on the writing thread, in batch order
        current.add(s)
        total.add(s)
        writer.write(ids, vectors, texts if store_text else None, columns)

    ids: list[pa.Array] = []
    t_encode = time.perf_counter()
    with tqdm(total=corpus.num_rows, initial=skip, unit="doc", unit_scale=True, desc="encoding",
              disable=None if progress is None else not progress, leave=False) as bar, SerialCalls() as writes:
        for batch_ids, texts, vectors, s, columns in encode_corpus(corpus, encoder, bc, skip=skip, backend=backend):
            writes.submit(write, batch_ids, texts, vectors, s, columns)
            ids.append(batch_ids)
            bar.update(len(batch_ids))
        writes.submit(writer.close)
    t_encode = time.perf_counter() - t_encode
    return WrittenShards(entries, ids, total, backend, t_setup, t_encode)


def duplicate_ids(ids: pa.ChunkedArray | pa.Array) -> list:
    """The ids that occur more than once."""
    counts = pc.value_counts(ids)
    return pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1)).to_pylist()


def check_unique(ids: pa.ChunkedArray | pa.Array, problem: str = "the corpus has {n} duplicate ids",
                 hint: str = "; drop the repeated rows, or choose another column with --id-column") -> None:
    """Raise :class:`CorpusError` (``problem`` with the count, and examples, then ``hint``) if an id repeats."""
    dups = duplicate_ids(ids)
    if dups:
        shown = ", ".join(map(repr, dups[:5]))
        raise CorpusError(f"{problem.format(n=len(dups))} (e.g. {shown}); ids must be unique{hint}")


def save_index(index, directory: Path) -> dict:
    """Write ``index`` to ``directory/index.faiss``; its manifest ``file``, ``bytes`` and ``sha256``."""
    path = directory / INDEX_FILE
    faiss_index.save(index, path)
    return {"file": INDEX_FILE, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def append_shards(index, directory: Path, shards: list[dict], labels_are_ids: bool) -> None:
    """Add the vectors of ``shards`` to ``index`` (an IVF index keeps its trained centroids)."""
    for ids, vectors in iter_shard_vectors(ShardReader(directory, shards)):
        # Row labels continue on their own: FAISS numbers added vectors from ntotal.
        faiss_index.add(index, vectors, ids.to_numpy() if labels_are_ids else None)


class LocalEngine:
    """Where the writer's two heavy steps run: here, in this process (``build.engine: local``).

    Another engine (:mod:`glovefaiss.engine`) gives the same two methods and the same results,
    byte for byte, from work done elsewhere.
    """

    name = "local"
    workers = 1
    fills_apart = False  # append adds the vectors here, as build_index itself does from the vectors it holds

    def start(self, rows: int) -> None:
        """Get ready to encode about ``rows`` documents (another engine starts its workers meanwhile)."""

    def write_shards(self, corpus: Corpus, directory: Path, encoder: TextEncoder, tower_dir: Path, bc: BuildConfig,
                     **kwargs) -> WrittenShards:
        """:func:`write_shards`; ``tower_dir`` (``encoder`` saved) is for engines that load it elsewhere."""
        return write_shards(corpus, directory, encoder, bc, **kwargs)

    def append(self, index, directory: Path, shards: list[dict], labels_are_ids: bool) -> None:
        """:func:`append_shards`."""
        append_shards(index, directory, shards, labels_are_ids)

    def describe(self) -> dict:
        """What the manifest records of the engine."""
        return {"engine": self.name, "workers": self.workers}


@dataclass
class FinishedIndex:
    """The FAISS index :func:`finish_index` made, its manifest section and the id lookup's files."""

    index: Any
    info: dict  # the manifest's "index" section
    id_lookup: dict  # {file: sha256}; empty for string ids
    index_s: float


def finish_index(directory: Path, shards: list[dict], ids: pa.ChunkedArray, corpus: Corpus | None, config: Config,
                 query_encoder: TextEncoder, dim: int, engine: LocalEngine | None = None) -> FinishedIndex:
    """Check that ``ids`` (of every shard, in row order) are unique, write the id lookup and make the index.

    The index is made from the finished shards in ``directory``, so it never depends on how
    encoding was batched, split into parts or resumed. Int ids are the FAISS labels; string ids
    get row numbers, mapped back through the shards' id column. An approximate index is tuned
    with the build's ``tuning_queries`` file or with windows of documents of ``corpus``; without
    a corpus (after a delete) with windows of the shards' stored texts, which gives the same
    queries as a corpus of those rows.
    ``engine`` adds the vectors to the trained index (default: here, as :class:`LocalEngine`).
    """
    bc = config.build
    check_unique(ids)
    if corpus is not None:
        _check_some_known(shard_stats(shards), config.embedding.model_name)
    with_ids = pa.types.is_integer(ids.type)
    id_lookup = write_id_lookup(directory, ids.to_numpy()) if with_ids else {}
    t_index = time.perf_counter()
    queries = None
    if resolve_index(bc, len(ids), dim)[1] not in ("Flat", "flat"):  # approximate: tuned
        if bc.tuning_queries and (corpus is not None or Path(bc.tuning_queries).is_file()):
            queries, source = file_tuning_queries(bc.tuning_queries, query_encoder, bc.tune_queries, config.seed)
        elif shards and all("texts" in s for s in shards):
            # The same queries as the corpus's (same rows, same texts: tested), read by row from
            # the memory-mapped stored texts instead of a pass over the corpus (1-2 s at 1M).
            queries = stored_window_queries(directory, shards, query_encoder, bc.tune_queries, config.seed)
            source = WINDOW_QUERIES
        elif corpus is not None:
            queries = corpus_window_queries(corpus, query_encoder, bc.tune_queries, config.seed)
            source = WINDOW_QUERIES
        else:  # no texts to cut queries from: the documents themselves (flatters recall)
            logger.warning("no stored texts and no tuning queries file: tuning with the documents as queries")
            source = "the documents themselves"
    index, info = build_index(directory, shards, dim, bc, with_ids, config.seed, queries=queries,
                              fill=None if engine is None or not engine.fills_apart else
                              lambda index: engine.append(index, directory, shards, with_ids))
    if "tuning" in info:
        info["tuning"]["query_source"] = source
    saved = save_index(index, directory)
    t_index = time.perf_counter() - t_index
    info = {**info, "file": saved["file"], "metric": "inner_product", "labels": "id" if with_ids else "row",
            "ntotal": int(index.ntotal), "bytes": saved["bytes"], "sha256": saved["sha256"]}
    return FinishedIndex(index, info, id_lookup, t_index)


def _check_some_known(stats: EncodeStats, vectors: str) -> None:
    # An index where every document is a zero vector answers nothing: the vectors (or the
    # tokeniser) do not fit the corpus, and saying so beats a build that "succeeds".
    if not stats.texts or stats.empty_texts < stats.texts:
        return
    if not stats.tokens:
        raise CorpusError(f"all {stats.texts} documents are empty (no words at all); check that --text-column "
                          "names the column of texts")
    words = ", ".join(repr(w) for w, _ in stats.oov_words.most_common(3))
    raise CorpusError(f"none of the {stats.texts} documents has a word the vectors know (unknown words include "
                      f"{words}); check the vectors ({vectors}) and the tokeniser settings")


def with_stats(manifest: Manifest, stats: EncodeStats, sign: int = 1) -> Manifest:
    """``manifest`` with the documents of ``stats`` counted in (``sign=-1``: out), its top unknown words merged.

    Counting out is exact for the totals; the top words can only be merged within the recorded top list.
    """
    m = replace(manifest)
    m.documents = manifest.documents + sign * stats.texts
    m.empty_documents = manifest.empty_documents + sign * stats.empty_texts
    m.tokens = manifest.tokens + sign * stats.tokens
    m.oov_tokens = manifest.oov_tokens + sign * stats.oov_tokens
    m.oov_rate = round(m.oov_tokens / m.tokens, 6) if m.tokens else 0.0
    merged = dict(manifest.top_oov_words)
    for w, c in stats.oov_words.items():
        merged[w] = merged.get(w, 0) + sign * c
    merged = {w: c for w, c in merged.items() if c > 0}
    m.top_oov_words = [[w, c] for w, c in sorted(merged.items(), key=lambda x: (-x[1], x[0]))[:TOP_OOV]]
    return m


def new_manifest(config: Config, corpus: Corpus, encoder: TextEncoder, shards: list[dict], finished: FinishedIndex,
                 vectors_info: dict, towers: dict[str, dict], timings: dict,
                 extra: dict | None = None, pooling: dict | None = None, engine: dict | None = None) -> Manifest:
    """The manifest of a new index over ``shards`` (entries with their statistics, as written).

    ``towers``: ``{"query": {"files": {name: sha256}, **meta}, "document": {name: sha256}}``,
    the document tower's files only when it is not the query tower.
    """
    from .. import __version__

    stats = shard_stats(shards)
    if stats.empty_texts:
        logger.warning("%d of %d documents have no word in the vocabulary; they get zero vectors",
                       stats.empty_texts, stats.texts)
    m = with_stats(Manifest(
        glovefaiss_version=__version__,
        config=config.to_dict(),
        vectors=vectors_info,
        tokeniser=encoder.tokeniser.describe(),
        corpus={"files": [str(f) for f in corpus.files], "id_column": corpus.id_column,
                "text_column": corpus.text_column, "id_type": corpus.id_type,
                **({"columns": [c.name for c in corpus.columns]} if corpus.columns else {})},
    ), stats)
    # Mean cosine of the documents to their centroid: near 1 means every vector points the same way.
    m.anisotropy = None if stats.anisotropy is None else round(stats.anisotropy, 6)
    m.dim = encoder.dim
    m.store_text = config.build.store_text
    m.row_group_rows = min(config.build.row_group_rows, config.build.shard_rows)
    m.shards = [{k: v for k, v in s.items() if k != "stats"} for s in shards]
    m.index = finished.info
    m.query_tower = {"dir": TOWER_DIR, **towers["query"]}
    m.document_tower = {"dir": DOCUMENT_TOWER_DIR, "files": towers["document"]} if towers.get("document") else None
    m.id_lookup = {"files": finished.id_lookup} if finished.id_lookup else None
    m.timings = timings
    m.engine = engine
    m.extra = dict(extra or {})
    m.pooling = pooling
    return m
