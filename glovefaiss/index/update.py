"""What every writer of an index directory shares: one writer at a time, and a new version assembled beside.

``build``, ``add`` and ``delete`` take the lock ``.NAME.lock`` beside the directory ``NAME``
(``fcntl.flock``: the kernel releases it when the process exits, however it exits, so a stale
file left by ``kill -9`` locks nothing), so two of them never write one index at once. ``add`` and ``delete`` assemble the new version in a hidden
sibling from hard links to the unchanged files, and publish it with one atomic exchange.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import IndexDirError

logger = logging.getLogger(__name__)


def lock_path(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.lock")


@contextmanager
def index_lock(directory: Path, action: str) -> Iterator[None]:
    """Hold the write lock of the index at ``directory`` for ``action`` (build, add, delete), or fail at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path = lock_path(directory)
    while True:
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "a+", encoding="utf-8")
        except OSError as e:
            fix = "choose another --out" if action == "build" else f"check that {directory.parent} is writable"
            parent = next((p for p in directory.parents if p.exists()), None)
            why = f"{parent} is a file, not a directory" if parent is not None and not parent.is_dir() else \
                f"{e.strerror or e} ({e.filename})"
            raise IndexDirError(f"cannot write {directory}: {why}; {fix}") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().split()
            f.close()
            pid = holder[0] if holder else "unknown"
            raise IndexDirError(f"another {holder[1] if len(holder) > 1 else 'writer'} is writing {directory} "
                                f"(pid {pid}); wait for it to finish and try again") from None
        # The holder before us removes the file as it lets go: locked a removed file, so try again.
        if path.exists() and os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
            break
        f.close()
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {action}\n")
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # still locked: no one else holds this file
        f.close()


@contextmanager
def assembled_beside(directory: Path, action: str) -> Iterator[Path]:
    """A new hidden sibling of ``directory`` to assemble its next version in; removed if the block fails."""
    tmp = directory.with_name(f".{directory.name}.{action}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def link_files(src: Path, dst: Path, names: list[str]) -> None:
    """Hard-link (or copy where links fail) the listed files: the old directory stays untouched."""
    for rel in names:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / rel, target)
        except OSError:
            shutil.copy2(src / rel, target)
