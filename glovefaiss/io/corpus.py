"""Read Parquet corpora in record batches, after validating files, columns and types.

A corpus file is a local path or a URI that pyarrow's filesystems read (``s3://``, ``gs://``,
``hdfs://``, ``file://``), kept as given so that other machines open the same file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CorpusError


def is_uri(path: str | Path) -> bool:
    """A ``scheme://`` name (a Path would fold its double slash)."""
    return isinstance(path, str) and "://" in path


def _open_parquet(path: str | Path) -> pq.ParquetFile:
    if is_uri(path):
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        return pq.ParquetFile(filesystem.open_input_file(inner))
    return pq.ParquetFile(path)


@dataclass(frozen=True)
class Corpus:
    """Parquet files with an id and a text column, read in order, batch by batch.

    ``start`` and ``num_rows`` select a range of rows (see :meth:`rows`); ``file_rows`` are the
    row counts of ``files``.
    """

    files: tuple[str | Path, ...]
    id_column: str
    text_column: str
    num_rows: int
    id_type: str  # "int64" or "string"
    file_rows: tuple[int, ...] = ()
    start: int = 0
    columns: tuple[pa.Field, ...] = ()  # extra columns to keep with each document, typed as in the first file

    def rows(self, start: int, stop: int) -> Corpus:
        """Rows ``start`` to ``stop`` (of this corpus), read without reading the rows before them."""
        if not 0 <= start <= stop <= self.num_rows:
            raise ValueError(f"rows {start}:{stop} are outside the corpus's {self.num_rows}")
        return replace(self, start=self.start + start, num_rows=stop - start)

    def batches(self, batch_size: int) -> Iterator[tuple[pa.Array, pa.Array]]:
        """(ids, texts) per record batch; ids cast to int64 or string, texts to string.

        Batches never cross a file or a multiple of ``batch_size`` rows counted from the file's
        start, so a range of rows is read in the same batches as the whole corpus.
        """
        for ids, texts, _ in self._read(batch_size, [self.id_column, self.text_column]):
            yield ids, texts

    def ids(self) -> pa.ChunkedArray:
        """Every id, in order (reads only the id column)."""
        return pa.chunked_array([ids for ids, _, _ in self._read(65536, [self.id_column])],
                                pa.int64() if self.id_type == "int64" else pa.string())

    def batches_with_columns(self, batch_size: int) -> Iterator[tuple[pa.Array, pa.Array, list[pa.Array]]]:
        """(ids, texts, the extra ``columns``) per record batch, batched as :meth:`batches`."""
        if not self.columns:  # through batches(), which a caller may have specialised
            for ids, texts in self.batches(batch_size):
                yield ids, texts, []
            return
        yield from self._read(batch_size, [self.id_column, self.text_column, *(c.name for c in self.columns)])

    def _read(self, batch_size: int, names: list[str]) -> Iterator[tuple[pa.Array, pa.Array | None, list[pa.Array]]]:
        id_type = pa.int64() if self.id_type == "int64" else pa.string()
        counts = self.file_rows or (None,) * len(self.files)
        lo, hi = self.start, self.start + self.num_rows
        at = 0  # corpus row of the current file's first row
        for path, count in zip(self.files, counts):
            if count is not None and at + count <= lo:
                at += count
                continue
            if at >= hi:
                break
            for cols in _file_batches(path, max(0, lo - at), hi - at, batch_size, names):
                ids = cols[0]
                if ids.null_count:
                    raise CorpusError(f"{path}: column '{self.id_column}' has {ids.null_count} null ids; "
                                      "give every row an id, or choose another column with --id-column")
                try:
                    ids = ids.cast(id_type)
                except pa.ArrowInvalid:  # uint64 ids past the int64 range
                    raise CorpusError(
                        f"{path}: column '{self.id_column}' has ids above 9223372036854775807, the largest "
                        "int64 id; store them as strings (e.g. pyarrow's cast to pa.string())") from None
                texts = cols[1].cast(pa.string()) if len(cols) > 1 else None
                yield ids, texts, [_cast(path, c, f) for c, f in zip(cols[2:], self.columns)]
            at += count if count is not None else _open_parquet(path).metadata.num_rows


def _cast(path, column: pa.Array, field: pa.Field) -> pa.Array:
    try:
        return column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise CorpusError(f"{path}: column '{field.name}' has type {column.type}, but {field.type} in the "
                          "first file; give it one type in every file") from None


