"""Exception types raised by the library; the CLI turns each into a one-line message."""


class GloveFaissError(Exception):
    """Base class of every error glovefaiss raises on purpose."""


class ConfigError(GloveFaissError):
    """A configuration file or value is invalid."""


class DataError(ConfigError):
    """Training, validation or evaluation data is missing or malformed (the user's input is wrong)."""


class VectorsError(GloveFaissError):
    """Word vectors could not be resolved or read."""


class UnknownVectorsSource(VectorsError):
    """The vectors source is neither a known name nor an existing path."""


class VectorsFormatError(VectorsError):
    """A vectors file is not in any format we can read."""


class VectorsDownloadError(VectorsError):
    """A named vectors model is not cached and could not be downloaded."""


class CorpusError(GloveFaissError):
    """The input corpus is missing, unreadable or malformed."""


class IndexDirError(GloveFaissError):
    """An index directory is missing, incomplete, corrupt or not ours."""


class QueryError(GloveFaissError):
    """A query or query file is invalid."""


class ModelError(GloveFaissError):
    """A trained model directory is invalid or does not match an index."""


class ServeError(GloveFaissError):
    """The HTTP service cannot start: a missing extra, a bad name or limit."""


class OutputError(GloveFaissError):
    """An output the user named cannot be written, or cannot hold the results (TREC and spaces)."""


class EngineError(GloveFaissError):
    """An execution engine (``--engine ray``) is missing, unreachable or failed."""
