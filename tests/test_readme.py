"""Every bash and Python block of the README runs as pasted, in order, in a fresh directory that
holds the files the README names (the Lee news corpus from gensim's wheel stands in for a
user's corpus). Only the lines listed in SKIPPED are left out, each for the reason given."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Line prefixes that are not run, and why. Everything else in a bash or python block must run.
SKIPPED = {
    "bin/demo": "sets up .venv and indexes the Lee corpus: what this test does itself",
    "bin/test": "the test suite itself",
    "pip install": "installs packages; the test environment has the dev extra",
    "glovefaiss serve": "a long-running server; tests/test_serve.py runs it on a free port",
    "curl ": "needs the server above",
    "     -d ": "the continuation of the curl line above",
    "bin/compare": "needs the public SciFact and STS-B data sets",
    "glovefaiss build s3://": "needs a running Ray cluster and object storage",
}
EXTERNAL = "path/to/"  # a line naming the public data sets' place (README: 'Public data') needs them
# Lines that need what an EXTERNAL line would have made (a model trained on the public data).
NEEDS_EXTERNAL = ("models/scifact", "models/stsb")


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every ```bash and ```python block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(bash|python)\n(.*?)^```", text, re.S | re.M)]


def skipped(line: str) -> bool:
    s = line.strip()
    return (not s or s.startswith("#") or EXTERNAL in s or any(s.startswith(p.strip()) for p in SKIPPED)
            or any(m in s for m in NEEDS_EXTERNAL))


def commands(code: str) -> list[str]:
    """A bash block's commands, joining backslash continuations."""
    out, cur = [], ""
    for line in code.splitlines():
        cur += line
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        out.append(cur)
        cur = ""
    return out


@pytest.fixture
def workdir(tmp_path):
    """The files the README's commands name: corpora, a query file, and the repo's configs."""
    path = files("gensim") / "test" / "test_data" / "lee_background.cor"
    texts = [line.strip() for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]
    table = pa.table({"id": pa.array(range(1, 251), pa.int64()), "text": texts[:250]})
    pq.write_table(table, tmp_path / "corpus.parquet")
    (tmp_path / "docs").mkdir()
    pq.write_table(pa.table({"doc_id": table["id"], "body": table["text"]}), tmp_path / "docs" / "part-0.parquet")
    pq.write_table(pa.table({"id": pa.array(range(251, 251 + len(texts[250:])), pa.int64()), "text": texts[250:]}),
                   tmp_path / "more.parquet")
    queries = ["interest rates", "bushfires near Sydney", "cricket"]
    with open(tmp_path / "queries.jsonl", "w", encoding="utf-8") as f:
        for i, q in enumerate(queries, 1):
            f.write(json.dumps({"id": f"q{i}", "text": q}) + "\n")
    pq.write_table(pa.table({"id": [f"q{i}" for i in range(1, 4)], "text": queries}), tmp_path / "queries.parquet")
    pq.write_table(pa.table({"id": pa.array([5, 6], pa.int64()), "text": ["Rain eases the bushfire threat.",
                                                                          "Interest rates are left on hold."]}),
                   tmp_path / "changed.parquet")
    (tmp_path / "stale-ids.txt").write_text("7\n8\n", encoding="utf-8")
    os.symlink(ROOT / "configs", tmp_path / "configs")
    return tmp_path


@pytest.mark.slow
def test_readme_blocks_run_as_pasted(workdir):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = 0
    for lang, code in blocks(README.read_text(encoding="utf-8")):
        if lang == "bash":
            for cmd in commands(code):
                if skipped(cmd):
                    continue
                proc = subprocess.run(["bash", "-c", cmd], cwd=workdir, env=env, capture_output=True, text=True,
                                      timeout=300)
                assert proc.returncode == 0, f"README command failed: {cmd}\n{proc.stderr}"
                ran += 1
        else:
            kept = "\n".join(line for line in code.splitlines() if not skipped(line) or not line.strip()
                             or line.lstrip().startswith("#"))
            proc = subprocess.run([sys.executable, "-c", kept], cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert proc.returncode == 0, f"README python block failed:\n{kept}\n{proc.stderr}"
            ran += 1
    assert ran >= 8  # the build, add, verify, query and library blocks at least


def test_every_skip_reason_still_matches_a_readme_line():
    # A stale entry would hide nothing today but could hide a new line tomorrow: keep the list exact.
    lines = [c.strip() for lang, code in blocks(README.read_text(encoding="utf-8")) if lang == "bash"
             for c in code.splitlines()]
    unused = [p for p in SKIPPED if not any(line.startswith(p.strip()) for line in lines)]
    assert not unused
