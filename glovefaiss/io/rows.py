"""Query files: Parquet or JSONL with ``id`` and ``text`` columns, or plain text, one query a line.

Read by ``glovefaiss query --queries`` and by the build's tuner (``--tuning-queries``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import QueryError


def read_queries(path: str | Path) -> tuple[list[Any], list[str]]:
    """(ids, texts) from Parquet or JSONL with columns ``id`` and ``text``, or a text file (ids = line numbers)."""
    import json

    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise QueryError(f"query file not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        table = pq.read_table(path)
        rows = table.to_pylist()
    elif path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise QueryError(f"{path}:{n}: not valid JSON ({e.msg})") from None
                if not isinstance(rows[-1], dict):
                    raise QueryError(f"{path}:{n}: each line must be a JSON object with 'id' and 'text'")
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        pairs = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
        if not pairs:
            raise QueryError(f"{path} has no queries")
        return [n for n, _ in pairs], [t for _, t in pairs]
    if not rows:
        raise QueryError(f"{path} has no queries")
    for col in ("id", "text"):
        if col not in rows[0]:
            raise QueryError(f"{path} has no '{col}' column; columns present: {', '.join(rows[0])}; "
                             "query files need 'id' and 'text'")
    return [r.get("id") for r in rows], [r.get("text") or "" for r in rows]
