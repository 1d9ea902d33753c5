"""The index directory's manifest: what was built, from what, with checksums."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import IndexDirError
from ..io.files import sha256_file

# 2: texts packed beside each shard (format 1 had one texts.arrow).
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
SHARDS_DIR = "shards"
TOWER_DIR = "query_tower"
DOCUMENT_TOWER_DIR = "document_tower"  # only when documents were encoded by another tower


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an index directory, refusing unknown or newer formats."""
    path = Path(directory) / MANIFEST
    if Path(directory).is_file():
        raise IndexDirError(f"{directory} is a file, not an index directory; give the directory that "
                            "'glovefaiss build --out' wrote")
    if not Path(directory).is_dir():
        raise IndexDirError(f"index directory not found: {directory}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexDirError(f"{directory} is not a glovefaiss index (no {MANIFEST}); build one with 'glovefaiss build'") from None
    except json.JSONDecodeError as e:
        raise IndexDirError(f"{path} is corrupt ({e}); rebuild the index") from None
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise IndexDirError(
            f"{directory} has index format {version!r}, newer than this glovefaiss reads ({FORMAT_VERSION}); "
            "upgrade glovefaiss"
        )
    if version < FORMAT_VERSION:
        raise IndexDirError(
            f"{directory} has index format {version}, older than this glovefaiss reads ({FORMAT_VERSION}); "
            "rebuild it with 'glovefaiss build'"
        )
    return data


def _expected_files(directory: Path, manifest: dict[str, Any]) -> list[tuple[Path, int | None, str | None]]:
    """(path, bytes, sha256) of every file the manifest vouches for."""
    files = []
    for s in manifest.get("shards", []):
        files += [(directory / f["file"], f.get("bytes"), f.get("sha256")) for f in [s, *s.get("texts", [])]]
    idx = manifest.get("index", {})
    files.append((directory / idx.get("file", INDEX_FILE), idx.get("bytes"), idx.get("sha256")))
    for name, digest in manifest.get("id_lookup", {}).get("files", {}).items():
        files.append((directory / name, None, digest))
    for key, default in (("query_tower", TOWER_DIR), ("document_tower", DOCUMENT_TOWER_DIR)):
        tower = manifest.get(key, {})
        for name, digest in tower.get("files", {}).items():
            files.append((directory / tower.get("dir", default) / name, None, digest))
    return files


def check_sizes(directory: str | Path, manifest: dict[str, Any]) -> None:
    """Cheap check (no hashing) that every file exists with its recorded size."""
    directory = Path(directory)
    for path, size, _ in _expected_files(directory, manifest):
        if not path.is_file():
            raise IndexDirError(f"{directory}: {path.relative_to(directory)} is missing; rebuild the index")
        if size is not None and path.stat().st_size != size:
            raise IndexDirError(
                f"{directory}: {path.relative_to(directory)} has {path.stat().st_size} bytes, the manifest says "
                f"{size} (truncated or replaced); run 'glovefaiss verify' and rebuild the index"
            )


def verify(directory: str | Path) -> list[str]:
    """Check every file of an index directory against the manifest's sizes and sha256 sums.

    Returns the names of the files checked; raises :class:`IndexDirError` listing each problem.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    problems, checked = [], []
    for path, size, digest in _expected_files(directory, manifest):
        rel = str(path.relative_to(directory))
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif size is not None and path.stat().st_size != size:
            problems.append(f"{rel} has {path.stat().st_size} bytes, expected {size}")
        elif digest is not None and sha256_file(path) != digest:
            problems.append(f"{rel} does not match its sha256")
        else:
            checked.append(rel)
    if problems:
        raise IndexDirError(f"{directory} is damaged: {'; '.join(problems)}; rebuild the index")
    return checked
