"""Vector shards: Parquet files of (id, vector[, text][, extra columns]), written atomically, read by column or batch.

For each shard with texts, the same texts packed for the query path (see :mod:`..text.packed`) in a
sibling directory, so that the shards directory stays all Parquet: ``texts/part-NNNNN.text``
(UTF-8 bytes) and ``texts/part-NNNNN.text-offsets.npy``.

pyarrow is imported where it is used: a query on an index with integer ids reads only the
packed texts and the id lookup, and starts faster without it.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..io.files import HashingFile, sha256_file
from ..text.packed import PackedStrings, PackedStringsWriter

TEXTS_DIR = "texts"
FEW_ROWS = 64  # rows that TextStore.take fetches one by one rather than per shard

if TYPE_CHECKING:  # annotations only: imported where used, see the module docstring
    import pyarrow as pa
    import pyarrow.parquet as pq


def shard_schema(id_type: str, dim: int, store_text: bool, columns: tuple[pa.Field, ...] = ()) -> pa.Schema:
    """id, vector, text (when stored), then the corpus columns kept with ``build --columns``."""
    import pyarrow as pa

    fields = [
        pa.field("id", pa.int64() if id_type == "int64" else pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
    ]
    if store_text:
        fields.append(pa.field("text", pa.string()))
    return pa.schema(fields + list(columns))


def extra_columns(schema: pa.Schema) -> list[str]:
    """The names of a shard schema's corpus columns (those after id, vector and text)."""
    return [n for n in schema.names if n not in ("id", "vector", "text")]


def next_shard_number(shards: list[dict]) -> int:
    """The number for a new shard after ``shards`` (deletions can leave gaps, so not their count)."""
    return 1 + max((int(Path(s["file"]).stem.rsplit("-", 1)[1]) for s in shards), default=-1)


def vectors_to_arrow(vectors: np.ndarray) -> pa.FixedSizeListArray:
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


