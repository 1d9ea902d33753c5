"""``build()``: stream a Parquet corpus through the tower into shards, a FAISS index and a manifest."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import Config
from ..errors import ConfigError, CorpusError, IndexDirError, ModelError, QueryError
from ..io.corpus import Corpus, open_corpus
from ..io.files import publish_dir, sha256_file, write_json_atomic
from ..text.tokeniser import Tokeniser
from ..text.vocabulary import Vocabulary
from ..tower import sif as weighting
from ..tower.encoder import EncodeStats, TextEncoder, save_encoder
from . import faiss_ops as faiss_index
from .families import build_index, resolve_index
from .layout import (
    DOCUMENT_TOWER_DIR,
    FORMAT_VERSION,
    INDEX_FILE,
    MANIFEST,
    SHARDS_DIR,
    TOWER_DIR,
)
from .shards import TEXTS_DIR, ShardWriter, shard_schema, write_id_lookup

logger = logging.getLogger(__name__)

TOP_OOV = 20
KEEP_OOV_PER_SHARD = 200  # unknown words kept per shard; the manifest's top 20 merge these lists
STATE = "build-state.json"


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
    tower_bytes: int = 0  # the query tower (and document tower) the index directory carries

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0


def encoder_from_config(config: Config, vectors=None) -> tuple[TextEncoder, Any]:
    """The frozen mean-pool tower of a config: its tokeniser over its word vectors."""
    from ..vectors.sources import load_vectors

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


# From this many documents the build pools with torch (see pooling.segment_sums): 3x faster than
# scipy and free of the GIL, so both encoding threads pool at once; below it, the 1.4 s torch
# import costs more than it saves.
TORCH_POOLING_ROWS = 300_000


def pooling_backend(rows: int) -> str:
    """How a build of ``rows`` documents sums word vectors (every choice gives the same bits)."""
    if rows >= TORCH_POOLING_ROWS:
        try:
            import torch  # noqa: F401
        except ImportError:  # a core dependency, but the build can do without it
            return "scipy"
        return "torch"
    return "scipy"


class _Serial:
    """Runs calls one after another on a thread of their own, at most ``depth`` waiting.

    Shard writing goes here so that the thread that reads the corpus and hands batches to the
    encoders never stops for a Parquet write. A failed call raises at the next submit or on exit.
    """

    def __init__(self, depth: int = 1):
        self._pool = ThreadPoolExecutor(1)
        self._pending: deque = deque()
        self._depth = depth

    def submit(self, fn: Callable, *args) -> None:
        self._pending.append(self._pool.submit(fn, *args))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def __enter__(self) -> _Serial:
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


def encode_corpus(corpus: Corpus, encoder: TextEncoder, bc, skip: int = 0, backend: str = "scipy") -> Iterator:
    """(ids, texts, vectors, stats) per batch, in corpus order, batches encoded on ``bc.threads`` threads.

    Batches never cross a multiple of ``bc.shard_rows`` (counted from the corpus start), and
    the first ``skip`` rows are passed over. ``backend``: see :func:`pooling_backend`.
    """
    encoder = encoder.for_batches(backend)

    def encode(batch):
        ids, texts = batch
        s = EncodeStats()
        vectors = encoder.encode(texts, stats=s, top_oov=TOP_OOV)
        return ids, texts, vectors, s

    batches = _aligned(corpus.batches(bc.batch_size), bc.shard_rows, skip)
    return _ordered_map(encode, batches, bc.threads or os.cpu_count() or 1)


def file_tuning_queries(path: str | Path, encoder: TextEncoder, n: int, seed: int) -> tuple[np.ndarray, str]:
    """(vectors, description) of up to ``n`` queries of a query file (a seeded sample when it holds more)."""
    from ..io.rows import read_queries

    try:
        _, texts = read_queries(path)
    except QueryError as e:
        raise ConfigError(f"--tuning-queries: {e}") from None
    vectors = encoder.encode(pa.array(texts, pa.string()))
    vectors = vectors[np.any(vectors != 0, axis=1)]
    if not len(vectors):
        raise ConfigError(f"--tuning-queries: none of the {len(texts)} queries in {path} has a word in the vocabulary")
    if len(vectors) > n:
        vectors = vectors[np.sort(np.random.default_rng([seed, 12]).choice(len(vectors), n, replace=False))]
    return vectors, f"{len(vectors)} queries from {path}"


WINDOW_QUERIES = "windows of 2-8 words from sampled documents"  # the tuning queries' source, as recorded


def window_sample(num_rows: int, n: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """(sorted rows of the documents to cut ``n`` window queries from, the generator that cuts them)."""
    rng = np.random.default_rng([seed, 11])
    return np.sort(rng.choice(num_rows, min(2 * n, num_rows), replace=False)), rng


def tuning_queries(corpus: Corpus, encoder: TextEncoder, n: int, seed: int) -> np.ndarray:
    """Query vectors like a user's: windows of 2-8 tokens from documents sampled (seeded) from the corpus."""
    rows, rng = window_sample(corpus.num_rows, n, seed)
    texts: list[str] = []
    pos = 0
    for _, batch in corpus.batches(65536):
        lo, hi = np.searchsorted(rows, [pos, pos + len(batch)])
        if hi > lo:
            texts += batch.take(pa.array(rows[lo:hi] - pos)).to_pylist()
        pos += len(batch)
    return window_queries(texts, encoder, n, rng)


