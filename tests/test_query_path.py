"""The query path must not import torch or gensim; the design's examples run offline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from glovefaiss.index.build import build

from .helpers import config_for, run_example

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_query_path_imports_neither_torch_nor_gensim(tmp_path, tiny_vectors, tiny_corpus):
    build([tiny_corpus[0]], tmp_path / "idx", config_for(tiny_vectors[0]), progress=False)
    code = (
        "import sys, glovefaiss\n"
        f"idx = glovefaiss.Index.load({str(tmp_path / 'idx')!r})\n"
        "hits = idx.hits(['the cat sat'], k=2)\n"
        "from glovefaiss.cli import cli\n"
        "assert hits[0]['id'] == 10, hits\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'gensim'))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.slow
def test_cli_query_on_integer_ids_starts_without_pyarrow(tmp_path, tiny_vectors, tiny_corpus):
    # pyarrow is a third of a cold query's start-up; the int-id query path reads numpy files only.
    build([tiny_corpus[0]], tmp_path / "idx", config_for(tiny_vectors[0]), progress=False)
    code = (
        "import sys\n"
        "from glovefaiss.cli import cli\n"
        f"cli.main(['query', {str(tmp_path / 'idx')!r}, 'The CAT sat', '-k', '1', '--format', 'jsonl'],"
        " standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyarrow', 'torch', 'gensim', 'yaml')),"
        " file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    hit = json.loads(proc.stdout)
    assert (hit["id"], hit["text"]) == (10, "The cat sat on the mat.") and 0.9 < hit["score"] <= 1.0
    assert proc.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_glove_search_example_runs_offline():
    lines = run_example("glove_search_example.py")
    assert len(lines) == 3
    assert lines[0].endswith("Kittens love to play with yarn.") or lines[0].endswith("The cat sat on the mat.")


def test_glove_search_api():
    from glovefaiss import GloVeSearch

    s = GloVeSearch()
    s.index_documents(["The stock market fell.", "A kitten chased a cat.", "Rain fell on the river."])
    hits = s.search("cats and kittens", top_k=2)
    assert [set(h) for h in hits] == [{"document", "score"}] * 2
    assert hits[0]["document"] == "A kitten chased a cat."
    assert hits[0]["score"] >= hits[1]["score"]
