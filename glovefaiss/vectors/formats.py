"""Word-vector files: detect the format from the content and parse it into one float32 matrix.

Stanford GloVe text, word2vec text or binary (each may be gzipped) and gensim ``KeyedVectors.save()``
files. gensim is imported only for the last.
"""

from __future__ import annotations

import glob
import gzip
import logging
import os
import sys
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

from ..errors import VectorsFormatError

logger = logging.getLogger(__name__)

_BLOCK_BYTES = 8 << 20  # text is parsed in blocks of whole lines of about this size
_BINARY_CHUNK_ROWS = 65536
_SNIFF_LINES = 1000
_SNIFF_BYTES = 16 << 20
_MAX_DIM = 100_000  # a header claiming more is damaged, not a real embedding
# Plain decimal floats: what a vectors file should hold. Used only to find the bad values in a
# block that Arrow refused to cast, so it must not accept anything Arrow's float parser rejects.
_FLOAT_RE = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"



@dataclass
class Parsed:
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


def parse_file(path: Path, progress: bool | None) -> Parsed:
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
        raise VectorsFormatError(f"cannot read vectors file {path}: {one_line(e)}") from e
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
        self.bar = progress_bar(os.fstat(self.raw.fileno()).st_size, path.name, progress)

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


def progress_bar(total: int, desc: str, progress: bool | None):
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
        raise VectorsFormatError(f"cannot read vectors file {path}: {one_line(e)}") from e
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


def _read_text(reader: _Reader, path: Path, sniffed: _Sniffed) -> Parsed:
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


def _read_binary(reader: _Reader, path: Path, count: int, dim: int) -> Parsed:
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
            dim: int, fmt: str, malformed: int) -> Parsed:
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
    return Parsed(words=_compact_strings(all_words), chunks=chunks, dim=dim, fmt=fmt,
                   malformed=malformed, duplicates=duplicates)


def _compact_strings(words: pa.Array) -> pa.Array:
    # Plain 32-bit-offset strings unless the vocabulary text passes 2 GiB.
    if pa.types.is_large_string(words.type) and (pc.sum(pc.binary_length(words)).as_py() or 0) < 2**31 - 1:
        return words.cast(pa.string())
    return words


def _read_keyedvectors(path: Path, gzipped: bool) -> Parsed:
    try:
        from gensim.models import KeyedVectors

        # Pickled file: loading it runs code from the file, as with any gensim model the user names.
        # Memory-map the separately stored arrays; gensim cannot mmap a compressed pickle.
        obj = KeyedVectors.load(str(path), mmap=None if gzipped else "r")
    except Exception as e:  # unpickling can raise almost anything
        raise VectorsFormatError(f"cannot load gensim KeyedVectors file {path}: {one_line(e)}") from e
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
    return Parsed(words=pa.array(keys, pa.string()), chunks=[np.asarray(vectors[:len(keys)], dtype=np.float32)],
                   dim=int(vectors.shape[1]), fmt="gensim-keyedvectors")




def sidecars(path: Path) -> list[Path]:
    """The ``.npy`` files a gensim ``KeyedVectors.save()`` wrote beside ``path``."""
    # KeyedVectors.save() stores large arrays beside the pickle as "<file>.<attr>.npy".
    return sorted(Path(p) for p in glob.glob(glob.escape(str(path)) + ".*.npy"))



def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
