"""The parsed-vectors cache: ``<key>/vectors.npy`` + ``vocab.parquet`` + ``meta.json``, memory-mapped on load
(and arrays derived from them, such as the vocabulary's hash table, kept beside them as ``.npz``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .formats import Parsed, one_line

logger = logging.getLogger(__name__)

# Bump when the cache layout or the parsing rules change, so old entries are rebuilt.
CACHE_VERSION = 1


@dataclass(frozen=True, eq=False, repr=False)
class WordVectors:
    """A vocabulary and its vectors: row ``i`` of ``matrix`` is the vector of ``words[i]``.

    ``matrix`` is float32, C-contiguous, shape (V, D), usually a read-only ``np.memmap`` of the cache.
    ``sha256`` identifies the data: the sha256 of the source file's bytes (of several files'
    bytes concatenated, in a fixed order, when the source is several files). ``skipped_lines``
    counts malformed lines and duplicate words dropped while parsing a file.
    """

    words: pa.Array
    matrix: np.ndarray
    source: str
    sha256: str
    skipped_lines: int = 0
    entry: Path | None = None  # the cache entry it was read from, if any

    def __post_init__(self):
        if self.matrix.ndim != 2 or self.matrix.dtype != np.float32 or len(self.words) != self.matrix.shape[0]:
            raise ValueError(
                f"WordVectors needs a float32 (V, D) matrix and V words, got {self.matrix.dtype} "
                f"{self.matrix.shape} and {len(self.words)} words"
            )

    @property
    def dim(self) -> int:
        """D, the number of dimensions of each vector."""
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def derived(self, name: str, make: Callable[[], tuple[np.ndarray, ...]],
                valid: Callable[[tuple[np.ndarray, ...]], bool] = lambda arrays: True) -> tuple[np.ndarray, ...]:
        """Arrays computed from these vectors by ``make()``, kept in their cache entry as one
        ``<name>.npz`` and read from there on later calls (in any process) when ``valid(arrays)``.

        ``name`` must change whenever what ``make`` computes does. Without an entry, or when the
        entry cannot be written, ``make()`` each time.
        """
        path = self.entry / f"{name}.npz" if self.entry is not None else None
        if path is not None and path.is_file():
            try:
                with np.load(path) as kept:
                    arrays = tuple(kept[f"a{i}"] for i in range(len(kept.files)))
                if valid(arrays):
                    return arrays
                logger.warning("recomputing %s in %s: it does not fit these vectors", name, self.entry)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
                logger.warning("recomputing damaged %s in %s: %s", name, self.entry, one_line(e))
        arrays = make()
        if path is not None:
            _write_derived(path, arrays)
        return arrays

    def __repr__(self) -> str:
        return (f"WordVectors(source={self.source!r}, words={len(self)}, dim={self.dim}, "
                f"sha256={self.sha256[:12]!r}..., skipped_lines={self.skipped_lines})")





def cache_key(files: list[Path]) -> str:
    h = hashlib.sha256(f"glovefaiss-vectors-v{CACHE_VERSION}".encode())
    for f in files:
        st = f.stat()
        h.update(f"\0{f.absolute()}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", files[0].name).lstrip(".")[:60] or "vectors"
    return f"{name}-{h.hexdigest()[:20]}"


def read_cache(entry: Path, warn: bool = True) -> tuple[pa.Array, np.ndarray, dict] | None:
    """(words, memory-mapped matrix, meta) of a complete, consistent cache entry, else None."""
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        matrix = np.load(entry / "vectors.npy", mmap_mode="r")
        words = pq.read_table(entry / "vocab.parquet", columns=["word"], memory_map=True).column("word")
        words = words.combine_chunks()
    except FileNotFoundError:
        if warn and entry.exists():
            logger.warning("ignoring incomplete vectors cache entry %s", entry)
        return None
    except (OSError, ValueError, KeyError, pa.ArrowException) as e:
        if warn:
            logger.warning("ignoring damaged vectors cache entry %s: %s", entry, one_line(e))
        return None
    ok = (
        isinstance(meta, dict)
        and meta.get("version") == CACHE_VERSION
        and isinstance(meta.get("sha256"), str)
        and isinstance(meta.get("skipped_lines"), int)
        and matrix.dtype == np.float32 and matrix.flags.c_contiguous
        and matrix.shape == (meta.get("count"), meta.get("dim"))
        and len(words) == matrix.shape[0]
    )
    if not ok:
        if warn:
            logger.warning("ignoring inconsistent vectors cache entry %s", entry)
        return None
    return words, matrix, meta


def store(parsed: Parsed, *, source: str, sha: str, cache: Path, key: str) -> WordVectors:
    """Write ``parsed`` to the cache and return it memory-mapped, or in memory if the cache fails."""
    meta = {
        "version": CACHE_VERSION,
        "source": source,
        "format": parsed.fmt,
        "sha256": sha,
        "dim": parsed.dim,
        "count": parsed.count,
        "skipped_lines": parsed.skipped,
        "malformed_lines": parsed.malformed,
        "duplicate_words": parsed.duplicates,
    }
    entry = _write_cache(cache, key, parsed, meta)
    if entry is not None:
        hit = read_cache(entry)
        if hit is not None:
            words, matrix, _ = hit
            return WordVectors(words, matrix, source, sha, parsed.skipped, entry=entry)
    matrix = parsed.chunks[0] if len(parsed.chunks) == 1 else np.concatenate(parsed.chunks)
    return WordVectors(parsed.words, np.ascontiguousarray(matrix, dtype=np.float32), source, sha, parsed.skipped)


def _write_derived(path: Path, arrays: tuple[np.ndarray, ...]) -> None:
    # Under a name of its own, then renamed: readers see the whole file or none, and two writers
    # (processes or threads) each publish a complete one.
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.npz")
    try:
        np.savez(tmp, **{f"a{i}": a for i, a in enumerate(arrays)})
        os.replace(tmp, path)
    except OSError as e:
        logger.debug("cannot keep %s: %s", path, one_line(e))
    finally:
        tmp.unlink(missing_ok=True)


def _write_cache(cache: Path, key: str, parsed: Parsed, meta: dict) -> Path | None:
    final = cache / key
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache))
    except OSError as e:
        logger.warning("cannot write the vectors cache in %s (%s); continuing without it", cache, one_line(e))
        return None
    try:
        out = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float32,
                                        shape=(parsed.count, parsed.dim))
        row = 0
        for chunk in parsed.chunks:
            # Row blocks keep the copy cache-friendly when the source is Fortran-ordered.
            for start in range(0, len(chunk), 16384):
                block = chunk[start:start + 16384]
                out[row:row + len(block)] = block
                row += len(block)
        out.flush()
        del out
        pq.write_table(pa.table({"word": parsed.words}), tmp / "vocab.parquet")
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        # Persist the data before the rename publishes it: a crash must not leave a valid-looking
        # entry full of zeros.
        for name in ("vectors.npy", "vocab.parquet", "meta.json"):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():
            if read_cache(final, warn=False) is not None:
                return final  # another process published this entry while we parsed
            shutil.rmtree(final, ignore_errors=True)  # the damaged entry found before parsing
        try:
            os.replace(tmp, final)
        except OSError:
            if read_cache(final, warn=False) is None:
                raise
            # Another process published the same entry first; use theirs.
        return final
    except (OSError, ValueError, pa.ArrowException) as e:
        logger.warning("cannot write the vectors cache entry %s (%s); continuing without it", final, one_line(e))
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


