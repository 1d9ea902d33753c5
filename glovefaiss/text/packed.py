"""Strings packed as UTF-8 bytes in one file plus their int64 offsets in a ``.npy`` file.

Both files are memory-mapped and read with numpy alone: the query path fetches a hit's text, or
confirms a vocabulary word, without importing pyarrow (a third of a cold query's start-up).
Writing takes Arrow string arrays and copies their buffers as they are.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import numpy as np

from ..io.files import HashingFile


class PackedStrings:
    """A read-only sequence of strings over (offsets, bytes); string ``i`` is ``data[offsets[i]:offsets[i+1]]``."""

    def __init__(self, offsets: np.ndarray, data: np.ndarray):
        self.offsets = offsets
        self.data = data

    @classmethod
    def open(cls, data_path: str | Path, offsets_path: str | Path, populate: bool = False) -> PackedStrings:
        """Memory-map a pair written by :class:`PackedStringsWriter`.

        ``populate``: read the offsets into memory and map the bytes with their page tables filled
        now (Linux's MAP_POPULATE), for a process that answers many queries: otherwise each hit's
        first read of a page faults (about 0.1 ms of a 1M-document query's ten texts, measured).
        """
        # Plain ndarray views of the maps: slicing a np.memmap costs microseconds a call.
        offsets = np.load(offsets_path) if populate else np.load(offsets_path, mmap_mode="r").view(np.ndarray)
        size = os.path.getsize(data_path)
        if not size:  # mmap refuses empty files; an all-empty column has no bytes.
            data = np.zeros(0, np.uint8)
        elif populate:
            with open(data_path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                                   prot=mmap.PROT_READ)
            data = np.frombuffer(mapped, dtype=np.uint8)
        else:
            data = np.memmap(data_path, dtype=np.uint8, mode="r").view(np.ndarray)
        if len(offsets) < 1 or int(offsets[-1]) != size:
            raise ValueError(f"{data_path} has {size} bytes but its offsets end at "
                             f"{int(offsets[-1]) if len(offsets) else None}")
        return cls(offsets, data)

    @classmethod
    def from_arrow(cls, array) -> PackedStrings:
        """In memory, from an Arrow string array (nulls become empty strings)."""
        offsets, data = arrow_string_buffers(array)
        return cls(offsets - offsets[0], data.copy())

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        if not 0 <= i < len(self):
            raise IndexError(f"string {i} of {len(self)}")
        a, b = self.offsets[i:i + 2].tolist()
        return str(self._bytes[a:b], "utf-8")

    @cached_property
    def _bytes(self) -> memoryview:
        # A memoryview slices without making an ndarray object: a tenth of the cost per string.
        return memoryview(self.data)

    def take(self, rows: Iterable[int]) -> list[str]:
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows].tolist(), self.offsets[rows + 1].tolist()
        data = self._bytes
        return [str(data[a:b], "utf-8") for a, b in zip(starts, ends)]

    def to_arrow(self):
        """The strings as an Arrow ``string`` array (one copy of the bytes, no parsing)."""
        import pyarrow as pa

        arr = pa.LargeStringArray.from_buffers(len(self), pa.py_buffer(np.ascontiguousarray(self.offsets)),
                                               pa.py_buffer(np.ascontiguousarray(self.data)))
        return arr.cast(pa.string())


def arrow_string_buffers(array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a string / large_string Arrow array, cut to the array's rows.

    ``offsets`` (int64) are the array's own, into its whole buffer; ``data`` starts at
    ``offsets[0]``, so string i is ``data[offsets[i] - offsets[0]:offsets[i + 1] - offsets[0]]``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        # The bytes under a null slot are unspecified: make them empty.
        array = pc.fill_null(array, "")
    width = np.int64 if pa.types.is_large_string(array.type) else np.int32
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=width)[array.offset:array.offset + len(array) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data[int(offsets[0]):int(offsets[-1])]


class PackedStringsWriter:
    """Appends Arrow string arrays to ``data_path``; :meth:`close` writes the offsets."""

    def __init__(self, data_path: str | Path, offsets_path: str | Path):
        self.data_path = Path(data_path)
        self.offsets_path = Path(offsets_path)
        self._file = HashingFile(self.data_path)
        self._offsets = [np.zeros(1, np.int64)]

    def append(self, array) -> None:
        offsets, data = arrow_string_buffers(array)
        self._offsets.append(offsets[1:] - offsets[0] + self._file.size)
        self._file.write(data)

    def close(self) -> tuple[str, str]:
        """Finish both files; returns their sha256 (data, offsets)."""
        self._file.close()
        offsets = HashingFile(self.offsets_path)
        np.save(offsets, np.concatenate(self._offsets))
        offsets.close()
        return self._file.hexdigest(), offsets.hexdigest()
