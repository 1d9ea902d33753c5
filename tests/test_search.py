"""SemanticSearch over a two-tower model (torch) or a model directory (numpy), and the example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from glovefaiss.train.fit import fit
from glovefaiss.train.model_dir import save_model
from glovefaiss.train.search import SemanticSearch

from .helpers import make_two_tower as make
from .helpers import pair_data, run_example

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["the cat sat on the mat", "stock market fell sharply", "boat on the river", "dog barked loudly",
        "kitten played with yarn", "rates rise at the bank"]


def test_semantic_search_matches_brute_force(tmp_path, tiny_vectors):
    data = pair_data()
    model, tok, config, vectors = make(tiny_vectors, data, hidden_dim=6, tied=False)
    fit(model, tok, data, config, epochs=2, seed=0, progress=False)
    s = SemanticSearch(model, tok)
    s.index_documents(DOCS)
    hits = s.search("kitten yarn", top_k=3)
    assert [set(h) for h in hits] == [{"document", "score"}] * 3
    with torch.no_grad():
        q = model.encode_query(tok(["kitten yarn"])).numpy()[0]
        d = model.encode_document(tok(DOCS)).numpy()
    want = np.argsort(-(d @ q), kind="stable")[:3]
    assert [h["document"] for h in hits] == [DOCS[i] for i in want]
    np.testing.assert_allclose([h["score"] for h in hits], (d @ q)[want], atol=1e-5)

    # The same model from its directory (numpy towers, no torch needed): the same answer.
    save_model(tmp_path / "m", model, tok, config, vectors=vectors)
    s2 = SemanticSearch(tmp_path / "m")
    s2.index_documents(DOCS)
    hits2 = s2.search("kitten yarn", top_k=3)
    assert [h["document"] for h in hits2] == [h["document"] for h in hits]
    np.testing.assert_allclose([h["score"] for h in hits2], [h["score"] for h in hits], atol=1e-5)


@pytest.mark.slow
def test_two_tower_example_runs_offline():
    lines = run_example("two_tower_glove_example.py")
    assert len(lines) == 4 and lines[0].startswith("trained 5 triplets for 5 epochs")
    assert lines[1].endswith("Kittens love to play with yarn.") or lines[1].endswith("The cat sat on the mat.")


@pytest.mark.slow
def test_serving_a_model_imports_no_torch(tmp_path, tiny_vectors, tiny_corpus):
    data = pair_data()
    model, tok, config, vectors = make(tiny_vectors, data, hidden_dim=6)
    save_model(tmp_path / "m", model, tok, config, vectors=vectors)
    code = (
        "import sys\n"
        "from glovefaiss.train.search import SemanticSearch\n"
        "from glovefaiss.index.with_model import build_with_model\n"
        "from glovefaiss.cli import cli\n"
        f"s = SemanticSearch({str(tmp_path / 'm')!r})\n"
        "s.index_documents(['the cat sat', 'stock market fell'])\n"
        "assert s.search('kitten', top_k=1)[0]['document'] == 'the cat sat'\n"
        f"build_with_model([{str(tiny_corpus[0])!r}], {str(tmp_path / 'idx')!r}, {str(tmp_path / 'm')!r}, progress=False)\n"
        f"r = cli.main(['query', {str(tmp_path / 'idx')!r}, 'kitten', '--model', {str(tmp_path / 'm')!r}],"
        " standalone_mode=False)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'gensim'))\n"
        "print('BAD=' + ','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "BAD="
    assert "the cat sat on the mat." in proc.stdout.lower()  # the query printed its hits
