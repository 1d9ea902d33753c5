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
    if name == "SemanticSearch":
        from .search import SemanticSearch

        return SemanticSearch
    if name in ("TwoTower", "build_two_tower"):  # torch: only when asked for
        from . import encoders

        return getattr(encoders, name)
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
    "SemanticSearch",
    "TextEncoder",
    "Tokeniser",
    "TwoTower",
    "UnknownVectorsSource",
    "VectorsDownloadError",
    "VectorsError",
    "VectorsFormatError",
    "WordVectors",
    "build",
    "build_two_tower",
    "load_config",
    "load_vectors",
    "mean_pool",
]