def _file_batches(path, lo: int, hi: int, batch_size: int, columns: list[str]) -> Iterator[list[pa.Array]]:
    """Rows ``lo`` to ``hi`` of one file, cut at multiples of ``batch_size`` from the file's start."""
    pf = _open_parquet(path)
    meta = pf.metadata
    groups, first, pos = [], None, 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if pos + n > lo and pos < hi:
            groups.append(g)
            first = pos if first is None else first
        pos += n
    if not groups:
        return
    pos = first
    held: list[list[pa.Array]] = []
    # pyarrow's batches follow the grid from the first group read; joined again here where that
    # group does not start on the file's grid, so that the batches never depend on where a read began.
    for batch in pf.iter_batches(batch_size=batch_size, row_groups=groups, columns=columns):
        end = pos + batch.num_rows
        a, b = max(lo, pos), min(hi, end)
        cut = pos
        while cut < end:
            nxt = min(end, (cut // batch_size + 1) * batch_size)
            s, e = max(a, cut), min(b, nxt)
            if s < e:
                held.append([batch.column(i).slice(s - pos, e - s) for i in range(batch.num_columns)])
            if nxt % batch_size == 0 or nxt >= hi:
                yield from _joined(held)
                held = []
            cut = nxt
        pos = end
        if pos >= hi:
            break
    yield from _joined(held)


def _joined(pieces: list[list[pa.Array]]) -> Iterator[list[pa.Array]]:
    if len(pieces) == 1:
        yield pieces[0]
    elif pieces:
        yield [pa.concat_arrays([p[i] for p in pieces]) for i in range(len(pieces[0]))]


def _parquet_files(path: str | Path) -> list[str | Path]:
    if is_uri(path):
        return _uri_files(path)
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise CorpusError(f"no .parquet files in directory {path}")
        return files
    if path.is_file():
        return [path]
    raise CorpusError(f"corpus not found: {path}")


def _uri_files(uri: str) -> list[str]:
    from pyarrow import fs

    try:
        filesystem, inner = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(inner)
    except (pa.ArrowInvalid, OSError) as e:
        raise CorpusError(f"cannot open corpus {uri} ({e})") from None
    if info.type == fs.FileType.File:
        return [uri]
    if info.type != fs.FileType.Directory:
        raise CorpusError(f"corpus not found: {uri}")
    # Files are named as the URI names them: its scheme (and host) before the filesystem's path.
    head, query = (uri.split("?", 1) + [""])[:2]
    prefix = head[: head.find(inner, head.index("://") + 3)] if inner else head
    suffix = f"?{query}" if query else ""
    found = sorted(i.path for i in filesystem.get_file_info(fs.FileSelector(inner, recursive=True))
                   if i.type == fs.FileType.File and i.path.endswith(".parquet")
                   and not i.base_name.startswith("."))
    if not found:
        raise CorpusError(f"no .parquet files in directory {uri}")
    return [prefix + p + suffix for p in found]


def _id_type(t: pa.DataType) -> str | None:
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return None


def file_signature(path: str | Path) -> list:
    """[name, bytes, modification time in ns] of a corpus file: what a resumed build checks."""
    if is_uri(path):
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        info = filesystem.get_file_info(inner)
        return [str(path), info.size, info.mtime_ns]
    st = Path(path).stat()
    return [str(path), st.st_size, st.st_mtime_ns]


# Names a stored column cannot have: the shards' own columns and the keys of every hit.
RESERVED_COLUMNS = ("id", "vector", "text", "query_id", "rank", "score")


def open_corpus(paths: str | Path | Sequence[str | Path], id_column: str = "id", text_column: str = "text",
                columns: Sequence[str] = (), columns_fix: str = "choose the stored ones with --columns") -> Corpus:
    """Check every file's schema (footers only) and return a :class:`Corpus` to stream.

    ``columns``: extra columns every file must have, kept with each document (``build --columns``);
    ``columns_fix``: what the error says to do when a file lacks one. ``paths``: files, directories
    or URIs, or one of them.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise CorpusError("no corpus given")
    for col in columns:
        if col in RESERVED_COLUMNS or col in (id_column, text_column):
            raise CorpusError(f"column '{col}' cannot be stored with --columns: the index has its own '{col}' "
                              f"(names taken: {', '.join(RESERVED_COLUMNS)}, and the id and text columns)")
    files: list[str | Path] = []
    for p in paths:
        files.extend(_parquet_files(p))
    counts = []
    id_types: dict[str, str] = {}  # id type -> the first file with it
    extra: list[pa.Field] = []
    for f in files:
        try:
            meta = _open_parquet(f).metadata
            schema = meta.schema.to_arrow_schema()
        except (pa.ArrowInvalid, OSError) as e:
            raise CorpusError(f"{f} is not a readable Parquet file ({e})") from None
        names = schema.names
        for col, flag in ((id_column, "--id-column"), (text_column, "--text-column")):
            if col not in names:
                raise CorpusError(
                    f"{f} has no column '{col}'; columns present: {', '.join(names)}; choose one with {flag}"
                )
        tt = schema.field(text_column).type
        if pa.types.is_dictionary(tt):  # pandas "category": read as its string values
            tt = tt.value_type
        if not (pa.types.is_string(tt) or pa.types.is_large_string(tt)):
            raise CorpusError(f"{f}: text column '{text_column}' has type {tt}, expected a string type")
        it = _id_type(schema.field(id_column).type)
        if it is None:
            raise CorpusError(
                f"{f}: id column '{id_column}' has type {schema.field(id_column).type}; ids must be integers or strings"
            )
        missing = [c for c in columns if c not in names]
        if missing:
            raise CorpusError(f"{f} has no column '{missing[0]}'; columns present: {', '.join(names)}; "
                              f"{columns_fix}")
        if not extra:
            extra = [pa.field(c, schema.field(c).type) for c in columns]
        id_types.setdefault(it, str(f))
        counts.append(meta.num_rows)
    if len(id_types) > 1:
        seen = "; ".join(f"{t} in {f}" for t, f in id_types.items())
        raise CorpusError(f"the corpus files mix id types ({seen}); use one id type in every file")
    if sum(counts) == 0:
        raise CorpusError("the corpus has no rows")
    return Corpus(tuple(files), id_column, text_column, sum(counts), next(iter(id_types)), tuple(counts),
                  columns=tuple(extra))
