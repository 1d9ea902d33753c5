"""Where builds, additions and batch queries run: ``local`` (this process) or ``ray`` (a cluster).

Both engines write the same files, byte for byte; see docs/distributed.md. Ray is an optional
extra, imported only when ``ray`` is asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..config import Config, check_engine
from ..index.writer import LocalEngine


@contextlib.contextmanager
def open_engine(name: str = "local", address: str | None = None, workers: int | None = None) -> Iterator[LocalEngine]:
    """The engine ``name``, connected for the duration of the context (Ray started or joined)."""
    check_engine(name, address)  # build.workers may wait in a config for an --engine ray
    if name == "local":
        yield LocalEngine()
        return
    from .cluster import RayCluster
    from .ray import RayEngine

    with RayCluster(address, workers) as cluster:
        engine = RayEngine(cluster)
        try:
            yield engine
        finally:
            engine.close()


def build(corpus, out: str | Path, config: Config | None = None, *, model_dir: str | Path | None = None, **kwargs):
    """:func:`glovefaiss.index.build.build` (or with ``model_dir``'s towers) on the config's ``build.engine``."""
    from ..index.build import build as build_index
    from ..index.with_model import build_with_model

    config = config or Config()
    bc = config.build
    with open_engine(bc.engine, bc.ray_address, bc.workers) as engine:
        if model_dir is not None:
            return build_with_model(corpus, out, model_dir=model_dir, config=config, engine=engine, **kwargs)
        return build_index(corpus, out, config, engine=engine, **kwargs)


def add(directory: str | Path, corpus: str | Path | Sequence[str | Path], *, engine: str = "local", ray_address: str | None = None,
        workers: int | None = None, **kwargs):
    """:func:`glovefaiss.index.add.add_documents` on ``engine``."""
    from ..index.add import add_documents

    with open_engine(engine, ray_address, workers) as runner:
        return add_documents(directory, corpus, engine=runner, **kwargs)


def batch_hits(index_dir: str | Path, texts: Sequence[str], k: int = 10, query_ids: Sequence | None = None, *,
               ray_address: str | None = None, workers: int | None = None, with_text: bool = True) -> list[dict]:
    """:meth:`.Index.hits` for a batch of queries, answered by Ray workers, in query order."""
    query_ids = list(query_ids) if query_ids is not None else list(range(1, len(texts) + 1))
    with open_engine("ray", ray_address, workers) as engine:
        return engine.hits(Path(index_dir).absolute(), texts, k, query_ids, with_text)


def write_batch_hits(index_dir: str | Path, query_ids: Sequence, texts: Sequence[str], k: int = 10,
                     output=None, fmt: str | None = None, *, ray_address: str | None = None,
                     workers: int | None = None, with_text: bool = True):
    """:meth:`.Index.write_hits` with the searching done by Ray workers: the same output, in query order."""
    from ..errors import QueryError
    from ..index.hits import HitsWriter, format_for
    from ..index.layout import read_manifest
    from ..index.search import QueryRun, repeated_ids, split_no_hits
    from ..index.shards import ColumnStore
    from ..tower.encoder import load_encoder

    fmt = format_for(output, fmt)
    empty = [q for q, t in zip(query_ids, texts) if not isinstance(t, str) or not t.strip()]
    kept = [(q, t) for q, t in zip(query_ids, texts) if isinstance(t, str) and t.strip()]
    if not kept:
        raise QueryError("every query is empty; give some text to search for")
    ids = [q for q, _ in kept]
    hits = batch_hits(index_dir, [t for _, t in kept], k, ids, ray_address=ray_address, workers=workers,
                      with_text=with_text)
    manifest = read_manifest(Path(index_dir))  # without hits, it says which columns the output has
    names = manifest.corpus.get("columns")
    columns = ColumnStore(Path(index_dir), manifest.shards, names).schema if names else None
    with HitsWriter(output, fmt, with_text=with_text and manifest.store_text, columns=columns) as writer:
        writer.write(hits)
    answered = {h["query_id"] for h in hits}
    no_hits = [(q, t) for q, t in kept if q not in answered]
    # Which of them know no word: the query tower alone, memory-mapped (no FAISS index loaded here).
    unanswered, missed = split_no_hits(load_encoder(Path(index_dir) / manifest.query_tower_dir), no_hits) \
        if no_hits else ([], [])
    return QueryRun(queries=len(query_ids), hits=writer.count, format=fmt,
                    output=Path(output) if isinstance(output, (str, Path)) else None, empty=empty,
                    unanswered=unanswered, missed=missed, repeated=repeated_ids(query_ids))
