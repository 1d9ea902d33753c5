"""``add_documents()``: append a corpus to an existing index directory, atomically."""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..config import Config, from_dict
from ..errors import CorpusError
from ..io.corpus import Corpus, open_corpus
from ..io.files import publish_dir
from ..tower.encoder import load_encoder
from . import faiss_ops as faiss_index
from .families import retune
from .layout import MANIFEST, Manifest, check_sizes, read_manifest, write_manifest
from .shards import ShardReader, TextStore, write_id_lookup
from .tuning import (
    FEW_QUERIES,
    WINDOW_QUERIES,
    corpus_window_queries,
    file_tuning_queries,
    window_queries,
    window_sample,
)
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


def _link_tree(src: Path, dst: Path, names: list[str]) -> None:
    """Hard-link (or copy where links fail) the listed files: the old directory stays untouched."""
    for rel in names:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / rel, target)
        except OSError:
            shutil.copy2(src / rel, target)


def add_documents(directory: str | Path, corpus: Sequence[str | Path], *, progress: bool | None = None,
                  threads: int | None = None, id_column: str | None = None,
                  text_column: str | None = None, engine: LocalEngine | None = None) -> AddResult:
    """Encode ``corpus`` with the index's document tower and add it to the index at ``directory``.

    ``id_column`` / ``text_column``: the new files' columns (default: those the index was built from).
    New rows go to new shards; the FAISS index gets the new vectors (an IVF index keeps its
    trained centroids). An approximate index is tuned again for its recall target over the
    enlarged corpus (:func:`_tuning_queries` says with which queries): more documents per cell
    can need more cells probed. The updated directory is assembled beside the old one from hard
    links and swapped in with a rename, so readers of the old index are unaffected. ``engine``:
    where encoding and adding run (default: :class:`.writer.LocalEngine`, this process).
    """
    engine = engine or LocalEngine()
    t0 = time.perf_counter()
    directory = Path(directory).absolute()
    manifest = read_manifest(directory)
    check_sizes(directory, manifest)
    config = from_dict(manifest.config, origin=f"{directory}/{MANIFEST}")
    if threads:
        config = config.replace({"build.threads": threads})
    bc = config.build
    corpus = open_corpus(corpus, id_column or manifest.corpus["id_column"],
                         text_column or manifest.corpus["text_column"])
    id_type = manifest.corpus["id_type"]
    if corpus.id_type != id_type:
        raise CorpusError(f"the new documents have {corpus.id_type} ids but the index has {id_type} ids")
    encoder = load_encoder(directory / manifest.document_tower_dir)
    old_reader = ShardReader(directory, manifest.shards)

    tmp = directory.with_name(f".{directory.name}.add-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        keep = [f["file"] for s in manifest.shards for f in [s, *s.get("texts", [])]] + manifest.tower_files()
        _link_tree(directory, tmp, keep)

        written = engine.write_shards(corpus, tmp, encoder, tmp / manifest.document_tower_dir, bc,
                                      store_text=manifest.store_text, row_group_rows=manifest.row_group_rows,
                                      first_shard=len(manifest.shards), progress=progress)
        new_shards = [{k: v for k, v in s.items() if k != "stats"} for s in written.shards]
        all_ids = pa.chunked_array([old_reader.column("id").combine_chunks(), *written.ids])
        check_unique(all_ids, "{n} ids of the new documents are already in the index or repeated")

        index = faiss_index.load(directory / manifest.index_file)
        engine.append(index, tmp, new_shards, manifest.labels_are_ids)
        id_lookup = write_id_lookup(tmp, all_ids.to_numpy()) if manifest.id_lookup else {}

        stats = written.stats
        m = with_stats(manifest, stats)
        m.shards = manifest.shards + new_shards
        m.index = {**manifest.index, "ntotal": int(index.ntotal)}
        if id_lookup:
            m.id_lookup = {"files": id_lookup}
        m.additions = (manifest.additions or []) + [
            {"documents": stats.texts, "files": [str(f) for f in corpus.files],
             "id_column": corpus.id_column, "text_column": corpus.text_column,
             "engine": engine.describe(), "seconds": round(time.perf_counter() - t0, 3)}]
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
                logger.info("retuned for %d documents: %s -> %s, recall@%d %.3f", m.documents,
                            retuned["params_before"], info["params"], bc.tune_k, info["tuning"]["recall"])
                m.index = {**m.index, **info}
                m.additions[-1].update(retuned=retuned, seconds=round(time.perf_counter() - t0, 3))
        # Saved after retuning: the file carries the search parameters the manifest names.
        saved = save_index(index, tmp)
        m.index = {**m.index, "bytes": saved["bytes"], "sha256": saved["sha256"]}
        write_manifest(tmp, m)
        publish_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return AddResult(directory, stats.texts, m.documents, round(time.perf_counter() - t0, 3), m, retuned)


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
    shards = manifest.shards
    rows, rng = window_sample(sum(s["rows"] for s in shards), bc.tune_queries, config.seed)
    return window_queries(TextStore(root, shards).take(rows), encoder, bc.tune_queries, rng), WINDOW_QUERIES
