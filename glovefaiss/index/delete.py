"""``delete_documents()``: remove documents by id from an index directory, atomically.

Shards holding a deleted row are rewritten without it (the others are hard-linked), and the
FAISS index is made afresh from the remaining shards by the build's own :func:`.writer.finish_index`,
tuned with the same kind of queries: the result is byte for byte the index a new build of the
remaining documents would make (the shards differ only in where they break). ``add --upsert``
removes the documents it replaces the same way (:func:`remove_rows`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import from_dict
from ..errors import CorpusError
from ..io.files import absolute_path, publish_dir
from ..tower.encoder import EncodeStats, TextEncoder, load_encoder
from .layout import MANIFEST, SHARDS_DIR, Manifest, check_sizes, read_manifest, write_manifest
from .shards import ShardReader, ShardWriter, iter_shard_vectors
from .update import assembled_beside, index_lock, link_files
from .writer import TOP_OOV, finish_index, with_stats

logger = logging.getLogger(__name__)

SHOWN_IDS = 5  # unknown ids named in the error
RECORDED_IDS = 100  # deleted ids listed in the manifest's deletions entry


@dataclass
class DeleteResult:
    out_dir: Path
    deleted: int
    missing: list  # the ids given that the index did not hold (only with missing_ok)
    documents: int
    seconds: float
    manifest: Manifest


@dataclass
class Removed:
    """What :func:`remove_rows` left: the new shard list, the remaining ids, the removed documents' counts."""

    shards: list[dict]
    ids: pa.ChunkedArray
    stats: EncodeStats
    counted_tokens: bool  # False when texts are not stored: tokens of removed documents unknown


def ids_as(ids: Iterable, id_type: str, directory: Path) -> pa.Array:
    """The ids given (ints or strings, e.g. from a command line), as the index's id type, repeats dropped."""
    values = list(dict.fromkeys(ids))
    if id_type != "int64":
        return pa.array([str(v) for v in values], pa.string())
    out = []
    for v in values:
        try:
            if isinstance(v, (bool, float)):
                raise ValueError
            out.append(int(v))
        except ValueError:
            raise CorpusError(f"id {v!r} is not an integer; the index at {directory} has integer ids") from None
    return pa.array(out, pa.int64())


def remove_rows(src: Path, dst: Path, manifest: Manifest, drop: np.ndarray, encoder: TextEncoder) -> Removed:
    """Write into ``dst`` the shards of the index at ``src`` without the rows where ``drop`` is true.

    Untouched shards are hard-linked; a shard that loses rows is rewritten under its own number
    (a shard that loses every row is left out). The removed documents' counts come from
    encoding their stored texts again (without stored texts: documents and empty documents only,
    from their vectors).
    """
    reader = ShardReader(src, manifest.shards)
    shards, ids, stats, counted = [], [], EncodeStats(), True
    for shard, start, end in zip(manifest.shards, reader.starts[:-1], reader.starts[1:]):
        mask = drop[start:end]
        if not mask.any():
            link_files(src, dst, [f["file"] for f in [shard, *shard.get("texts", [])]])
            shards.append(shard)
            ids.append(pq.read_table(src / shard["file"], columns=["id"]).column("id").combine_chunks())
            continue
        pf = pq.ParquetFile(src / shard["file"])
        table = pf.read()
        gone, kept = table.filter(pa.array(mask)), table.filter(pa.array(~mask))
        if "text" in table.column_names:
            encoder.encode(gone.column("text").combine_chunks(), stats=stats, top_oov=TOP_OOV)
        else:
            vectors = gone.column("vector").combine_chunks().flatten().to_numpy().reshape(len(gone), -1)
            stats.add(EncodeStats(texts=len(gone), empty_texts=int((~np.any(vectors != 0, axis=1)).sum())))
            counted = False
        if not kept.num_rows:
            continue
        number = int(Path(shard["file"]).stem.rsplit("-", 1)[1])
        writer = ShardWriter(dst / SHARDS_DIR, pf.schema_arrow, kept.num_rows, manifest.row_group_rows,
                             first_shard=number)
        for batch in kept.to_batches():
            writer.write_batch(batch)
        shards += writer.close()
        ids.append(kept.column("id").combine_chunks())
    return Removed(shards, pa.chunked_array(ids, reader.column("id").type if not ids else None), stats, counted)


