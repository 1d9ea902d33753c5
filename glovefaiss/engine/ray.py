"""Build, add and batch-query on Ray, with the same output as this process would write.

Ray core, not Ray Data: each part is a range of whole shards that a worker writes itself, under
the very names and with the very bytes the local writer gives them, so there is no dataset to
collect, no block order to restore and no file name for Ray to invent. Workers are actors: each
loads the tower (memory-mapped from the output's partial directory) once, and a worker whose
process dies is restarted and its part run again (``RETRIES``).

FAISS runs on the workers with the driver's OpenMP thread count: the coarse assignment's matrix
products round differently with another count, which moved one vector in a million to another
IVF list (a tie to 7 digits) when workers added with one thread and the local build with two.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..config import BuildConfig
from ..errors import EngineError, GloveFaissError
from ..index.writer import LocalEngine, WrittenShards, append_shards, pooling_backend, write_shards
from ..io.corpus import Corpus
from ..tower.encoder import EncodeStats, TextEncoder, load_encoder
from .cluster import RayCluster
from .parts import Part, copies_vectors, empty_like, finish_merge, merge_into, mergeable, plan_parts, split_queries

logger = logging.getLogger(__name__)

RETRIES = 3  # restarts of a worker whose process died, and reruns of its part
# Test hook, read by the driver: "PART:MARKER" makes the worker of part PART exit (os._exit) after
# writing its shards, unless the file MARKER exists (it creates it first): the part's first attempt dies.
CRASH_ENV = "GLOVEFAISS_RAY_TEST_CRASH"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _where() -> dict:
    """This worker: its process, its node and its peak memory so far."""
    import ray

    return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "peak_rss_mb": _peak_rss_mb()}


def _maybe_crash(part: int, spec: str | None) -> None:
    if not spec:
        return
    number, marker = spec.split(":", 1)
    if int(number) == part and not os.path.exists(marker):
        Path(marker).touch()
        logger.warning("test hook %s: the worker of part %d exits", CRASH_ENV, part)
        os._exit(1)


class ShardWorker:
    """A Ray actor: encodes parts of a corpus into shards and fills parts of a FAISS index.

    Started before the driver has a tower to give it, so that its imports overlap the driver's
    preparations; each part names its tower, loaded at the first part (or :meth:`prepare`) and kept.
    """

    def __init__(self, rows: int = 0):
        pooling_backend(rows)  # imports torch if encoding ``rows`` documents would use it
        self._tower: tuple[str, str] | None = None
        self._encoder: TextEncoder | None = None
        self._lock = threading.Lock()  # parts run on the actor's threads (max_concurrency)

    def prepare(self, tower_dir: str, backend_rows: int) -> bool:
        """Load the tower at ``tower_dir`` for batches of a build of ``backend_rows`` rows per worker."""
        self._encoder_for(tower_dir, pooling_backend(backend_rows))
        return True

    def _encoder_for(self, tower_dir: str, backend: str) -> TextEncoder:
        with self._lock:
            if self._tower != (tower_dir, backend):
                import pyarrow as pa

                encoder = load_encoder(Path(tower_dir)).for_batches(backend)
                # The encoding path's first call imports and builds what every later one reuses.
                encoder.encode(pa.array(["warm up"]), stats=EncodeStats())
                self._tower, self._encoder = (tower_dir, backend), encoder
            return self._encoder

    def encode(self, corpus: Corpus, part: Part, directory: str, tower_dir: str, bc: BuildConfig, store_text: bool,
               row_group_rows: int, backend_rows: int, crash: str | None = None) -> dict:
        t0 = time.perf_counter()
        backend = pooling_backend(backend_rows)
        written = write_shards(corpus.rows(part.start, part.stop), Path(directory), self._encoder_for(tower_dir, backend),
                               bc, store_text=store_text, row_group_rows=row_group_rows, first_shard=part.first_shard,
                               progress=False, backend=backend)
        _maybe_crash(part.number, crash)
        return {"number": part.number, "shards": written.shards, "ids": written.ids, "stats": written.stats,
                "backend": written.backend, "setup_s": written.setup_s, "seconds": time.perf_counter() - t0,
                **_where()}

    def fill(self, template: np.ndarray, directory: str, shards: list[dict], labels_are_ids: bool,
             faiss_threads: int) -> dict:
        faiss.omp_set_num_threads(faiss_threads)
        index = faiss.deserialize_index(template)
        append_shards(index, Path(directory), shards, labels_are_ids)
        return {"index": faiss.serialize_index(index), **_where()}


class QueryWorker:
    """A Ray actor: one index directory, memory-mapped once, answering ranges of a query batch."""

    def __init__(self, index_dir: str):
        from ..index.search import Index

        self.index = Index.load(index_dir, mmap=True)

    def hits(self, texts: list[str], k: int, query_ids: list, with_text: bool, faiss_threads: int) -> dict:
        faiss.omp_set_num_threads(faiss_threads)
        return {"hits": self.index.hits(texts, k=k, query_ids=query_ids, with_text=with_text), **_where()}


class RayEngine(LocalEngine):
    """The writer's two heavy steps on a Ray cluster (``build.engine: ray``), for :func:`.build` and add.

    Shards: one part per shard, encoded by ``cluster.workers`` actors, journalled in shard order
    as the parts before them complete, each worker encoding one part per CPU at once. FAISS:
    trained here, sent to the workers serialised, filled there a part each, merged here in part
    order (a flat index, which adding only copies into, is filled here).
    """

    name = "ray"
    fills_apart = True

    def __init__(self, cluster: RayCluster):
        self.cluster = cluster
        self.ray = cluster.ray
        self._actors: list = []
        self.info: dict[str, Any] = {}
        self._rss: dict[tuple, float] = {}
        self._nodes: set[str] = set()

    @property
    def workers(self) -> int:
        return self._connected().workers

    @property
    def slots(self) -> int:
        """Parts a worker encodes at once: one per CPU it reserves."""
        return max(1, int(self._connected().cpus_per_worker))

    def _connected(self) -> RayCluster:
        if not self.cluster.connected:
            c = self.cluster.connect()
            self.ray = c.ray
            self.info.update(address=c.address or "local", cpus=c.cpus, cpus_per_worker=c.cpus_per_worker)
        return self.cluster

    def start(self, rows: int = 0) -> None:
        """Connect, and start the workers for about ``rows`` documents, not waited for: their
        processes and imports overlap the driver's preparations."""
        self._connected()
        if not self._actors:
            cls = self.ray.remote(ShardWorker).options(**self.cluster.actor_options(RETRIES),
                                                       max_concurrency=self.slots)
            self._actors = [cls.remote(-(-rows // self.workers)) for _ in range(self.workers)]

    def _pool(self, slots: int = 1):
        """The workers as a pool that gives each ``slots`` calls at once (at most :attr:`slots`)."""
        self.start()
        return self.ray.util.ActorPool(self._actors * slots)

    def _note(self, result: dict) -> None:
        key = (result["node"], result["pid"])
        self._rss[key] = max(self._rss.get(key, 0.0), result["peak_rss_mb"])
        self._nodes.add(result["node"])

    def write_shards(self, corpus: Corpus, directory: Path, encoder: TextEncoder, tower_dir: Path, bc: BuildConfig, *,
                     store_text: bool, row_group_rows: int, first_shard: int = 0, skip: int = 0,
                     on_shard: Callable[[dict], None] | None = None, progress: bool | None = None) -> WrittenShards:
        """The shards :func:`.writer.write_shards` would write, written by the workers; ``on_shard`` in order."""
        from tqdm.auto import tqdm

        parts = plan_parts(corpus.num_rows, bc.shard_rows, skip=skip, first_shard=first_shard)
        if 0 < len(parts) < self.workers:
            logger.warning("%d parts for %d workers: smaller shards (build --shard-rows) would keep every "
                           "worker busy", len(parts), self.workers)
        # A worker's threads each encode a part of their own, as the local writer's threads each
        # encode a batch: a part's batches, encoded together, leave threads idle at its end.
        pool = self._pool(self.slots)
        part_bc = replace(bc, threads=1)
        backend_rows = -(-(corpus.num_rows - skip) // self.workers)  # what each worker encodes in all
        tower = str(tower_dir)
        # Waited for here, so that the encoding time is the encoding's: what is left of the workers'
        # start (a process, imports, the tower mapped and warmed up) is Ray's overhead, recorded apart.
        t0 = time.perf_counter()
        with _errors(self.ray):
            self.ray.get([a.prepare.remote(tower, backend_rows) for a in self._actors])
        self.info["actors_start_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        self.info.update(parts=len(parts), threads_per_worker=self.slots)
        crash = os.environ.get(CRASH_ENV)
        done: dict[int, dict] = {}
        entries: list[dict] = []
        ids: list = []
        total = EncodeStats()
        backends = set()
        following = 0
        with tqdm(total=corpus.num_rows, initial=skip, unit="doc", unit_scale=True, desc=f"encoding on {self.workers}",
                  disable=None if progress is None else not progress, leave=False) as bar:
            results = pool.map_unordered(
                lambda actor, part: actor.encode.remote(corpus, part, str(directory), tower, part_bc, store_text,
                                                        row_group_rows, backend_rows, crash), parts)
            for result in _unwrapped(results, self.ray):
                self._note(result)
                done[result["number"]] = result
                bar.update(sum(s["rows"] for s in result["shards"]))
                while following in done:  # the journal holds a prefix of the shards, in order
                    nxt = done[following]
                    for entry in nxt["shards"]:
                        entries.append(entry)
                        if on_shard is not None:
                            on_shard(entry)
                    ids.extend(nxt["ids"])
                    total.add(nxt["stats"])
                    backends.add(nxt["backend"])
                    following += 1
        seconds = time.perf_counter() - t0
        self.info["encode_s"] = round(seconds, 3)
        self.info["part_encode_s"] = round(sum(r["seconds"] for r in done.values()), 3)
        return WrittenShards(entries, ids, total, "/".join(sorted(backends)) or "scipy",
                             self.info.get("actors_start_s", 0.0), seconds)

    def append(self, index, directory: Path, shards: list[dict], labels_are_ids: bool) -> None:
        """Fill ``index`` with the vectors of ``shards``: parts filled by the workers, merged here in order."""
        if not shards:
            return
        if copies_vectors(index):
            super().append(index, directory, shards, labels_are_ids)
            return
        if not mergeable(index):
            logger.info("this index family cannot be filled in parts; adding every vector here")
            super().append(index, directory, shards, labels_are_ids)
            return
        t0 = time.perf_counter()
        template = self.ray.put(empty_like(index))
        pool = self._pool()
        groups = [[s] for s in shards]
        threads = faiss.omp_get_max_threads()
        results = pool.map(lambda actor, group: actor.fill.remote(template, str(directory), group, labels_are_ids,
                                                                  threads), groups)
        for result in _unwrapped(results, self.ray):
            self._note(result)
            merge_into(index, faiss.deserialize_index(result["index"]), labels_are_ids)
        finish_merge(index)
        self.info["fill_s"] = round(time.perf_counter() - t0, 3)

    def hits(self, index_dir: Path, texts: Sequence[str], k: int, query_ids: Sequence, with_text: bool = True) -> list:
        """:meth:`.Index.hits` of ``texts``, answered in ranges by workers that each map the index once."""
        self._connected()
        cls = self.ray.remote(QueryWorker).options(**self.cluster.actor_options(RETRIES))
        actors = [cls.remote(str(index_dir)) for _ in range(self.workers)]
        try:
            texts, query_ids = list(texts), list(query_ids)
            ranges = split_queries(len(texts), self.workers, faiss.cvar.distance_compute_blas_query_bs)
            threads = faiss.omp_get_max_threads()
            results = self.ray.util.ActorPool(actors).map(
                lambda actor, r: actor.hits.remote(texts[r[0]:r[1]], k, query_ids[r[0]:r[1]], with_text, threads),
                ranges)
            out: list = []
            for result in _unwrapped(results, self.ray):
                self._note(result)
                out.extend(result["hits"])
            return out
        finally:
            for actor in actors:
                self.ray.kill(actor)

    def describe(self) -> dict:
        return {"engine": self.name, "workers": self.cluster.workers, **self.info, "nodes_used": len(self._nodes),
                "worker_peak_rss_mb": sorted(round(v, 1) for v in self._rss.values())}

    def close(self) -> None:
        for actor in self._actors:
            self.ray.kill(actor)
        self._actors = []


@contextlib.contextmanager
def _errors(ray):
    """A library error of a worker raised as itself (one line at the CLI), other failures as EngineError."""
    try:
        yield
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, GloveFaissError):
            raise cause from None
        raise EngineError(f"a Ray worker failed: {cause or e}") from e
    except ray.exceptions.RayActorError as e:
        raise EngineError(f"a Ray worker died {RETRIES + 1} times, or its node left the cluster ({e})") from e


def _unwrapped(results, ray):
    """Results of Ray calls, as they come, failures translated by :func:`_errors`."""
    with _errors(ray):
        yield from results
