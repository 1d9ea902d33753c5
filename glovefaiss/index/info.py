"""What an index directory holds, in a few figures: ``glovefaiss info`` and the service's /info."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .layout import DOCUMENT_TOWER_DIR, MANIFEST, TOWER_DIR, check_sizes, read_manifest


def params_text(params: dict, none: str = "defaults") -> str:
    """Search parameters as ``nprobe=24, k_factor=16``; ``none`` when there are none."""
    return ", ".join(f"{k}={v}" for k, v in params.items()) or none


def manifest_value(manifest: Any, path: str, default: Any = None) -> Any:
    """The manifest's value at a dotted ``path`` (``"index.tuning.recall"``), or ``default``.

    Every reader of a loaded manifest goes through here, so a typed manifest can replace the dict
    in one place.
    """
    value = manifest
    for key in path.split("."):
        # A dict or the typed Manifest (whose get() also finds keys it keeps in ``extra``); a
        # section recorded as None (an optional one the build left out) counts as absent.
        value = value.get(key) if hasattr(value, "get") else getattr(value, key, None)
        if value is None:
            return default
    return value


def summary(manifest_or_dir: Any) -> dict[str, Any]:
    """A short summary of an index: documents, vectors, tokeniser, index and tuning, sizes, provenance.

    Takes the manifest (as :class:`~glovefaiss.index.search.Index` holds it) or an index
    directory; tower sizes and ``written_at`` (manifest.json's modification time: the build or the
    last ``add``) need the directory and are None without it.
    """
    directory = None
    if isinstance(manifest_or_dir, (str, Path)):
        directory = Path(manifest_or_dir)
        manifest = read_manifest(directory)
        check_sizes(directory, manifest)  # a summary of files that are not there would mislead
    else:
        manifest = manifest_or_dir

    def get(path, default=None):
        return manifest_value(manifest, path, default)

    tuning = get("index.tuning")
    tuned = None
    if tuning:
        tuned = {"params": get("index.tuning.params", {}), "k": get("index.tuning.k"),
                 "recall": get("index.tuning.recall"), "recall_lower_bound": get("index.tuning.recall_lower_bound"),
                 "target_recall": get("index.tuning.target_recall"), "reached": get("index.tuning.reached"),
                 "buckets": get("index.tuning.buckets"), "short_buckets": get("index.tuning.short_buckets"),
                 "params_by_length": get("index.params_by_length", [])}
    towers = {}
    for key, default in (("query_tower", TOWER_DIR), ("document_tower", DOCUMENT_TOWER_DIR)):
        if get(key) is not None:
            towers[key] = _dir_bytes(directory / get(f"{key}.dir", default)) if directory else None
    written_at = None
    if directory is not None:
        written_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((directory / MANIFEST).stat().st_mtime))
    additions = get("additions", [])
    return {
        "directory": str(directory) if directory else None,
        "documents": get("documents"),
        "empty_documents": get("empty_documents"),
        "oov_rate": get("oov_rate"),
        "top_unknown_words": [w for w, _ in get("top_oov_words", [])[:10]],
        "dim": get("dim"),
        "ids": get("corpus.id_type"),
        "texts": bool(get("store_text")),
        # A build through a model (--model, --adapt) records its word vectors with the model.
        "vectors": {"source": get("vectors.source", get("model.vectors.source")),
                    "vocab_size": get("vectors.vocab_size", get("query_tower.vocab_size")),
                    "dim": get("vectors.dim", get("query_tower.embedding_dim"))},
        "tokeniser": get("tokeniser"),
        "weighting": get("pooling.weighting"),
        "model": {"id": get("model.id"), "dir": get("model.dir")} if get("model") else None,
        "index": {"family": get("index.type"), "key": get("index.key"), "params": get("index.params", {}),
                  "labels": get("index.labels")},
        "tuning": tuned,
        # What `auto` compared: built candidates and IVF-Flat's forecast ("forecast": true), without their curves.
        "candidates": [{key: c.get(key) for key in ("type", "key", "nlist", "forecast", "priced_out", "recall",
                                                     "p50_ms", "reached")} for c in get("index.candidates", [])],
        "auto_latency_ms": get("config.build.auto_latency_ms"),
        "bytes": {"index": get("index.bytes"), **towers,
                  "shards": sum(s.get("bytes", 0) for s in get("shards", []))},
        "built_from": {"files": get("corpus.files", []), "id_column": get("corpus.id_column"),
                       "text_column": get("corpus.text_column")},
        "glovefaiss_version": get("glovefaiss_version"),
        "written_at": written_at,
        "additions": [{"documents": a.get("documents"), "files": a.get("files", []),
                       **({"replaced": a["replaced"]} if a.get("replaced") else {})} for a in additions],
        "deletions": get("deletions", []),
    }


def _dir_bytes(directory: Path) -> int | None:
    if not directory.is_dir():
        return None
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
