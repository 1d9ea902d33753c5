"""glovefaiss: semantic indexes from static word vectors, built and served on CPU."""

__version__ = "0.1.0"

from .config import Config, load_config
from .errors import (
    ConfigError,
    CorpusError,
    GloveFaissError,
    IndexDirError,
    ModelError,
    QueryError,
    UnknownVectorsSource,
    VectorsDownloadError,
    VectorsError,
    VectorsFormatError,
)
from .pooling import TextEncoder, mean_pool
from .query import Index, SearchResult
from .tokenisers import Tokeniser


def __getattr__(name):
    # Heavy or optional pieces load on first use, so `import glovefaiss` stays light and torch-free.
    if name == "build":
        from .pipeline import build

        return build
    if name in ("load_vectors", "WordVectors"):
        from . import vectors

        return getattr(vectors, name)
    if name == "GloVeSearch":
        from .glove_search import GloVeSearch

        return GloVeSearch
    raise AttributeError(f"module 'glovefaiss' has no attribute {name!r}")


__all__ = [
    "__version__",
    "Config",
    "ConfigError",
    "CorpusError",
    "GloVeSearch",
    "GloveFaissError",
    "Index",
    "IndexDirError",
    "ModelError",
    "QueryError",
    "SearchResult",
    "TextEncoder",
    "Tokeniser",
    "UnknownVectorsSource",
    "VectorsDownloadError",
    "VectorsError",
    "VectorsFormatError",
    "WordVectors",
    "build",
    "load_config",
    "load_vectors",
    "mean_pool",
]