def window_queries(texts: list[str], encoder: TextEncoder, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` query vectors, each a random window of 2-8 tokens of one of ``texts``."""
    queries = []
    for tokens in encoder.tokeniser.tokenise_arrow(pa.array(texts, pa.string())).to_pylist():
        if tokens:
            length = int(rng.integers(2, 9))
            start = int(rng.integers(0, max(1, len(tokens) - length + 1)))
            queries.append(" ".join(tokens[start:start + length]))
    vectors = encoder.encode(pa.array(queries, pa.string()))
    return vectors[np.any(vectors != 0, axis=1)][:n]


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise IndexDirError(f"{out} already exists; pass --overwrite (overwrite=True) to replace it")
    if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists()):
        raise IndexDirError(f"{out} exists and is not a glovefaiss index; refusing to overwrite it, choose another --out")


def _duplicates(ids: pa.ChunkedArray) -> list:
    counts = pc.value_counts(ids)
    dup = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    return dup.to_pylist()


def _aligned(batches: Iterable[tuple[pa.Array, pa.Array]], shard_rows: int, skip: int) -> Iterator[tuple[pa.Array, pa.Array]]:
    """Batches cut so that none crosses a shard boundary, after skipping ``skip`` rows.

    Each shard's counts can then be recorded with it, which is what lets a build resume.
    """
    pos = 0
    for ids, texts in batches:
        n = len(ids)
        start = max(0, skip - pos)
        while start < n:
            end = min(n, start + shard_rows - (pos + start) % shard_rows)
            yield ids.slice(start, end - start), texts.slice(start, end - start)
            start = end
        pos += n


def _stats_json(s: EncodeStats) -> dict:
    top = sorted(s.oov_words.items(), key=lambda x: (-x[1], x[0]))[:KEEP_OOV_PER_SHARD]
    out = {"texts": s.texts, "tokens": s.tokens, "oov_tokens": s.oov_tokens, "empty_texts": s.empty_texts,
           "top_oov_words": top}
    if s.vector_sum is not None:
        out["vector_sum"] = [float(x) for x in s.vector_sum]  # float64 round-trips exactly through JSON
    return out


def _stats_from_json(d: dict) -> EncodeStats:
    vector_sum = d.get("vector_sum")
    return EncodeStats(d["texts"], d["tokens"], d["oov_tokens"], d["empty_texts"],
                       Counter(dict((w, c) for w, c in d["top_oov_words"])),
                       None if vector_sum is None else np.array(vector_sum, dtype=np.float64))


class _BuildState:
    """The partial directory's journal: what the build is of, and which shards are complete."""

    def __init__(self, directory: Path, fingerprint: dict):
        self.path = directory / STATE
        self.fingerprint = fingerprint
        self.shards: list[dict] = []

    def load_completed(self) -> bool:
        """Adopt the shards of an earlier, interrupted run of the same build; False if there is none."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if data.get("fingerprint") != self.fingerprint:
            return False
        root = self.path.parent
        for shard in data.get("shards", []):
            files = [shard, *shard.get("texts", [])]
            if not all(_intact(root / f["file"], f["bytes"], f["sha256"]) for f in files):
                break
            self.shards.append(shard)
        return True

    def add(self, shard: dict) -> None:
        self.shards.append(shard)
        write_json_atomic(self.path, {"fingerprint": self.fingerprint, "shards": self.shards})


def _intact(path: Path, size: int, digest: str) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256_file(path) == digest


def _fingerprint(config: Config, corpus: Corpus, tower_files: dict) -> dict:
    cfg = config.to_dict()
    for k in ("batch_size", "threads"):  # do not change the output
        cfg["build"].pop(k, None)
    files = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in corpus.files]
    return {"config": cfg, "corpus": files, "tower": tower_files}


def _prepare_partial(out: Path, resume: bool) -> Path:
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists() and not resume:
        if not (tmp / STATE).exists() and any(tmp.iterdir()):
            raise IndexDirError(f"{tmp} exists and was not made by glovefaiss; move it away and build again")
        logger.info("removing the unfinished build in %s (pass --resume to continue it instead)", tmp)
        shutil.rmtree(tmp)
    tmp.mkdir(exist_ok=True)
    return tmp


def build(
    corpus: Sequence[str | Path] | Corpus,
    out: str | Path,
    config: Config | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool | None = None,
    encoder: TextEncoder | None = None,
    query_encoder: TextEncoder | None = None,
    extra_manifest: dict[str, Any] | None = None,
) -> BuildResult:
    """Encode every document of ``corpus`` and write an index directory at ``out``.

    The directory is assembled in a hidden sibling (``.NAME.partial``) and renamed into place
    when complete, so a failed build leaves any previous index untouched. Completed shards are
    journalled: after a crash, ``resume=True`` continues from them, and the result is the same,
    byte for byte, as an uninterrupted build.

    ``encoder`` encodes the documents (default: the config's frozen GloVe mean); ``query_encoder``
    (default: the same) is stored for the query path. ``extra_manifest`` entries (e.g. the trained
    model a build used) are added to the manifest.
    """
    config = config or Config()
    if config.build.tuning_queries:  # absolute, so that `add` finds the file from any directory
        config = config.replace({"build.tuning_queries": str(Path(config.build.tuning_queries).absolute())})
    bc = config.build
    t0 = time.perf_counter()
    if not isinstance(corpus, Corpus):
        corpus = open_corpus(corpus, bc.id_column, bc.text_column)
    out = Path(out).absolute()
    _check_out_dir(out, overwrite)

    vectors_info: dict[str, Any] = {}
    pooling_info: dict[str, Any] = {"weighting": "mean"}
    weighting.check(config.pooling)
    fit_pooling = encoder is None and weighting.is_active(config.pooling)
    if encoder is None:
        encoder, vectors = encoder_from_config(config)
        vectors_info = {"source": vectors.source, "sha256": vectors.sha256,
                        "vocab_size": len(vectors.words), "dim": int(vectors.matrix.shape[1])}
    elif weighting.is_active(config.pooling):
        logger.warning("the pooling section of the config is ignored: the build was given its own encoder")
    t_vectors = time.perf_counter() - t0
    if fit_pooling:
        # SIF weights and common components: fitted before any shard (a first pass over the
        # corpus), stored in the query tower, applied alike to documents and queries.
        def texts():
            return (t for _, t in corpus.batches(bc.batch_size))

        encoder, pooling_info = weighting.prepare(encoder, config.pooling, texts, corpus.num_rows, config.seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _prepare_partial(out, resume)
    try:
        result = _build_into(tmp, corpus, config, encoder, query_encoder or encoder, vectors_info, progress, resume)
        result.update(extra_manifest or {})
        result["pooling"] = pooling_info
        result["timings"]["load_vectors_s"] = round(t_vectors, 3)
        if "fit_s" in pooling_info:
            result["timings"]["pooling_fit_s"] = pooling_info["fit_s"]
        result["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
        (tmp / STATE).unlink()
        write_json_atomic(tmp / MANIFEST, result)
        publish_dir(tmp, out)
    except KeyboardInterrupt:
        logger.warning("interrupted; completed shards are kept in %s: build again with --resume to continue", tmp)
        raise
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
        tower_bytes=sum(f.stat().st_size for key in ("query_tower", "document_tower") if key in result
                        for f in (out / result[key]["dir"]).iterdir()),
    )


def _build_into(tmp: Path, corpus: Corpus, config: Config, encoder: TextEncoder, query_encoder: TextEncoder,
                vectors_info: dict, progress: bool | None, resume: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from .. import __version__

    bc = config.build
    if query_encoder.dim != encoder.dim:
        raise ModelError(f"the query tower gives {query_encoder.dim}-d vectors but the document tower "
                         f"{encoder.dim}-d; both towers must have the same output size")
    tower_meta = save_encoder(query_encoder, tmp / TOWER_DIR)
    tower_files = {p.name: sha256_file(p) for p in sorted((tmp / TOWER_DIR).iterdir())}
    doc_files = {}
    if encoder is not query_encoder:
        # Kept for `glovefaiss add`; its hashes also guard resuming (they decide the finished shards).
        save_encoder(encoder, tmp / DOCUMENT_TOWER_DIR)
        doc_files = {p.name: sha256_file(p) for p in sorted((tmp / DOCUMENT_TOWER_DIR).iterdir())}
    state = _BuildState(tmp, _fingerprint(config, corpus, {"query": tower_files, "document": doc_files}))
    if resume and not state.load_completed():
        logger.info("nothing to resume in %s; building from the start", tmp)
    done = {f["file"] for s in state.shards for f in [s, *s.get("texts", [])]}
    for sub in (SHARDS_DIR, TEXTS_DIR):
        for stray in (tmp / sub).glob("*") if (tmp / sub).exists() else []:
            if f"{sub}/{stray.name}" not in done:
                stray.unlink()  # a shard cut short by the crash, or one that failed its checksum

    with_ids = corpus.id_type == "int64"
    stats = EncodeStats()
    all_ids: list[pa.Array] = []
    done_rows = 0
    for shard in state.shards:
        all_ids.append(pq.read_table(tmp / shard["file"], columns=["id"]).column("id").combine_chunks())
        stats.add(_stats_from_json(shard["stats"]))
        done_rows += shard["rows"]
    if state.shards:
        logger.info("resuming after %d complete shards (%d documents)", len(state.shards), done_rows)

    shard_stats = EncodeStats()

    def on_shard(meta: dict) -> None:
        nonlocal shard_stats
        state.add({**meta, "stats": _stats_json(shard_stats)})
        stats.add(_stats_from_json(state.shards[-1]["stats"]))
        shard_stats = EncodeStats()

    writer = ShardWriter(tmp / SHARDS_DIR, shard_schema(corpus.id_type, encoder.dim, bc.store_text),
                         bc.shard_rows, bc.row_group_rows, first_shard=len(state.shards), on_shard=on_shard)

    # One-time set-up, timed apart from the per-document encoding: the torch import, the
    # (weighted) rows as a tensor and the vocabulary's key table.
    t_setup = time.perf_counter()
    backend = pooling_backend(corpus.num_rows - done_rows)
    encoder = encoder.for_batches(backend)
    t_setup = time.perf_counter() - t_setup

    def write(ids, texts, vectors, s) -> None:  # on the writer thread, in batch order
        shard_stats.add(s)
        writer.write(ids, vectors, texts if bc.store_text else None)

    t_encode = time.perf_counter()
    with tqdm(total=corpus.num_rows, initial=done_rows, unit="doc", unit_scale=True, desc="encoding",
              disable=None if progress is None else not progress, leave=False) as bar, _Serial() as writes:
        for ids, texts, vectors, s in encode_corpus(corpus, encoder, bc, skip=done_rows, backend=backend):
            writes.submit(write, ids, texts, vectors, s)
            all_ids.append(ids)
            bar.update(len(ids))
        writes.submit(writer.close)
    t_encode = time.perf_counter() - t_encode

    dups = _duplicates(pa.chunked_array(all_ids))
    if dups:
        shown = ", ".join(map(repr, dups[:5]))
        raise CorpusError(f"the corpus has {len(dups)} duplicate ids (e.g. {shown}); ids must be unique")
    id_lookup = write_id_lookup(tmp, pa.chunked_array(all_ids).to_numpy()) if with_ids else {}
    t_index = time.perf_counter()
    # The index is made from the finished shards, so it never depends on how encoding was batched
    # or resumed. String ids: FAISS labels are row numbers, mapped back through the id column.
    row_group_rows = min(bc.row_group_rows, bc.shard_rows)
    queries = None
    if resolve_index(bc, corpus.num_rows, encoder.dim)[1] not in ("Flat", "flat"):  # approximate: tuned
        if bc.tuning_queries:
            queries, source = file_tuning_queries(bc.tuning_queries, query_encoder, bc.tune_queries, config.seed)
        else:
            queries = tuning_queries(corpus, query_encoder, bc.tune_queries, config.seed)
            source = WINDOW_QUERIES
    index, index_info = build_index(tmp, state.shards, encoder.dim, bc, with_ids, config.seed,
                                    queries=queries)
    if "tuning" in index_info and queries is not None:
        index_info["tuning"]["query_source"] = source
    faiss_index.save(index, tmp / INDEX_FILE)
    t_index = time.perf_counter() - t_index
    index_bytes = (tmp / INDEX_FILE).stat().st_size
    if stats.empty_texts:
        logger.warning("%d of %d documents have no word in the vocabulary; they get zero vectors",
                       stats.empty_texts, stats.texts)
    encoded = stats.texts - done_rows
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
        # Mean cosine of the documents to their centroid: near 1 means every vector points the same way.
        "anisotropy": None if stats.anisotropy is None else round(stats.anisotropy, 6),
        "dim": encoder.dim,
        "store_text": bc.store_text,
        "row_group_rows": row_group_rows,
        "shards": [{k: v for k, v in s.items() if k != "stats"} for s in state.shards],
        "index": {**index_info, "file": INDEX_FILE, "metric": "inner_product",
                  "labels": "id" if with_ids else "row", "ntotal": int(index.ntotal),
                  "bytes": index_bytes, "sha256": sha256_file(tmp / INDEX_FILE)},
        "query_tower": {"dir": TOWER_DIR, "files": tower_files, **tower_meta},
        **({"document_tower": {"dir": DOCUMENT_TOWER_DIR, "files": doc_files}} if doc_files else {}),
        **({"id_lookup": {"files": id_lookup}} if id_lookup else {}),
        "timings": {"pooling_backend": backend, "encoder_setup_s": round(t_setup, 3),
                    "encode_s": round(t_encode, 3), "index_s": round(t_index, 3),
                    "resumed_documents": done_rows,
                    "docs_per_s": round(encoded / t_encode, 1) if t_encode and encoded else None},
    }
