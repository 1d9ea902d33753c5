"""The index directory's manifest: what was built, from what, with checksums."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import IndexDirError
from ..io.files import sha256_file, write_json_atomic

# 2: texts packed beside each shard (format 1 had one texts.arrow).
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
SHARDS_DIR = "shards"
TOWER_DIR = "query_tower"
DOCUMENT_TOWER_DIR = "document_tower"  # only when documents were encoded by another tower


# Sections a build writes only when they apply; absent (None) they are left out of the file.
_OPTIONAL = ("document_tower", "id_lookup", "pooling", "additions", "deletions", "engine")


@dataclass
class Manifest:
    """What an index directory holds, field for field in ``manifest.json``'s key order.

    Sections whose shape varies with the index family or the build (``config``, ``index``,
    ``shards`` ...) stay JSON objects. Top-level keys this version does not know (such as
    ``model``, which a build with a trained model adds) are kept in ``extra`` and written back
    after ``timings``, where the build puts them.
    """

    format_version: int = FORMAT_VERSION
    glovefaiss_version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    vectors: dict[str, Any] = field(default_factory=dict)
    tokeniser: dict[str, Any] = field(default_factory=dict)
    corpus: dict[str, Any] = field(default_factory=dict)
    documents: int = 0
    empty_documents: int = 0
    tokens: int = 0
    oov_tokens: int = 0
    oov_rate: float = 0.0
    top_oov_words: list[list] = field(default_factory=list)
    anisotropy: float | None = None
    dim: int = 0
    store_text: bool = False
    row_group_rows: int = 0
    shards: list[dict[str, Any]] = field(default_factory=list)
    index: dict[str, Any] = field(default_factory=dict)
    query_tower: dict[str, Any] = field(default_factory=dict)
    document_tower: dict[str, Any] | None = None
    id_lookup: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None  # where the build ran: {"engine": "local" | "ray", "workers", ...}
    timings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    pooling: dict[str, Any] | None = None
    additions: list[dict[str, Any]] | None = None
    deletions: list[dict[str, Any]] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            elif value is not None or f.name not in _OPTIONAL:
                out[f.name] = value
        return out

    # A read-only view as the JSON object, for code that still reads ``manifest["key"]``.
    def _has(self, key: str) -> bool:
        if key in self.extra:
            return True
        if key == "extra" or key not in self.__dataclass_fields__:
            return False
        return not (key in _OPTIONAL and getattr(self, key) is None)

    def __getitem__(self, key: str) -> Any:
        if not self._has(key):
            raise KeyError(key)
        return self.extra[key] if key in self.extra else getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if self._has(key) else default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._has(key)

    @property
    def labels_are_ids(self) -> bool:
        """FAISS labels are the int64 corpus ids (else row numbers, mapped through the shards' id column)."""
        return self.index["labels"] == "id"

    @property
    def index_file(self) -> str:
        return self.index.get("file", INDEX_FILE)

    @property
    def query_tower_dir(self) -> str:
        return self.query_tower.get("dir", TOWER_DIR)

    @property
    def document_tower_dir(self) -> str:
        """Where the documents' tower is: its own directory, or the query tower's when they are one."""
        return (self.document_tower or {}).get("dir", self.query_tower_dir)

    def tower_files(self) -> list[str]:
        """Paths (relative to the directory) of every tower file."""
        out = []
        for tower, default in ((self.query_tower, TOWER_DIR), (self.document_tower, DOCUMENT_TOWER_DIR)):
            if tower:
                out += [f"{tower.get('dir', default)}/{name}" for name in tower.get("files", {})]
        return out


def read_manifest(directory: str | Path) -> Manifest:
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
    if not isinstance(data, dict):
        raise IndexDirError(f"{path} is corrupt (not a JSON object); rebuild the index")
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
    for key in ("shards", "index"):
        if not isinstance(data.get(key), (list, dict)):
            raise IndexDirError(f"{path} is corrupt (no '{key}'); rebuild the index")
    return Manifest.from_dict(data)


def write_manifest(directory: str | Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` into ``directory`` atomically."""
    write_json_atomic(Path(directory) / MANIFEST, manifest.to_dict())


def _expected_files(directory: Path, manifest: Manifest) -> list[tuple[Path, int | None, str | None]]:
    """(path, bytes, sha256) of every file the manifest vouches for."""
    files = []
    for s in manifest.shards:
        files += [(directory / f["file"], f.get("bytes"), f.get("sha256")) for f in [s, *s.get("texts", [])]]
    idx = manifest.index
    files.append((directory / manifest.index_file, idx.get("bytes"), idx.get("sha256")))
    for name, digest in (manifest.id_lookup or {}).get("files", {}).items():
        files.append((directory / name, None, digest))
    for key, default in (("query_tower", TOWER_DIR), ("document_tower", DOCUMENT_TOWER_DIR)):
        tower = getattr(manifest, key) or {}
        for name, digest in tower.get("files", {}).items():
            files.append((directory / tower.get("dir", default) / name, None, digest))
    return files


def check_sizes(directory: str | Path, manifest: Manifest) -> None:
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