class ShardWriter:
    """Writes rows into ``part-NNNNN.parquet`` files of ``shard_rows`` rows each.

    Row groups always hold ``row_group_rows`` rows (the last of a shard may hold fewer), whatever
    the batch sizes fed in, so the bytes depend only on the data and the layout settings. Each
    shard (and its packed texts) is written under a temporary name, renamed when complete, then
    ``on_shard`` is told.
    """

    def __init__(self, directory: Path, schema: pa.Schema, shard_rows: int, row_group_rows: int,
                 first_shard: int = 0, on_shard: Callable[[dict], None] | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.shard_rows = shard_rows
        self.row_group_rows = min(row_group_rows, shard_rows)
        self.shards: list[dict] = []
        self._next = first_shard
        self._on_shard = on_shard
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._texts: PackedStringsWriter | None = None
        self._texts_dir = self.directory.parent / TEXTS_DIR
        if "text" in schema.names:
            self._texts_dir.mkdir(exist_ok=True)
        self._rows_in_shard = 0

    def write(self, ids: pa.Array, vectors: np.ndarray, texts: pa.Array | None = None,
              columns: list[pa.Array] | tuple = ()) -> None:
        import pyarrow as pa

        arrays = [ids, vectors_to_arrow(vectors)]
        if "text" in self.schema.names:
            arrays.append(texts)
        self.write_batch(pa.RecordBatch.from_arrays(arrays + list(columns), schema=self.schema))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Rows already in the shard schema (as read back from a shard)."""
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._flush(final=False)

    def _flush(self, final: bool) -> None:
        import pyarrow as pa

        while self._pending_rows:
            take = min(self.row_group_rows, self.shard_rows - self._rows_in_shard)
            if self._pending_rows < take and not final:
                break
            take = min(take, self._pending_rows)
            table = pa.Table.from_batches(self._pending, schema=self.schema)
            head, rest = table.slice(0, take), table.slice(take)
            self._pending = rest.to_batches()
            self._pending_rows = rest.num_rows
            self._open().write_table(head, row_group_size=take)
            if self._texts is not None:
                self._texts.append(head.column("text"))
            self._rows_in_shard += take
            if self._rows_in_shard == self.shard_rows:
                self._close_shard()

    def _open(self) -> pq.ParquetWriter:
        import pyarrow.parquet as pq

        if self._writer is None:
            name = f"part-{self._next:05d}.parquet"
            self._tmp = self.directory / (name + ".tmp")
            self._name = name
            if "text" in self.schema.names:
                stem = self._texts_dir / f"part-{self._next:05d}"
                self._texts = PackedStringsWriter(*(_tmp_name(path) for path in _text_paths(stem)))
            self._sink = HashingFile(self._tmp)
            self._writer = pq.ParquetWriter(
                self._sink,
                self.schema,
                compression={"id": "zstd", "vector": "none", "text": "zstd",
                             **{c: "zstd" for c in extra_columns(self.schema)}},
                use_dictionary=False,  # ids and texts are (nearly) all distinct: dictionaries only cost
                write_statistics=["id"],
            )
        return self._writer

    def _close_shard(self) -> None:
        self._writer.close()
        self._writer = None
        self._sink.close()
        final = self.directory / self._name
        texts = []
        if self._texts is not None:
            digests = self._texts.close()
            for path, digest in zip(_text_paths(self._texts_dir / final.stem), digests):
                os.replace(_tmp_name(path), path)
                texts.append({"file": f"{self._texts_dir.name}/{path.name}", "bytes": path.stat().st_size,
                              "sha256": digest})
            self._texts = None
        os.replace(self._tmp, final)
        meta = {"file": f"{self.directory.name}/{self._name}", "rows": self._rows_in_shard,
                "bytes": self._sink.size, "sha256": self._sink.hexdigest()}
        if texts:
            meta["texts"] = texts
        self.shards.append(meta)
        self._next += 1
        self._rows_in_shard = 0
        if self._on_shard is not None:
            self._on_shard(meta)

    def close(self) -> list[dict]:
        """Flush what is pending, close the last shard and return the shard list."""
        self._flush(final=True)
        if self._writer is not None:
            self._close_shard()
        return self.shards


class ShardReader:
    """The shards of an index directory, read column by column or batch by batch."""

    def __init__(self, root: Path, shards: list[dict]):
        self.root = Path(root)
        self.files = [self.root / s["file"] for s in shards]
        self.starts = np.concatenate([[0], np.cumsum([s["rows"] for s in shards])]).astype(np.int64)
        self._opened = None
        self._hold = False
        self._held: list | None = None

    def hold_vectors(self) -> None:
        """Keep the (ids, vectors) batches of the next full pass of :func:`iter_shard_vectors` in memory,
        and give later passes those (a build reads every vector three times: 0.6 s a pass at 1M)."""
        self._hold = True

    @property
    def _files(self) -> list[pq.ParquetFile]:
        # Opened on first use and kept: after a rebuild swaps the directory, they still read the old files.
        if self._opened is None:
            import pyarrow.parquet as pq

            self._opened = [pq.ParquetFile(f) for f in self.files]
        return self._opened

    @property
    def num_rows(self) -> int:
        return int(self.starts[-1])

    def column(self, name: str) -> pa.ChunkedArray:
        """One column of every shard, in row order."""
        import pyarrow as pa

        return pa.chunked_array([pf.read(columns=[name]).column(0).combine_chunks() for pf in self._files])

    def vectors_at(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), dim) vectors of the given global rows, reading only their row groups."""
        rows = np.asarray(rows, dtype=np.int64)
        out: np.ndarray | None = None
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        for s in np.unique(shard).tolist():
            pf = self._files[s]
            group_starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
            at = np.flatnonzero(shard == s)
            local = rows[at] - self.starts[s]
            group = np.searchsorted(group_starts, local, side="right") - 1
            for g in np.unique(group).tolist():
                vectors = vectors_from_arrow(pf.read_row_group(g, columns=["vector"]).column(0))
                if out is None:
                    out = np.empty((len(rows), vectors.shape[1]), np.float32)
                sel = group == g
                out[at[sel]] = vectors[local[sel] - group_starts[g]]
        return out if out is not None else np.zeros((0, 0), np.float32)


def vectors_from_arrow(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float32 (n, dim) from a fixed_size_list<float32> column."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)


def iter_shard_vectors(reader: ShardReader, batch_rows: int = 65536):
    """(ids, vectors) of every row, in row order, a batch at a time (read-only vectors)."""
    if reader._held is not None:
        yield from reader._held
        return
    held: list | None = [] if reader._hold else None
    for pf in reader._files:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=["id", "vector"]):
            item = batch.column(0), vectors_from_arrow(batch.column(1))
            if held is not None:
                held.append(item)
            yield item
    if held is not None:
        reader._held = held


ID_LOOKUP = ("ids_sorted.npy", "ids_order.npy")


def write_id_lookup(directory: Path, ids: np.ndarray) -> dict[str, str]:
    """Sorted int64 ids and the row of each, so a query maps hit ids to shard rows by binary search
    on memory-mapped arrays instead of sorting every id at load. Returns {file: sha256}."""
    order = np.argsort(ids, kind="stable")
    np.save(directory / ID_LOOKUP[0], ids[order])
    np.save(directory / ID_LOOKUP[1], order.astype(np.int64))
    return {name: sha256_file(directory / name) for name in ID_LOOKUP}


def load_id_lookup(directory: Path, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    # Plain ndarray views: searching a np.memmap subclass costs microseconds per query.
    return tuple(np.load(directory / name, mmap_mode="r").view(np.ndarray) if mmap else np.load(directory / name)
                 for name in ID_LOOKUP)


def _text_paths(stem: Path) -> tuple[Path, Path]:
    return stem.with_name(stem.name + ".text"), stem.with_name(stem.name + ".text-offsets.npy")


def _tmp_name(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


class ColumnStore:
    """The corpus columns of ``build --columns`` by global row, each shard's read memory-mapped on first use."""

    def __init__(self, root: Path, shards: list[dict], names: list[str]):
        self.names = list(names)
        self._files = [Path(root) / s["file"] for s in shards]
        self._starts = np.cumsum([0] + [s["rows"] for s in shards])
        self._tables: dict[int, pa.Table] = {}
        self._schema: pa.Schema | None = None

    @property
    def schema(self) -> pa.Schema:
        """The stored columns' names and types (what an output without hits still names)."""
        if self._schema is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            full = pq.read_schema(self._files[0])
            self._schema = pa.schema([full.field(n) for n in self.names])
        return self._schema

    def take(self, rows: list[int]) -> list[dict]:
        """``{column: value}`` for each of ``rows``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows_arr = np.asarray(rows, dtype=np.int64)
        part = np.searchsorted(self._starts, rows_arr, side="right") - 1
        out: list = [None] * len(rows_arr)
        for p in set(part.tolist()):
            if p not in self._tables:
                self._tables[p] = pq.read_table(self._files[p], columns=self.names, memory_map=True)
            at = np.flatnonzero(part == p)
            picked = self._tables[p].take(pa.array(rows_arr[at] - self._starts[p])).to_pylist()
            for i, values in zip(at.tolist(), picked):
                out[i] = values
        return out


class TextStore:
    """Texts by global row number from the shards' memory-mapped packed texts."""

    def __init__(self, root: Path, shards: list[dict], populate: bool = False):
        root = Path(root)
        self._parts = [PackedStrings.open(root / s["texts"][0]["file"], root / s["texts"][1]["file"], populate)
                       for s in shards]
        self._starts = np.cumsum([0] + [len(p) for p in self._parts])
        self._start_list = self._starts.tolist()

    def take(self, rows: Sequence[int] | np.ndarray, column: str = "text") -> list:
        if len(rows) <= FEW_ROWS:
            # A query's hits: numpy calls per shard would cost more than these few strings.
            starts, parts = self._start_list, self._parts
            out = []
            for r in rows.tolist() if isinstance(rows, np.ndarray) else rows:
                p = bisect_right(starts, r) - 1
                out.append(parts[p][r - starts[p]])
            return out
        rows = np.asarray(rows, dtype=np.int64)
        if len(self._parts) == 1:
            return self._parts[0].take(rows)
        part = np.searchsorted(self._starts, rows, side="right") - 1
        out: list = [None] * len(rows)
        for p in set(part.tolist()):
            at = np.flatnonzero(part == p)
            for i, text in zip(at.tolist(), self._parts[p].take(rows[at] - self._starts[p])):
                out[i] = text
        return out
