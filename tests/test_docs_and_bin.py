"""What a new user reads and runs first: docs that name no private paths, bin scripts that say what they need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_docs_name_no_development_paths():
    # ../shared exists only where glovefaiss is developed; users get placeholders (README, "Public data").
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert [p.name for p in pages if "../shared" in p.read_text(encoding="utf-8")] == []


@pytest.mark.slow
def test_compare_needs_an_explicit_data_directory(tmp_path):
    run = [sys.executable, str(ROOT / "bin" / "compare.py")]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == ("bin/compare: error: --data DIR is required (a directory with stsb/ "
                                            "and scifact/)")
    proc = subprocess.run([*run, "--data", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (f"bin/compare: error: {tmp_path / 'stsb' / 'stsb-en-test.csv'} not "
                                            "found; --data DIR must hold stsb/ and scifact/")


@pytest.mark.slow
def test_compare_leaves_word2vec_and_the_tracked_page_alone_by_default():
    proc = subprocess.run([sys.executable, str(ROOT / "bin" / "compare.py"), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "default: all but word2vec" in text
    assert "glovefaiss-compare" in text and "docs/comparison.md)" in text  # --out outside the repo; --markdown opt-in


def test_every_name_a_bin_script_takes_from_the_package_or_another_script_exists():
    # bin/ scripts run only when someone benchmarks; a name moved in a refactor breaks them silently
    # (bin/bench-serve imported load_vectors from a module that no longer had it).
    import ast
    import importlib

    sys.path.insert(0, str(ROOT / "bin"))
    try:
        missing = []
        for path in sorted((ROOT / "bin").rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and not node.level and node.module \
                        and node.module.split(".")[0] in ("glovefaiss", "benchlib"):
                    module = importlib.import_module(node.module)
                    missing += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                                if not hasattr(module, a.name)
                                and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                        and (ROOT / "bin" / f"{node.value.id}.py").is_file():
                    if not hasattr(importlib.import_module(node.value.id), node.attr):
                        missing.append(f"{path.name}: {node.value.id}.{node.attr}")
        assert missing == []
    finally:
        sys.path.remove(str(ROOT / "bin"))
