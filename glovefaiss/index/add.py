"""``add_documents()``: append a corpus to an existing index directory (or replace documents by id), atomically."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import Config, from_dict
from ..errors import CorpusError
from ..io.corpus import Corpus, open_corpus
from ..io.files import absolute_path, publish_dir
from ..tower.encoder import EncodeStats, load_encoder
from . import faiss_ops as faiss_index
from .delete import Removed, rebuilt, remove_rows
from .families import retune
from .layout import MANIFEST, Manifest, check_sizes, read_manifest, write_manifest
from .shards import ShardReader, next_shard_number, write_id_lookup
from .tuning import FEW_QUERIES
from .tuning_queries import WINDOW_QUERIES, corpus_window_queries, file_tuning_queries, stored_window_queries
from .update import assembled_beside, index_lock, link_files
from .writer import LocalEngine, check_unique, save_index, with_stats

logger = logging.getLogger(__name__)


@dataclass
class AddResult:
    out_dir: Path
    added: int
    documents: int
    seconds: float
    manifest: Manifest
    retuned: dict | None = None  # {"params_before", "params", "recall", "reached", "p50_ms", ...} for tuned indexes
    replaced: int = 0  # with upsert: old documents the new ones replaced (the index was then made afresh)


def add_documents(directory: str | Path, corpus: str | Path | Sequence[str | Path], *, progress: bool | None = None,
                  threads: int | None = None, id_column: str | None = None,
                  text_column: str | None = None, upsert: bool = False,
                  engine: LocalEngine | None = None) -> AddResult:
    """Encode ``corpus`` with the index's document tower and add it to the index at ``directory``.

    ``id_column`` / ``text_column``: the new files' columns (default: those the index was built from).
    New rows go to new shards; the FAISS index gets the new vectors (an IVF index keeps its
    trained centroids). An approximate index is tuned again for its recall target over the
    enlarged corpus (:func:`_tuning_queries` says with which queries): more documents per cell
    can need more cells probed. An id already in the index is an error, unless ``upsert``: then
    the old document is removed (as :func:`.delete.delete_documents` does) in the same step and
    the FAISS index is made afresh over every shard. The updated directory is assembled beside
    the old one from hard links and swapped in with a rename, so readers of the old index are
    unaffected. ``engine``: where encoding and adding run (default: :class:`.writer.LocalEngine`,
    this process).
    """
    t0 = time.perf_counter()
    engine = engine or LocalEngine()
    directory = absolute_path(directory)
    with index_lock(directory, "add"):
        return _add(directory, corpus, progress, threads, id_column, text_column, upsert, t0, engine)


def _add(directory: Path, files: Sequence[str | Path], progress: bool | None, threads: int | None,
         id_column: str | None, text_column: str | None, upsert: bool, t0: float, engine: LocalEngine) -> AddResult:
    manifest = read_manifest(directory)
    check_sizes(directory, manifest)
    config = from_dict(manifest.config, origin=f"{directory}/{MANIFEST}")
    if threads:
        config = config.replace({"build.threads": threads})
    bc = config.build
    corpus = open_corpus(files, id_column or manifest.corpus["id_column"],
                         text_column or manifest.corpus["text_column"], manifest.corpus.get("columns", ()),
                         columns_fix="the index stores it with every document: give the new documents one")
    id_type = manifest.corpus["id_type"]
    if corpus.id_type != id_type:
        raise CorpusError(f"the new documents have {corpus.id_type} ids but the index has {id_type} ids; "
                          "give them ids of the index's type, or build a new index")
    old_reader = ShardReader(directory, manifest.shards)
    _check_column_types(old_reader, corpus)
    engine.start(corpus.num_rows)
    encoder = load_encoder(directory / manifest.document_tower_dir)
    old_ids = old_reader.column("id")
    replace = np.zeros(len(old_ids), bool)
    if upsert:
        replace = pc.is_in(old_ids, value_set=corpus.ids().combine_chunks()).to_numpy(zero_copy_only=False)
    replaced = int(replace.sum())

    with assembled_beside(directory, "add") as tmp:
        link_files(directory, tmp, manifest.tower_files())
        if replaced:
            removed = remove_rows(directory, tmp, manifest, replace, encoder)
        else:
            link_files(directory, tmp, [f["file"] for s in manifest.shards for f in [s, *s.get("texts", [])]])
            removed = Removed(manifest.shards, old_ids, EncodeStats(), True)

        written = engine.write_shards(corpus, tmp, encoder, tmp / manifest.document_tower_dir, bc,
                                      store_text=manifest.store_text, row_group_rows=manifest.row_group_rows,
                                      first_shard=next_shard_number(manifest.shards), progress=progress)
        new_shards = [{k: v for k, v in s.items() if k != "stats"} for s in written.shards]
        all_ids = pa.chunked_array([removed.ids.combine_chunks(), *written.ids])
        check_unique(all_ids, "{n} ids of the new documents are already in the index or repeated",
                     "" if upsert else " (pass --upsert to replace documents already in the index)")
        stats = written.stats
        addition = {"documents": stats.texts, **({"replaced": replaced} if upsert else {}),
                    "files": [str(f) for f in corpus.files], "id_column": corpus.id_column,
                    "text_column": corpus.text_column, "engine": engine.describe()}
        retuned = None
        if replaced:
            m = with_stats(rebuilt(tmp, manifest, removed, config, removed.shards + new_shards, all_ids), stats)
            m.additions = (manifest.additions or []) + [{**addition, "seconds": round(time.perf_counter() - t0, 3)}]
        else:
            m, retuned = _extended(tmp, directory, manifest, config, corpus, new_shards, all_ids, stats, addition, t0,
                                   engine)
        write_manifest(tmp, m)
        publish_dir(tmp, directory)
    return AddResult(directory, stats.texts, m.documents, round(time.perf_counter() - t0, 3), m, retuned, replaced)


def _check_column_types(reader: ShardReader, corpus: Corpus) -> None:
    """The new documents' stored columns must have the types the index's shards have."""
    if not corpus.columns or not reader.files:
        return
    schema = pq.read_schema(reader.files[0])
    for field in corpus.columns:
        have = schema.field(field.name).type
        if field.type != have:
            raise CorpusError(f"column '{field.name}' has type {field.type} in the new documents but {have} in "
                              "the index; give it the index's type")


def _extended(tmp: Path, directory: Path, manifest: Manifest, config: Config, corpus: Corpus, new_shards: list[dict],
              all_ids: pa.ChunkedArray, stats: EncodeStats, addition: dict, t0: float,
              engine: LocalEngine) -> tuple[Manifest, dict | None]:
    """The manifest once the existing FAISS index is extended with ``new_shards`` (and retuned) in ``tmp``."""
    bc = config.build
    index = faiss_index.load(directory / manifest.index_file)
    engine.append(index, tmp, new_shards, manifest.labels_are_ids)
    id_lookup = write_id_lookup(tmp, all_ids.to_numpy()) if manifest.id_lookup else {}

    m = with_stats(manifest, stats)
    m.shards = manifest.shards + new_shards
    m.index = {**manifest.index, "ntotal": int(index.ntotal)}
    if id_lookup:
        m.id_lookup = {"files": id_lookup}
    m.additions = (manifest.additions or []) + [{**addition, "seconds": round(time.perf_counter() - t0, 3)}]
    retuned = None
    if manifest.index.get("tuning"):
        queries, source = _tuning_queries(tmp, m, config, corpus)  # all with a known word
        enough = min(bc.tune_queries, FEW_QUERIES)
        if len(queries) < enough:
            # A recall measured on a handful of queries could pick a much cheaper setting by luck.
            logger.warning("only %d tuning queries (%s), fewer than %d: search parameters kept (%s)",
                           len(queries), source, enough, manifest.index["params"])
        else:
            info = retune(index, tmp, m.shards, bc, manifest.labels_are_ids, queries)
            info["tuning"]["query_source"] = source
            retuned = {"params_before": manifest.index["params"], "params": info["params"],
                       **{k: info["tuning"][k] for k in ("recall", "recall_lower_bound", "reached", "p50_ms")},
                       "tune_s": info["tune_s"]}
            logger.debug("retuned for %d documents: %s -> %s, recall@%d %.3f", m.documents,
                        retuned["params_before"], info["params"], bc.tune_k, info["tuning"]["recall"])
            # The build's comparison of families described the corpus before these documents.
            m.index = {key: v for key, v in {**m.index, **info}.items() if key != "candidates"}
            m.additions[-1].update(retuned=retuned, seconds=round(time.perf_counter() - t0, 3))
    # Saved after retuning: the file carries the search parameters the manifest names.
    saved = save_index(index, tmp)
    m.index = {**m.index, "bytes": saved["bytes"], "sha256": saved["sha256"]}
    return m, retuned


def _tuning_queries(root: Path, manifest: Manifest, config: Config, corpus: Corpus) -> tuple[np.ndarray, str]:
    """Query vectors to retune with, and where they came from.

    The build's ``--tuning-queries`` file when it is still there; else windows of documents
    sampled from the whole enlarged index (``manifest.shards``) when texts are stored (the
    build's kind of query); else windows of the added documents.
    """
    bc = config.build
    encoder = load_encoder(root / manifest.query_tower_dir)
    if bc.tuning_queries:
        if Path(bc.tuning_queries).is_file():
            return file_tuning_queries(bc.tuning_queries, encoder, bc.tune_queries, config.seed)
        logger.warning("the build's tuning queries %s are gone; retuning with windows of documents instead",
                       bc.tuning_queries)
    if not manifest.store_text:
        return corpus_window_queries(corpus, encoder, bc.tune_queries, config.seed), WINDOW_QUERIES + " (the added ones)"
    return stored_window_queries(root, manifest.shards, encoder, bc.tune_queries, config.seed), WINDOW_QUERIES
