"""The machine, the versions and the glovefaiss executable a benchmark runs with."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

_prog = ["bench"]


def set_prog(name: str) -> None:
    """The name progress lines are tagged with."""
    _prog[0] = name


def log(msg: str) -> None:
    print(f"[{_prog[0]} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A step failed; the script prints the message and exits non-zero."""


def glovefaiss_exe() -> str:
    """The ``glovefaiss`` console script of this interpreter's environment (else the one on PATH)."""
    exe = shutil.which("glovefaiss", path=str(Path(sys.executable).parent)) or shutil.which("glovefaiss")
    if exe is None:
        raise BenchError("the glovefaiss console script is not on PATH; run through the bin/ wrapper")
    return exe


def _first_field(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def machine_info() -> dict:
    """CPU, memory, OS, library versions and the git state of the glovefaiss being measured."""
    import faiss
    import numpy as np
    import pyarrow as pa

    import glovefaiss

    mem = _first_field("/proc/meminfo", "MemTotal:")
    git = {}
    try:
        git["commit"] = _git("rev-parse", "--short", "HEAD").strip()
        git["library_changes"] = [s[3:] for s in _git("status", "--porcelain", "--", "glovefaiss").splitlines()]
    except (OSError, subprocess.CalledProcessError):
        pass
    versions = {}
    for name in ("gensim", "torch", "scipy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": _first_field("/proc/cpuinfo", "model name") or platform.processor() or "?",
        "mem_gb": int(mem.split()[0]) / 1024**2 if mem else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "faiss": faiss.__version__,
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        **versions,
        "glovefaiss": glovefaiss.__version__,
        "glovefaiss_path": str(Path(glovefaiss.__file__).parent),
        "git": git,
    }


def describe_machine(info: dict) -> str:
    """One sentence for a report: machine, versions, git commit."""
    git = info.get("git", {})
    mem = f"{info['mem_gb']:.0f} GB RAM" if info.get("mem_gb") else "RAM unknown"
    libs = ", ".join(f"{name} {info[name]}" for name in ("numpy", "pyarrow", "faiss", "gensim", "torch")
                     if info.get(name))
    return (f"{info['cpu_count']} CPUs ({info['cpu']}), {mem}, {info['os']}. Python {info['python']}, {libs} "
            f"(FAISS OpenMP threads {info['faiss_omp_threads']}), glovefaiss {info['glovefaiss']}"
            + (f", git {git['commit']}" if git.get("commit") else "")
            + (f" + uncommitted changes in {', '.join(git['library_changes'])}" if git.get("library_changes") else "")
            + ".")