def anisotropy(directory: Path, shards: list[dict]) -> float | None:
    """Mean cosine of the non-empty documents' vectors to their centroid (as a build records it)."""
    total, n = None, 0
    for _, vectors in iter_shard_vectors(ShardReader(directory, shards)):
        s = vectors.sum(axis=0, dtype=np.float64)
        total = s if total is None else total + s
        n += int(np.any(vectors != 0, axis=1).sum())
    return None if total is None or n == 0 else round(float(np.linalg.norm(total)) / n, 6)


def delete_documents(directory: str | Path, ids: Iterable, *, missing_ok: bool = False) -> DeleteResult:
    """Remove the documents with ``ids`` from the index at ``directory``; queries never return them again.

    An id the index does not hold is an error (:class:`CorpusError`, nothing is deleted) unless
    ``missing_ok``, which skips it. The new directory is assembled beside the old one and swapped
    in with one atomic exchange; the manifest's ``deletions`` list records the change.
    """
    t0 = time.perf_counter()
    directory = absolute_path(directory)
    with index_lock(directory, "delete"):
        manifest = read_manifest(directory)
        check_sizes(directory, manifest)
        old_ids = ShardReader(directory, manifest.shards).column("id")
        wanted = ids_as(ids, manifest.corpus["id_type"], directory)
        present = pc.is_in(wanted, value_set=old_ids).to_numpy(zero_copy_only=False)
        missing = wanted.filter(pa.array(~present)).to_pylist()
        if missing and not missing_ok:
            raise CorpusError(_missing_message(missing, len(wanted), directory))
        drop = pc.is_in(old_ids, value_set=wanted).to_numpy(zero_copy_only=False)
        deleted = int(drop.sum())
        if not deleted:
            return DeleteResult(directory, 0, missing, manifest.documents, round(time.perf_counter() - t0, 3), manifest)
        if deleted == len(drop):
            raise CorpusError(f"deleting these {deleted} ids would leave {directory} empty; build a new index instead")
        config = from_dict(manifest.config, origin=f"{directory}/{MANIFEST}")
        with assembled_beside(directory, "delete") as tmp:
            link_files(directory, tmp, manifest.tower_files())
            removed = remove_rows(directory, tmp, manifest, drop, load_encoder(directory / manifest.document_tower_dir))
            m = rebuilt(tmp, manifest, removed, config)
            gone = wanted.filter(pa.array(present)).to_pylist()
            m.deletions = (manifest.deletions or []) + [
                {"documents": deleted, "ids": gone[:RECORDED_IDS], "more_ids": max(0, len(gone) - RECORDED_IDS),
                 "missing": len(missing), **({} if removed.counted_tokens else {"tokens_counted": False}),
                 "seconds": round(time.perf_counter() - t0, 3)}]
            write_manifest(tmp, m)
            publish_dir(tmp, directory)
    logger.debug("deleted %d documents from %s", deleted, directory)
    return DeleteResult(directory, deleted, missing, m.documents, round(time.perf_counter() - t0, 3), m)


def rebuilt(tmp: Path, manifest: Manifest, removed: Removed, config, shards: list[dict] | None = None,
            ids: pa.ChunkedArray | None = None) -> Manifest:
    """The manifest of ``tmp`` once its FAISS index is made afresh over ``shards`` (default: ``removed``'s)."""
    shards = removed.shards if shards is None else shards
    finished = finish_index(tmp, shards, removed.ids if ids is None else ids, None, config,
                            load_encoder(tmp / manifest.query_tower_dir), manifest.dim)
    m = with_stats(manifest, removed.stats, sign=-1)
    m.shards = shards
    m.index = finished.info
    m.id_lookup = {"files": finished.id_lookup} if finished.id_lookup else None
    m.anisotropy = anisotropy(tmp, shards)
    return m


def _missing_message(missing: list, given: int, directory: Path) -> str:
    if len(missing) == 1:
        head = f"id {missing[0]!r} is not in {directory}"
    else:
        shown = ", ".join(map(repr, missing[:SHOWN_IDS])) + (", ..." if len(missing) > SHOWN_IDS else "")
        head = f"{len(missing)} of the {given} ids to delete are not in {directory} ({shown})"
    return f"{head}; nothing was deleted (pass --missing-ok to skip unknown ids)"
