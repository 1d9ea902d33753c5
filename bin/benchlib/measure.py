"""Timing: single calls, latencies with each item timed once, background load, `glovefaiss build`
and cold `glovefaiss query` processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .env import BenchError, glovefaiss_exe, log


def timed(fn, *args, **kwargs):
    """(result, wall seconds) of one call."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def pct(values_s: Sequence[float], q: float) -> float:
    """Percentile ``q`` of durations in seconds, in microseconds."""
    return float(np.percentile(np.asarray(values_s) * 1e6, q))


def each_once(variants: dict[str, Callable[[int], object]], items: range) -> dict[str, list[float]]:
    """Seconds per call of each variant, the variants taking turns over ``items``, each item timed once.

    Turns, so that every variant sees the same background conditions; once, because a repeated
    query finds its index lists and vectors in the CPU cache and flatters whichever variant runs
    second (FAISS alone looked 1.8x faster timed right after `search` on the same query).
    """
    names = list(variants)
    out: dict[str, list[float]] = {name: [] for name in names}
    for j, i in enumerate(items):
        name = names[j % len(names)]
        t = time.perf_counter()
        variants[name](i)
        out[name].append(time.perf_counter() - t)
    return out


class LoadMonitor:
    """Wall time of each step and the CPU that *other* processes used meanwhile.

    The machine is shared, so a report says how many cores were busy elsewhere during each step:
    /proc/stat busy time minus this process's and its children's.
    """

    def __init__(self, on_step: Callable[[dict], None] | None = None):
        self.steps: dict[str, dict] = {}
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._on_step = on_step

    def _busy(self) -> tuple[float, float] | None:
        try:
            f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        except (OSError, ValueError):
            return None
        steal = f[7] if len(f) > 7 else 0
        return (sum(f) - f[3] - f[4] - steal) / self._tick, steal / self._tick

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    @contextlib.contextmanager
    def step(self, name: str):
        b0, c0, t0 = self._busy(), self._own(), time.perf_counter()
        yield
        wall = time.perf_counter() - t0
        b1, c1 = self._busy(), self._own()
        rec = {"wall_s": wall, "own_cores": (c1 - c0) / wall if wall else 0.0}
        if b0 and b1:
            rec["other_cores"] = max(0.0, (b1[0] - b0[0]) - (c1 - c0)) / wall if wall else 0.0
            rec["steal_cores"] = (b1[1] - b0[1]) / wall if wall else 0.0
        self.steps[name] = rec
        if self._on_step:
            self._on_step(self.steps)


def run_build(corpus: Path, index_dir: Path, extra: Sequence[str] = ()) -> dict:
    """``glovefaiss build CORPUS --out INDEX_DIR --overwrite EXTRA`` in a child process: wall and CPU
    time, peak RSS, the build's summary lines and its manifest."""
    exe = glovefaiss_exe()
    cmd = [exe, "build", str(corpus), "--out", str(index_dir), "--overwrite", *extra]
    time_file = index_dir.parent / f"{index_dir.name}-time.txt"
    use_time = Path("/usr/bin/time").exists()
    log("running: " + " ".join(cmd))
    c0 = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run((["/usr/bin/time", "-v", "-o", str(time_file)] if use_time else []) + cmd,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    c1 = os.times()
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BenchError(f"glovefaiss build failed (exit {proc.returncode}):\n{tail}")
    rss_mb, rss_source = None, None
    if use_time and time_file.exists():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
        if m:
            rss_mb, rss_source = int(m.group(1)) / 1024, "/usr/bin/time -v"
        time_file.unlink()
    if rss_mb is None:
        import resource

        # The largest child so far, not necessarily this one: said so in rss_source.
        rss_mb, rss_source = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "getrusage(RUSAGE_CHILDREN)"
    manifest = json.loads((index_dir / "manifest.json").read_text())
    return {"cmd": " ".join(["glovefaiss"] + cmd[1:]), "wall_s": wall,
            "cpu_s": (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system),
            "max_rss_mb": rss_mb, "rss_source": rss_source, "manifest": manifest,
            "summary": [line for line in proc.stderr.splitlines() if line.startswith(("built ", "index "))],
            "index_bytes": manifest["index"]["bytes"],
            "shard_bytes": sum((index_dir / s["file"]).stat().st_size for s in manifest["shards"])}


def evict(directory: Path) -> int:
    """Ask the kernel to drop the page cache of every file under ``directory``
    (``posix_fadvise(DONTNEED)``: clean pages of files no process maps); the bytes still cached after."""
    for path in _files(directory):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return cached_bytes(directory)


def cached_bytes(directory: Path) -> int | None:
    """Bytes of the files under ``directory`` in the page cache (``fincore``), None without it."""
    files = [str(p) for p in _files(directory)]
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", *files],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum(int(x) for x in out.split())


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).rglob("*") if p.is_file())


def cold_queries(index_dir: Path, text: str, runs: int = 5) -> dict:
    """Wall seconds of fresh ``glovefaiss query`` processes, ``--mmap`` against ``--no-mmap``.

    ``evicted``: the index directory's page cache dropped before each run (see :func:`evict`; the
    interpreter and libraries stay cached: a fresh process on a machine that ran Python lately).
    ``cached``: the index read once before, so its files are in the page cache. The modes take
    turns, the first alternating, so both see the same background. Interpreter and import
    baselines alike, for scale.
    """
    exe = glovefaiss_exe()
    query = [exe, "query", str(index_dir), text, "-k", "10"]
    modes = {"mmap": query + ["--mmap"], "no_mmap": query + ["--no-mmap"]}
    walls: dict[str, list[float]] = {f"{m}_{c}": [] for c in ("evicted", "cached") for m in modes}
    left_cached: list[int] = []
    log(f"cold queries: {runs} runs of each of {', '.join(walls)}")
    _wall(modes["mmap"])  # a first run outside the figures: interpreter and libraries into the page cache
    for r in range(runs):
        order = list(modes) if r % 2 == 0 else list(modes)[::-1]
        for mode in order:
            left = evict(index_dir)
            if left is not None:
                left_cached.append(left)
            walls[f"{mode}_evicted"].append(_wall(modes[mode]))
        for mode in order:
            walls[f"{mode}_cached"].append(_wall(modes[mode]))
    for name, cmd in (("import_faiss", [sys.executable, "-c", "import faiss"]),
                      ("import_glovefaiss", [sys.executable, "-c", "import glovefaiss"]),
                      ("python", [sys.executable, "-c", "pass"])):
        walls[name] = [_wall(cmd) for _ in range(runs)]
    index_bytes = sum(p.stat().st_size for p in _files(index_dir))
    return {"runs": runs, "text": text, "walls_s": walls, "index_dir_bytes": index_bytes,
            "eviction": "posix_fadvise(POSIX_FADV_DONTNEED) on every file of the index directory",
            "max_cached_after_evict": max(left_cached) if left_cached else None}


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        raise BenchError(f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}):\n{tail}")
    return wall
