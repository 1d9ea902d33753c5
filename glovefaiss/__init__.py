"""glovefaiss: semantic indexes from static word vectors, built and served on CPU."""

__version__ = "0.1.0"

from .config import Config, load_config
from .errors import (
    ConfigError,
    CorpusError,
    GloveFaissError,
    IndexDirError,
    ModelError,
    OutputError,
    QueryError,
    UnknownVectorsSource,
    VectorsDownloadError,
    VectorsError,
    VectorsFormatError,
)
from .index.search import Index, SearchResult
from .text.tokeniser import Tokeniser
from .tower.encoder import TextEncoder
from .tower.pooling import mean_pool


def __getattr__(name):
    # Heavy or optional pieces load on first use, so `import glovefaiss` stays light and torch-free.
    if name == "build":
        from .index.build import build

        return build
    if name in ("load_vectors", "WordVectors"):
        from .vectors import sources as vectors

        return getattr(vectors, name)
    if name == "GloVeSearch":
        from .index.memory import GloVeSearch

        return GloVeSearch
    if name == "SemanticSearch":
        from .train.search import SemanticSearch

        return SemanticSearch
    if name in ("TwoTower", "build_two_tower", "AveragePoolingTower"):  # torch: only when asked for
        from .train import towers

        return getattr(towers, name)
    if name in ("GloVeEmbedding", "REGISTRY"):
        from .train import embeddings

        return getattr(embeddings, name)
    raise AttributeError(f"module 'glovefaiss' has no attribute {name!r}")


__all__ = [
    "__version__",
    "AveragePoolingTower",
    "Config",
    "ConfigError",
    "CorpusError",
    "GloVeEmbedding",
    "GloVeSearch",
    "GloveFaissError",
    "Index",
    "IndexDirError",
    "ModelError",
    "OutputError",
    "QueryError",
    "REGISTRY",
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
