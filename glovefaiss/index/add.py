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
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import from_dict
from ..errors import CorpusError
from ..io.corpus import open_corpus
from ..io.files import publish_dir, sha256_file, write_json_atomic
from ..tower.encoder import EncodeStats, load_encoder
from . import faiss_ops as faiss_index
from .build import (
    TOP_OOV,
    WINDOW_QUERIES,
    _duplicates,
    encode_corpus,
    file_tuning_queries,
    pooling_backend,
    tuning_queries,
    window_queries,
    window_sample,
)
from .families import retune
from .layout import (
    DOCUMENT_TOWER_DIR,
    INDEX_FILE,
    SHARDS_DIR,
    TOWER_DIR,
    check_sizes,
    read_manifest,
)
from .shards import ShardReader, ShardWriter, TextStore, iter_shard_vectors, shard_schema, write_id_lookup
from .tuning import FEW_QUERIES

logger = logging.getLogger(__name__)


@dataclass
class AddResult:
    out_dir: Path
    added: int
    documents: int
    seconds: float
    manifest: dict[str, Any]
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
                  text_column: str | None = None) -> AddResult:
    """Encode ``corpus`` with the index's document tower and add it to the index at ``directory``.

    ``id_column`` / ``text_column``: the new files' columns (default: those the index was built from).
    New rows go to new shards; the FAISS index gets the new vectors (an IVF index keeps its
    trained centroids). An approximate index is tuned again for its recall target over the
    enlarged corpus (:func:`_tuning_queries` says with which queries): more documents per cell
    can need more cells probed. The updated directory is assembled beside the old one from hard
    links and swapped in with a rename, so readers of the old index are unaffected.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    directory = Path(directory).absolute()
    manifest = read_manifest(directory)
    check_sizes(directory, manifest)
    config = from_dict(manifest["config"], origin=f"{directory}/manifest.json")
    if threads:
        config = config.replace({"build.threads": threads})
    bc = config.build
    corpus = open_corpus(corpus, id_column or manifest["corpus"]["id_column"],
                         text_column or manifest["corpus"]["text_column"])
    id_type = manifest["corpus"]["id_type"]
    if corpus.id_type != id_type:
        raise CorpusError(f"the new documents have {corpus.id_type} ids but the index has {id_type} ids")
    doc_tower = directory / manifest.get("document_tower", {}).get("dir", TOWER_DIR)
    encoder = load_encoder(doc_tower)
    old_reader = ShardReader(directory, manifest["shards"])

    tmp = directory.with_name(f".{directory.name}.add-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        keep = [f["file"] for s in manifest["shards"] for f in [s, *s.get("texts", [])]]
        for key, default in (("query_tower", TOWER_DIR), ("document_tower", DOCUMENT_TOWER_DIR)):
            tower = manifest.get(key)
            if tower:
                keep += [f"{tower.get('dir', default)}/{name}" for name in tower.get("files", {})]
        _link_tree(directory, tmp, keep)

        writer = ShardWriter(tmp / SHARDS_DIR, shard_schema(id_type, encoder.dim, manifest["store_text"]),
                             bc.shard_rows, manifest["row_group_rows"], first_shard=len(manifest["shards"]))
        stats = EncodeStats()
        new_ids: list[pa.Array] = []
        with tqdm(total=corpus.num_rows, unit="doc", unit_scale=True, desc="encoding",
                  disable=None if progress is None else not progress, leave=False) as bar:
            for ids, texts, vectors, s in encode_corpus(corpus, encoder, bc, backend=pooling_backend(corpus.num_rows)):
                stats.add(s)
                writer.write(ids, vectors, texts if manifest["store_text"] else None)
                new_ids.append(ids)
                bar.update(len(ids))
        new_shards = writer.close()
        all_ids = pa.chunked_array([old_reader.column("id").combine_chunks(), *new_ids])
        dups = _duplicates(all_ids)
        if dups:
            shown = ", ".join(map(repr, dups[:5]))
            raise CorpusError(f"{len(dups)} ids of the new documents are already in the index or repeated "
                              f"(e.g. {shown}); ids must be unique")

        index = faiss_index.load(directory / manifest["index"]["file"])
        by_id = manifest["index"]["labels"] == "id"
        for ids, vectors in iter_shard_vectors(ShardReader(tmp, new_shards)):
            # Row labels continue on their own: FAISS numbers added vectors from ntotal.
            faiss_index.add(index, vectors, ids.to_numpy() if by_id else None)
        id_lookup = write_id_lookup(tmp, all_ids.to_numpy()) if manifest.get("id_lookup") else {}

        m = dict(manifest)
        m["shards"] = manifest["shards"] + new_shards
        m["documents"] = manifest["documents"] + stats.texts
        m["empty_documents"] = manifest["empty_documents"] + stats.empty_texts
        m["tokens"] = manifest["tokens"] + stats.tokens
        m["oov_tokens"] = manifest["oov_tokens"] + stats.oov_tokens
        m["oov_rate"] = round(m["oov_tokens"] / m["tokens"], 6) if m["tokens"] else 0.0
        merged = dict(manifest.get("top_oov_words", []))
        for w, c in stats.oov_words.items():
            merged[w] = merged.get(w, 0) + c
        m["top_oov_words"] = [[w, c] for w, c in sorted(merged.items(), key=lambda x: (-x[1], x[0]))[:TOP_OOV]]
        m["index"] = {**manifest["index"], "ntotal": int(index.ntotal)}
        if id_lookup:
            m["id_lookup"] = {"files": id_lookup}
        m["additions"] = manifest.get("additions", []) + [
            {"documents": stats.texts, "files": [str(f) for f in corpus.files],
             "id_column": corpus.id_column, "text_column": corpus.text_column,
             "seconds": round(time.perf_counter() - t0, 3)}]
        retuned = None
        if manifest["index"].get("tuning"):
            shards = m["shards"]
            queries, source = _tuning_queries(tmp, shards, manifest, config, corpus)  # all with a known word
            enough = min(bc.tune_queries, FEW_QUERIES)
            if len(queries) < enough:
                # A recall measured on a handful of queries could pick a much cheaper setting by luck.
                logger.warning("only %d tuning queries (%s), fewer than %d: search parameters kept (%s)",
                               len(queries), source, enough, manifest["index"]["params"])
            else:
                info = retune(index, tmp, shards, bc, by_id, queries)
                info["tuning"]["query_source"] = source
                retuned = {"params_before": manifest["index"]["params"], "params": info["params"],
                           **{k: info["tuning"][k] for k in ("recall", "recall_lower_bound", "reached", "p50_ms")},
                           "tune_s": info["tune_s"]}
                logger.info("retuned for %d documents: %s -> %s, recall@%d %.3f", m["documents"],
                            retuned["params_before"], info["params"], bc.tune_k, info["tuning"]["recall"])
                m["index"] = {**m["index"], **info}
                m["additions"][-1].update(retuned=retuned, seconds=round(time.perf_counter() - t0, 3))
        # Saved after retuning: the file carries the search parameters the manifest names.
        faiss_index.save(index, tmp / INDEX_FILE)
        m["index"].update(bytes=(tmp / INDEX_FILE).stat().st_size, sha256=sha256_file(tmp / INDEX_FILE))
        write_json_atomic(tmp / "manifest.json", m)
        publish_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return AddResult(directory, stats.texts, m["documents"], round(time.perf_counter() - t0, 3), m, retuned)


def _tuning_queries(root: Path, shards: list[dict], manifest: dict, config, corpus) -> tuple[np.ndarray, str]:
    """Query vectors to retune with, and where they came from.

    The build's ``--tuning-queries`` file when it is still there; else windows of documents
    sampled from the whole enlarged index when texts are stored (the build's kind of query);
    else windows of the added documents.
    """
    bc = config.build
    encoder = load_encoder(root / manifest["query_tower"].get("dir", TOWER_DIR))
    if bc.tuning_queries:
        if Path(bc.tuning_queries).is_file():
            return file_tuning_queries(bc.tuning_queries, encoder, bc.tune_queries, config.seed)
        logger.warning("the build's tuning queries %s are gone; retuning with windows of documents instead",
                       bc.tuning_queries)
    if not manifest["store_text"]:
        return tuning_queries(corpus, encoder, bc.tune_queries, config.seed), WINDOW_QUERIES + " (the added ones)"
    rows, rng = window_sample(sum(s["rows"] for s in shards), bc.tune_queries, config.seed)
    return window_queries(TextStore(root, shards).take(rows), encoder, bc.tune_queries, rng), WINDOW_QUERIES
