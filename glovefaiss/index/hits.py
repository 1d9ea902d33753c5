"""Hits written out: table, json, jsonl, csv, trec or parquet, to a stream or a file, a batch at a time.

A hit is ``{"query_id", "rank", "id", "score"[, "text"]}``. A named file is written under a
temporary sibling name and renamed when complete, so a failed run leaves no half file behind.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import OutputError

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("table", "json", "jsonl", "csv", "trec", "parquet")
_BY_SUFFIX = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
              ".trec": "trec"}
FIELDS = ("query_id", "rank", "id", "score")


def format_for(output: str | Path | None, fmt: str | None) -> str:
    """``fmt``, or the one ``output``'s suffix names (``x.parquet`` → parquet), else table."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise OutputError(f"unknown hits format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    if output is None or not isinstance(output, (str, Path)):
        return "table"
    return _BY_SUFFIX.get(Path(output).suffix.lower(), "table")


def snippet(text: str | None, width: int = 80) -> str:
    """Text on one line, cut to ``width`` characters."""
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def check_trec_ids(hits: Iterable[dict]) -> None:
    """Refuse ids a TREC run line (space-separated fields) cannot hold."""
    for h in hits:
        for key, what in (("query_id", "query id"), ("id", "document id")):
            value = str(h[key])
            if not value or any(c.isspace() for c in value):
                problem = "is empty" if not value else "contains whitespace"
                raise OutputError(f"{what} {value!r} {problem}, which a TREC run line cannot hold; "
                                  "use --format jsonl or ids without spaces")


class HitsWriter:
    """Writes batches of hits in one format to ``output``: a path, a text stream, or None (stdout).

    Use as a context manager; the file appears at its path only when the block ends without error.
    ``table`` is aligned over all hits, so it is held until :meth:`close`; every other format is
    written as batches come. ``id_types`` (``"int64"`` or ``"string"`` for query ids and document
    ids) fix the Parquet schema, which would otherwise follow the first batch.
    """

    def __init__(self, output: str | Path | IO[str] | None = None, fmt: str | None = None, *,
                 with_text: bool = True, id_types: tuple[str, str] | None = None, columns: pa.Schema | None = None):
        self.format = format_for(output, fmt)
        self.with_text = with_text
        self.columns = columns
        self.count = 0
        self._id_types = id_types
        self._table: list[dict] = []
        self._parquet = None
        self._csv = None
        self._path: Path | None = None
        self._tmp: Path | None = None
        if output is None or not isinstance(output, (str, Path)):
            if self.format == "parquet":
                raise OutputError("parquet hits need a file: give --output FILE.parquet")
            self._stream = output if output is not None else sys.stdout
            self._own = False
            return
        self._path = Path(output)
        if self._path.is_dir():
            raise OutputError(f"cannot write {self._path}: Is a directory")
        # /dev/stdout, a fifo, ...: written in place; a regular file: under a temporary name first.
        special = self._path.exists() and not self._path.is_file()
        self._tmp = None if special else self._path.with_name(f".{self._path.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            if self.format == "parquet":
                self._stream = open(self._tmp or self._path, "wb")
            else:
                self._stream = open(self._tmp or self._path, "w", encoding="utf-8", newline="")
        except OSError as e:
            raise OutputError(f"cannot write {self._path}: {e.strerror or e}") from None
        self._own = True

    def __enter__(self) -> HitsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, hits: list[dict[str, Any]]) -> None:
        """Append one batch of hits."""
        if self.format == "trec":
            check_trec_ids(hits)
        self.count += len(hits)
        try:
            getattr(self, f"_write_{self.format}")(hits)
        except BrokenPipeError:  # the reader went away (`| head`): the CLI ends quietly, as other tools do
            raise
        except OSError as e:
            raise OutputError(f"cannot write {self._path or 'the output'}: {e.strerror or e}") from None

    def _fields(self, hits: list[dict]) -> list[str]:
        return fields_of(hits, self.with_text, self.columns)

    def _write_jsonl(self, hits):
        self._stream.write("".join(json.dumps(self._trim(h), ensure_ascii=False) + "\n" for h in hits))

    def _write_json(self, hits):
        # The same bytes as json.dumps(all_hits, indent=2), one hit at a time.
        for h in hits:
            item = json.dumps(self._trim(h), ensure_ascii=False, indent=2).replace("\n", "\n  ")
            self._stream.write(("[\n  " if not self._started else ",\n  ") + item)
            self._started = True

    _started = False

    def _write_trec(self, hits):
        self._stream.write("".join(f"{h['query_id']} Q0 {h['id']} {h['rank']} {h['score']:.6f} glovefaiss\n"
                                   for h in hits))

    def _write_csv(self, hits):
        if self._csv is None:
            if not hits:
                return
            self._csv = csv.DictWriter(self._stream, fieldnames=self._fields(hits), lineterminator="\n",
                                       extrasaction="ignore")
            self._csv.writeheader()
        self._csv.writerows(hits)

    def _write_table(self, hits):
        self._table.extend(hits)

    def _write_parquet(self, hits):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            if not hits and self._id_types is None:
                return
            self._schema = self._parquet_schema(hits)
            self._parquet = pq.ParquetWriter(self._stream, self._schema, compression="zstd")
        if hits:
            cols = {}
            for f in self._schema:
                values = [h.get(f.name) for h in hits]
                if pa.types.is_string(f.type) and f.name != "text":
                    values = [None if v is None else str(v) for v in values]
                cols[f.name] = pa.array(values, f.type)
            self._parquet.write_table(pa.table(cols, schema=self._schema))

    def _parquet_schema(self, hits):
        import pyarrow as pa

        def id_type(key, hint):
            if hint is not None:
                return pa.int64() if hint == "int64" else pa.string()
            ints = all(isinstance(h[key], int) and not isinstance(h[key], bool) for h in hits)
            return pa.int64() if ints else pa.string()

        q_hint, d_hint = self._id_types or (None, None)
        fields = [pa.field("query_id", id_type("query_id", q_hint)), pa.field("rank", pa.int32()),
                  pa.field("id", id_type("id", d_hint)), pa.field("score", pa.float32())]
        if _text_field(hits, self.with_text):
            fields.append(pa.field("text", pa.string()))
        for name in stored_columns(hits, self.columns):  # build --columns: as stored, else typed from the values
            given = self.columns.get_field_index(name) if self.columns is not None else -1
            fields.append(self.columns.field(given) if given >= 0
                          else pa.field(name, pa.array([h.get(name) for h in hits]).type))
        return pa.schema(fields)

    def _trim(self, hit: dict) -> dict:
        if self.with_text or "text" not in hit:
            return hit
        return {k: v for k, v in hit.items() if k != "text"}

    def close(self) -> None:
        """Finish the output (the table, the JSON array, the Parquet footer) and put the file in place."""
        try:
            if self.format == "table":
                self._stream.write(render_table(self._table, with_text=self.with_text, columns=self.columns))
            elif self.format == "json":
                self._stream.write("\n]\n" if self._started else "[]\n")
            elif self.format == "csv" and self._csv is None:  # no hits: the header alone, as Parquet keeps its schema
                self._stream.write(",".join(self._fields([])) + "\n")
            elif self.format == "parquet":
                if self._parquet is None:
                    self._id_types = self._id_types or ("int64", "int64")
                    self._write_parquet([])
                self._parquet.close()
            if self._own:
                self._stream.close()
                if self._tmp is not None:
                    os.replace(self._tmp, self._path)
            else:
                self._stream.flush()
        except BrokenPipeError:
            self.abort()
            raise
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot write {self._path or 'the output'}: {e.strerror or e}") from None

    def abort(self) -> None:
        """Close without publishing: the temporary file goes, the named path is left as it was."""
        if self._own:
            try:
                self._stream.close()
            except OSError:
                pass
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)


