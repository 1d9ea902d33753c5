"""``build()``: a Parquet corpus into a new index directory, atomically and resumably.

The index writer (:mod:`.writer`) encodes the shards and makes the index and manifest; this
step owns the output directory: its checks, the hidden partial directory, the journal of
complete shards that lets an interrupted build resume, and the publishing rename.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import Config
from ..errors import IndexDirError, ModelError
from ..io.corpus import Corpus, file_signature, open_corpus
from ..io.files import absolute_path, publish_dir, sha256_file, write_json_atomic
from ..tower import sif as weighting
from ..tower.encoder import TextEncoder, encoder_from_config, save_encoder
from .layout import (
    DOCUMENT_TOWER_DIR,
    MANIFEST,
    SHARDS_DIR,
    TOWER_DIR,
    Manifest,
    write_manifest,
)
from .shards import TEXTS_DIR
from .update import index_lock
from .writer import LocalEngine, finish_index, new_manifest

__all__ = ["STATE", "BuildResult", "ResumeMismatch", "build"]

logger = logging.getLogger(__name__)

STATE = "build-state.json"


@dataclass
class BuildResult:
    """What a build produced; ``manifest`` is the manifest written to disk."""

    out_dir: Path
    documents: int
    empty_documents: int
    oov_rate: float
    seconds: float
    index_bytes: int
    manifest: Manifest
    tower_bytes: int = 0  # the query tower (and document tower) the index directory carries


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    # A directory that is not an index is refused outright: --overwrite would not replace it either.
    if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists()):
        raise IndexDirError(f"{out} exists and is not a glovefaiss index; refusing to overwrite it, choose another --out")
    if not overwrite:
        raise IndexDirError(f"{out} already exists; pass --overwrite to replace it")


class ResumeMismatch(IndexDirError):
    """``--resume`` of a build whose corpus, config or towers changed; the partial directory is kept."""


def _partial(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


class _BuildState:
    """The partial directory's journal: what the build is of, and which shards are complete."""

    def __init__(self, directory: Path, fingerprint: dict):
        self.path = directory / STATE
        self.fingerprint = fingerprint
        self.shards: list[dict] = []

    def load_completed(self) -> bool:
        """Adopt the shards of an earlier, interrupted run of the same build; False if there is none.

        Raises :class:`ResumeMismatch` naming what changed when the earlier run was of other input.
        """
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        old = data.get("fingerprint") or {}
        if old != self.fingerprint:
            changed = [name for key, name in (("corpus", "corpus files"), ("config", "config"),
                                              ("tower", "towers (word vectors or model)"))
                       if old.get(key) != self.fingerprint.get(key)]
            what = f"the {' and the '.join(changed) or 'input'} changed since the interrupted build"
            keys = _changes(old.get("config"), self.fingerprint.get("config"))
            if keys:
                what += f" ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            raise ResumeMismatch(what)
        root = self.path.parent
        for shard in data.get("shards", []):
            files = [shard, *shard.get("texts", [])]
            if not all(_intact(root / f["file"], f["bytes"], f["sha256"]) for f in files):
                break
            self.shards.append(shard)
        return True

    def add(self, shard: dict) -> None:
        self.shards.append(shard)
        # Not fsynced: a resume adopts a shard only once its files match their recorded size and
        # sha256 (load_completed), so a journal that outlived its shards' data costs a re-encode,
        # never a wrong index. The fsync flushed the shard just written too: 90 ms of a 0.9 s
        # encoding phase at 100,000 documents, on the writing thread.
        write_json_atomic(self.path, {"fingerprint": self.fingerprint, "shards": self.shards}, durable=False)


def _journal_shards(directory: Path) -> list[dict]:
    """The complete shards the journal of a partial directory lists (none when it has no journal)."""
    try:
        return json.loads((directory / STATE).read_text(encoding="utf-8")).get("shards", [])
    except (OSError, ValueError):
        return []


