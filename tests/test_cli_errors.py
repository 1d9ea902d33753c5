"""What a new user hit: each failure is one line on stderr naming the fix, with exit code 1."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No name resolves, and gensim-data lives in an empty temp dir: a download must fail, fast."""
    def no_network(*_, **__):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("GENSIM_DATA_DIR", str(tmp_path / "gensim-data"))


def test_download_failure_is_one_line_without_verbose(tmp_path, tiny_corpus, offline):
    result = run("build", tiny_corpus[0], "--out", tmp_path / "idx", "--glove", "glove-wiki-gigaword-300")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO:")]
    assert lines == ["Error: could not download 'glove-wiki-gigaword-300' with gensim (ValueError: unable to read "
                     f"local cache '{tmp_path / 'gensim-data' / 'information.json'}' during fallback, connect to "
                     "the Internet and retry); connect to the network, or pass --glove PATH to a local vectors file"]
    assert "Traceback" not in result.stderr


def test_download_failure_details_with_verbose(tmp_path, tiny_corpus, offline):
    result = run("--verbose", "build", tiny_corpus[0], "--out", tmp_path / "idx", "--glove", "glove-wiki-gigaword-300")
    assert result.exit_code != 0
    assert "Traceback" in result.stderr  # gensim's own report of the failed request