def stored_columns(hits: list[dict], columns: pa.Schema | None = None) -> list[str]:
    """The corpus columns a build stored with its documents (``build --columns``), as the hits carry
    them; without hits, those of ``columns`` (the index's, when known)."""
    if hits:
        return [k for k in hits[0] if k not in FIELDS and k != "text"]
    return list(columns.names) if columns is not None else []


def _text_field(hits: list[dict], with_text: bool) -> list[str]:
    # No hits at all: the text column still, when ``with_text`` says the index stores texts.
    return ["text"] if with_text and (not hits or "text" in hits[0]) else []


def fields_of(hits: list[dict], with_text: bool = True, columns: pa.Schema | None = None) -> list[str]:
    """The columns of a CSV output, in the order of a hit's keys (and of JSON and Parquet): the
    hit's fields, the text, then the stored corpus columns."""
    return list(FIELDS) + _text_field(hits, with_text) + stored_columns(hits, columns)


def render_table(hits: list[dict], with_text: bool = True, columns: pa.Schema | None = None) -> str:
    """Aligned columns, texts cut to one line of 80 characters."""
    extra = stored_columns(hits, columns)
    # The text last here, not after the score: it is the wide column of a terminal table.
    fields = list(FIELDS) + extra + _text_field(hits, with_text)
    rows = [[str(h["query_id"]), str(h["rank"]), str(h["id"]), f"{h['score']:.4f}"]
            + [snippet(str(h.get(c, ""))) for c in extra]
            + ([snippet(h["text"])] if "text" in fields else []) for h in hits]
    widths = [max([len(f)] + [len(r[i]) for r in rows]) for i, f in enumerate(fields)]
    lines = ["  ".join(f.ljust(w) for f, w in zip(fields, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def render(hits: list[dict], fmt: str, with_text: bool = True) -> str:
    """All ``hits`` in a text format, as one string."""
    import io

    buf = io.StringIO()
    with HitsWriter(buf, fmt, with_text=with_text) as w:
        w.write(hits)
    return buf.getvalue()
