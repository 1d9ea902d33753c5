"""Vector shards: Parquet files of (id, vector[, text]), written atomically, read by row group."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .manifest import sha256_file


def shard_schema(id_type: str, dim: int, store_text: bool) -> pa.Schema:
    fields = [
        pa.field("id", pa.int64() if id_type == "int64" else pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
    ]
    if store_text:
        fields.append(pa.field("text", pa.string()))
    return pa.schema(fields)


def vectors_to_arrow(vectors: np.ndarray) -> pa.FixedSizeListArray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


class ShardWriter:
    """Writes rows into ``part-NNNNN.parquet`` files of ``shard_rows`` rows each.

    Row groups always hold ``row_group_rows`` rows (the last of a shard may hold fewer), whatever
    the batch sizes fed in, so the bytes depend only on the data and the layout settings. Each
    shard is written under a temporary name, renamed when complete, then ``on_shard`` is told.
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
        self._rows_in_shard = 0

    def write(self, ids: pa.Array, vectors: np.ndarray, texts: pa.Array | None = None) -> None:
        arrays = [ids, vectors_to_arrow(vectors)]
        if "text" in self.schema.names:
            arrays.append(texts)
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._flush(final=False)

    def _flush(self, final: bool) -> None:
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
            self._rows_in_shard += take
            if self._rows_in_shard == self.shard_rows:
                self._close_shard()

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            name = f"part-{self._next:05d}.parquet"
            self._tmp = self.directory / (name + ".tmp")
            self._name = name
            self._writer = pq.ParquetWriter(
                self._tmp,
                self.schema,
                compression={"id": "zstd", "vector": "none", "text": "zstd"},
                use_dictionary=["id", "text"],
                write_statistics=["id"],
            )
        return self._writer

    def _close_shard(self) -> None:
        self._writer.close()
        self._writer = None
        final = self.directory / self._name
        os.replace(self._tmp, final)
        meta = {"file": f"{self.directory.name}/{self._name}", "rows": self._rows_in_shard,
                "bytes": final.stat().st_size, "sha256": sha256_file(final)}
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
    """Random access to shard rows by global row number, one row group at a time."""

    def __init__(self, root: Path, shards: list[dict], row_group_rows: int):
        self.root = Path(root)
        self.files = [self.root / s["file"] for s in shards]
        self.starts = np.concatenate([[0], np.cumsum([s["rows"] for s in shards])]).astype(np.int64)
        self.row_group_rows = row_group_rows
        self._row_group = lru_cache(maxsize=64)(self._read_row_group)
        # Opened now and kept: after a rebuild swaps the directory, these still read the old files.
        self._files = [pq.ParquetFile(f) for f in self.files]

    @property
    def num_rows(self) -> int:
        return int(self.starts[-1])

    def column(self, name: str) -> pa.ChunkedArray:
        """One column of every shard, in row order."""
        return pa.chunked_array([pf.read(columns=[name]).column(0).combine_chunks() for pf in self._files])

    def _read_row_group(self, shard: int, group: int, column: str) -> pa.Array:
        return self._files[shard].read_row_group(group, columns=[column]).column(0).combine_chunks()

    def take(self, rows: np.ndarray, column: str) -> list:
        """Values of ``column`` at global ``rows`` (reads only the row groups that hold them)."""
        rows = np.asarray(rows, dtype=np.int64)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        local = rows - self.starts[shard]
        group, within = np.divmod(local, self.row_group_rows)
        return [
            self._row_group(int(s), int(g), column)[int(w)].as_py()
            for s, g, w in zip(shard, group, within)
        ]


def vectors_from_arrow(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float32 (n, dim) from a fixed_size_list<float32> column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)


def iter_shard_vectors(reader: ShardReader, batch_rows: int = 65536):
    """(ids, vectors) of every row, in row order, a batch at a time."""
    for pf in reader._files:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=["id", "vector"]):
            yield batch.column(0), vectors_from_arrow(batch.column(1))


ID_LOOKUP = ("ids_sorted.npy", "ids_order.npy")


def write_id_lookup(directory: Path, ids: np.ndarray) -> dict[str, str]:
    """Sorted int64 ids and the row of each, so a query maps hit ids to shard rows by binary search
    on memory-mapped arrays instead of sorting every id at load. Returns {file: sha256}."""
    order = np.argsort(ids, kind="stable")
    np.save(directory / ID_LOOKUP[0], ids[order])
    np.save(directory / ID_LOOKUP[1], order.astype(np.int64))
    return {name: sha256_file(directory / name) for name in ID_LOOKUP}


def load_id_lookup(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.load(directory / name, mmap_mode="r") for name in ID_LOOKUP)


TEXTS_FILE = "texts.arrow"


def write_text_store(directory: Path, reader: ShardReader) -> dict:
    """Copy the shards' texts, in row order, into one uncompressed Arrow IPC file.

    Parquet row groups must be decoded whole, which costs about a millisecond per hit; the IPC
    file is memory-mapped at query time and a hit's text is a slice of it.
    """
    path = directory / TEXTS_FILE
    tmp = path.with_name(path.name + ".tmp")
    schema = pa.schema([pa.field("text", pa.string())])
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for pf in reader._files:
            for batch in pf.iter_batches(batch_size=65536, columns=["text"]):
                writer.write_batch(pa.record_batch([batch.column(0).cast(pa.string())], schema=schema))
    os.replace(tmp, path)
    return {"file": TEXTS_FILE, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


class TextStore:
    """Texts by row number from a memory-mapped ``texts.arrow``."""

    def __init__(self, path: Path):
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        self._batches = [reader.get_batch(i).column(0) for i in range(reader.num_record_batches)]
        self._starts = np.cumsum([0] + [len(b) for b in self._batches])

    def take(self, rows: np.ndarray, column: str = "text") -> list:
        # Per row, not ChunkedArray.take: that concatenates every chunk (the whole file) first.
        rows = np.asarray(rows, dtype=np.int64)
        chunk = np.searchsorted(self._starts, rows, side="right") - 1
        return [self._batches[c][r].as_py() for c, r in zip(chunk.tolist(), (rows - self._starts[chunk]).tolist())]
