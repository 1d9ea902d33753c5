"""Read Parquet corpora in record batches, after validating files, columns and types."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CorpusError


@dataclass(frozen=True)
class Corpus:
    """Parquet files with an id and a text column, read in order, batch by batch."""

    files: tuple[Path, ...]
    id_column: str
    text_column: str
    num_rows: int
    id_type: str  # "int64" or "string"
    columns: tuple[pa.Field, ...] = ()  # extra columns to keep with each document, typed as in the first file

    def batches(self, batch_size: int) -> Iterator[tuple[pa.Array, pa.Array]]:
        """(ids, texts) per record batch; ids cast to int64 or string, texts to string."""
        for ids, texts, _ in self._read(batch_size, [self.id_column, self.text_column]):
            yield ids, texts

    def ids(self) -> pa.ChunkedArray:
        """Every id, in order (reads only the id column)."""
        return pa.chunked_array([ids for ids, _, _ in self._read(65536, [self.id_column])],
                                pa.int64() if self.id_type == "int64" else pa.string())

    def batches_with_columns(self, batch_size: int) -> Iterator[tuple[pa.Array, pa.Array, list[pa.Array]]]:
        """(ids, texts, the extra ``columns``) per record batch."""
        if not self.columns:  # through batches(), which a caller may have specialised
            for ids, texts in self.batches(batch_size):
                yield ids, texts, []
            return
        yield from self._read(batch_size, [self.id_column, self.text_column, *(c.name for c in self.columns)])

    def _read(self, batch_size: int, names: list[str]) -> Iterator[tuple[pa.Array, pa.Array | None, list[pa.Array]]]:
        id_type = pa.int64() if self.id_type == "int64" else pa.string()
        for path in self.files:
            pf = pq.ParquetFile(path)
            for batch in pf.iter_batches(batch_size=batch_size, columns=names):
                ids = batch.column(0)
                if ids.null_count:
                    raise CorpusError(f"{path}: column '{self.id_column}' has {ids.null_count} null ids")
                try:
                    ids = ids.cast(id_type)
                except pa.ArrowInvalid:  # uint64 ids past the int64 range
                    raise CorpusError(
                        f"{path}: column '{self.id_column}' has ids above 9223372036854775807, the largest "
                        "int64 id; store them as strings (e.g. pyarrow's cast to pa.string())") from None
                texts = batch.column(1).cast(pa.string()) if len(names) > 1 else None
                yield ids, texts, [_cast(path, batch.column(i), f) for i, f in enumerate(self.columns, 2)
                                   if i < len(names)]


def _cast(path: Path, column: pa.Array, field: pa.Field) -> pa.Array:
    try:
        return column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise CorpusError(f"{path}: column '{field.name}' has type {column.type}, but {field.type} in the "
                          "first file; give it one type in every file") from None


def _parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise CorpusError(f"no .parquet files in directory {path}")
        return files
    if path.is_file():
        return [path]
    raise CorpusError(f"corpus not found: {path}")


def _id_type(t: pa.DataType) -> str | None:
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return None


# Names a stored column cannot have: the shards' own columns and the keys of every hit.
RESERVED_COLUMNS = ("id", "vector", "text", "query_id", "rank", "score")


def open_corpus(paths: Sequence[str | Path], id_column: str = "id", text_column: str = "text",
                columns: Sequence[str] = ()) -> Corpus:
    """Check every file's schema (footers only) and return a :class:`Corpus` to stream.

    ``columns``: extra columns every file must have, kept with each document (``build --columns``).
    """
    if not paths:
        raise CorpusError("no corpus given")
    for col in columns:
        if col in RESERVED_COLUMNS or col in (id_column, text_column):
            raise CorpusError(f"column '{col}' cannot be stored with --columns: the index has its own '{col}' "
                              f"(names taken: {', '.join(RESERVED_COLUMNS)}, and the id and text columns)")
    files: list[Path] = []
    for p in paths:
        files.extend(_parquet_files(Path(p)))
    num_rows = 0
    id_types = set()
    extra: list[pa.Field] = []
    for f in files:
        try:
            meta = pq.read_metadata(f)
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
                              "choose the stored ones with --columns")
        if not extra:
            extra = [pa.field(c, schema.field(c).type) for c in columns]
        id_types.add(it)
        num_rows += meta.num_rows
    if len(id_types) > 1:
        raise CorpusError("the corpus files mix integer and string ids; use one id type in every file")
    if num_rows == 0:
        raise CorpusError("the corpus has no rows")
    return Corpus(tuple(files), id_column, text_column, num_rows, id_types.pop(), tuple(extra))
