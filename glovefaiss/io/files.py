"""Files written whole or not at all, and their checksums: sha256 of files, a writer that
hashes as it writes, atomic JSON, and a directory swapped into place in one step."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any


def absolute_path(path: str | Path) -> Path:
    """``path`` made absolute with ``..`` folded (as a user would write it), symlinks left alone."""
    return Path(os.path.abspath(path))


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` as JSON in one rename; ``durable``: on disk before the rename
    (an fsync, which on ext4 also writes out every file the process left dirty before it)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


class HashingFile:
    """A file opened for writing that keeps the sha256 and size of what went into it, so that a
    large output need not be read back to checksum it."""

    def __init__(self, path: str | Path):
        self._file = open(path, "wb")
        self._sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data)
        self._sha.update(view)
        self.size += view.nbytes
        return self._file.write(view)

    def flush(self) -> None:
        self._file.flush()

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            self.closed = True

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def publish_dir(tmp: Path, out: Path) -> None:
    """Put the finished directory ``tmp`` at ``out``, replacing what is there.

    An existing ``out`` is exchanged with ``tmp`` atomically where the kernel allows it, so a
    reader opening ``out`` sees the old or the new directory, never none; the old one is then
    deleted (readers that opened its files keep them). Elsewhere: two renames.
    """
    if not out.exists():
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