def _changes(old, new, prefix: str = "") -> list[str]:
    """``key old → new`` for each leaf value that differs between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for k in sorted(set(old) | set(new), key=str)
                for c in _changes(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')} {json.dumps(old)} → {json.dumps(new)}"]


def _intact(path: Path, size: int, digest: str) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256_file(path) == digest


def _fingerprint(config: Config, corpus: Corpus, tower_files: dict) -> dict:
    cfg = config.to_dict()
    for k in ("batch_size", "threads", "engine", "ray_address", "workers"):  # do not change the output
        cfg["build"].pop(k, None)
    files = [file_signature(f) for f in corpus.files]
    return {"config": cfg, "corpus": files, "tower": tower_files}


def _prepare_partial(out: Path, resume: bool) -> Path:
    tmp = _partial(out)
    if tmp.exists() and not resume:
        if not (tmp / STATE).exists() and any(tmp.iterdir()):
            raise IndexDirError(f"{tmp} exists and was not made by glovefaiss; move it away and build again")
        logger.info("removing the unfinished build in %s (pass --resume to continue it instead)", tmp)
        shutil.rmtree(tmp)
    tmp.mkdir(exist_ok=True)
    return tmp


def build(
    corpus: str | Path | Sequence[str | Path] | Corpus,
    out: str | Path,
    config: Config | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool | None = None,
    encoder: TextEncoder | None = None,
    query_encoder: TextEncoder | None = None,
    extra_manifest: dict[str, Any] | None = None,
    engine: LocalEngine | None = None,
) -> BuildResult:
    """Encode every document of ``corpus`` and write an index directory at ``out``.

    The directory is assembled in a hidden sibling (``.NAME.partial``) and renamed into place
    when complete, so a failed build leaves any previous index untouched. Completed shards are
    journalled: after a crash, ``resume=True`` continues from them, and the result is the same,
    byte for byte, as an uninterrupted build.

    ``encoder`` encodes the documents (default: the config's frozen GloVe mean); ``query_encoder``
    (default: the same) is stored for the query path. ``extra_manifest`` entries (e.g. the trained
    model a build used) are added to the manifest. ``engine`` encodes the shards and fills the
    FAISS index (default: :class:`.writer.LocalEngine`, this process); the manifest's ``engine``
    records which one did.
    """
    config = config or Config()
    if config.build.tuning_queries:  # absolute, so that `add` finds the file from any directory
        config = config.replace({"build.tuning_queries": str(Path(config.build.tuning_queries).absolute())})
    bc = config.build
    t0 = time.perf_counter()
    if not isinstance(corpus, Corpus):
        corpus = open_corpus(corpus, bc.id_column, bc.text_column, bc.columns)
    out = absolute_path(out)
    with index_lock(out, "build"):
        return _locked_build(corpus, out, config, overwrite, resume, progress, encoder, query_encoder,
                             extra_manifest, t0, engine)


def _locked_build(corpus: Corpus, out: Path, config: Config, overwrite: bool, resume: bool, progress: bool | None,
                  encoder: TextEncoder | None, query_encoder: TextEncoder | None, extra_manifest: dict | None,
                  t0: float, engine: LocalEngine | None) -> BuildResult:
    bc = config.build
    if resume and not overwrite and (out / MANIFEST).is_file() and not (_partial(out) / STATE).is_file():
        raise IndexDirError(f"{out} is already a complete index; nothing to resume (pass --overwrite to rebuild it)")
    _check_out_dir(out, overwrite)
    engine = engine or LocalEngine()
    engine.start(corpus.num_rows)

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
        manifest = _build_into(tmp, corpus, config, encoder, query_encoder or encoder, vectors_info, progress, resume,
                               extra_manifest, pooling_info, overwrite, engine)
        manifest.timings["load_vectors_s"] = round(t_vectors, 3)
        if "fit_s" in pooling_info:
            manifest.timings["pooling_fit_s"] = pooling_info["fit_s"]
        manifest.timings["total_s"] = round(time.perf_counter() - t0, 3)
        (tmp / STATE).unlink()
        write_manifest(tmp, manifest)
        publish_dir(tmp, out)
    except KeyboardInterrupt:
        done = _journal_shards(tmp)
        if done:
            logger.warning("interrupted after %d complete %s (%d documents), kept in %s: build again with "
                           "--resume to continue", len(done), "shard" if len(done) == 1 else "shards",
                           sum(s["rows"] for s in done), tmp)
        else:
            logger.warning("interrupted before any shard was complete; nothing to resume")
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    except ResumeMismatch as e:  # the interrupted build's shards stay, for a --resume with its input
        raise ResumeMismatch(f"cannot resume {out}: {e}; build with the interrupted build's input and settings, or "
                             "pass --overwrite to start it afresh") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    towers = [t["dir"] for t in (manifest.query_tower, manifest.document_tower) if t]
    return BuildResult(
        out_dir=out,
        documents=manifest.documents,
        empty_documents=manifest.empty_documents,
        oov_rate=manifest.oov_rate,
        seconds=manifest.timings["total_s"],
        index_bytes=manifest.index["bytes"],
        manifest=manifest,
        tower_bytes=sum(f.stat().st_size for d in towers for f in (out / d).iterdir()),
    )


def _build_into(tmp: Path, corpus: Corpus, config: Config, encoder: TextEncoder, query_encoder: TextEncoder,
                vectors_info: dict, progress: bool | None, resume: bool, extra: dict | None,
                pooling: dict, overwrite: bool = False, engine: LocalEngine | None = None) -> Manifest:
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
    try:
        if resume and not state.load_completed():
            logger.info("nothing to resume in %s; building from the start", tmp)
    except ResumeMismatch as e:
        if not overwrite:
            raise
        logger.info("%s; building from the start (--overwrite)", e)
        state.path.unlink(missing_ok=True)  # its shards go below: an interrupt must not count them
    done = {f["file"] for s in state.shards for f in [s, *s.get("texts", [])]}
    for sub in (SHARDS_DIR, TEXTS_DIR):
        for stray in (tmp / sub).glob("*") if (tmp / sub).exists() else []:
            if f"{sub}/{stray.name}" not in done:
                stray.unlink()  # a shard cut short by the crash, or one that failed its checksum

    ids: list[pa.Array] = []
    for shard in state.shards:
        ids.append(pq.read_table(tmp / shard["file"], columns=["id"]).column("id").combine_chunks())
    done_rows = sum(s["rows"] for s in state.shards)
    if state.shards:
        logger.info("resuming after %d complete shards (%d documents)", len(state.shards), done_rows)

    tower_dir = tmp / (TOWER_DIR if encoder is query_encoder else DOCUMENT_TOWER_DIR)
    written = engine.write_shards(corpus, tmp, encoder, tower_dir, bc, store_text=bc.store_text,
                                  row_group_rows=bc.row_group_rows, first_shard=len(state.shards), skip=done_rows,
                                  on_shard=state.add, progress=progress)
    finished = finish_index(tmp, state.shards, pa.chunked_array(ids + written.ids), corpus, config, query_encoder,
                            encoder.dim, engine)
    encoded, t_encode = written.stats.texts, written.encode_s
    timings = {"pooling_backend": written.backend, "encoder_setup_s": round(written.setup_s, 3),
               "encode_s": round(t_encode, 3), "index_s": round(finished.index_s, 3),
               "resumed_documents": done_rows,
               "docs_per_s": round(encoded / t_encode, 1) if t_encode and encoded else None}
    return new_manifest(config, corpus, encoder, state.shards, finished, vectors_info,
                        {"query": {"files": tower_files, **tower_meta}, "document": doc_files}, timings,
                        extra=extra, pooling=pooling, engine=engine.describe())
