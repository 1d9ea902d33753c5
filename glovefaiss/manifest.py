"""The index directory's manifest: what was built, from what, with checksums."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import IndexDirError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
SHARDS_DIR = "shards"
TOWER_DIR = "query_tower"


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an index directory, refusing unknown or newer formats."""
    path = Path(directory) / MANIFEST
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
    return data
