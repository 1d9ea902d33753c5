"""YAML configuration with ``extends``, validated into dataclasses."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENGINES = ("local", "ray")  # where builds, additions and batch queries run (glovefaiss.engine)


def check_engine(name: str, address: str | None = None, workers: int | None = None) -> None:
    """:class:`ConfigError` for an unknown engine, or Ray's options (``--ray-address``,
    ``--workers``) given without Ray."""
    if name not in ENGINES:
        raise ConfigError(f"unknown engine '{name}'; valid engines: {', '.join(ENGINES)}")
    if name == "local" and (address is not None or workers is not None):
        raise ConfigError(f"{'--ray-address' if address is not None else '--workers'} needs --engine ray")


@dataclass(frozen=True)
class TokeniserConfig:
    """Word-level tokenisation rules, shared by documents and queries."""

    type: str = "word"
    lowercase: bool = True
    strip_punctuation: bool = True
    max_len: int | None = None
    contractions: bool = False  # "n't" -> " not" before splitting ("don't" -> "do not")
    numbers: bool = False  # keep "3.5" and "1,000" whole: "." or "," between digits is not a separator


@dataclass(frozen=True)
class EmbeddingConfig:
    """Which word vectors feed the tower, and whether training may change them."""

    type: str = "glove"
    model_name: str = "glove-wiki-gigaword-50"
    dim: int | None = None
    trainable: bool = False


@dataclass(frozen=True)
class EncoderConfig:
    """Tower architecture: average pooling, with an optional projection to ``hidden_dim``."""

    arch: str = "avg_pool"
    hidden_dim: int | None = None
    tied_weights: bool = True
    dropout: float = 0.0


@dataclass(frozen=True)
class PoolingConfig:
    """How word vectors are combined: plain mean, or SIF weights; optional common-component removal.

    ``weighting: sif`` gives word ``w`` the weight ``sif_a / (sif_a + p(w))`` and a text the vector
    ``sum(weight * vector) / n_known_words`` (as SIF and fse). ``p(w)`` comes from ``frequencies``:
    ``wordfreq`` (English; ``wordfreq:LANG`` for another language), ``corpus`` (counts in the
    corpus being indexed) or ``rank`` (Zipf: ``p(w)`` proportional to 1 / the word's row number in
    the vector file, frequency-ordered for GloVe; no frequency list needed). ``components`` > 0 removes the projection on the top principal
    components of ``components_sample`` document vectors (a seeded uniform sample).
    """

    weighting: str = "mean"
    sif_a: float = 0.001
    frequencies: str = "wordfreq"
    components: int = 0
    components_sample: int = 100_000


@dataclass(frozen=True)
class LossConfig:
    type: str = "triplet"
    margin: float = 0.2
    temperature: float = 0.05
    spread: float = 0.0  # scored pairs: weight of the spread-out term (losses.spread_penalty); 0 = off
    symmetric: bool = False  # contrastive: average the query->document and document->query softmaxes


@dataclass(frozen=True)
class OptimizerConfig:
    type: str = "adam"
    lr: float = 0.001
    weight_decay: float = 0.0
    ema: float = 0.0  # decay of a moving average of the weights, validated and kept; 0 = off


@dataclass(frozen=True)
class BuildConfig:
    """How ``glovefaiss build`` reads the corpus and lays out its output."""

    id_column: str = "id"
    text_column: str = "text"
    batch_size: int = 16384
    shard_rows: int = 1_000_000
    row_group_rows: int = 16384
    store_text: bool = True
    index: str = "auto"
    index_key: str | None = None
    max_index_memory: str | None = None
    target_recall: float = 0.95
    tune_k: int = 10
    tune_queries: int = 1000
    tuning_queries: str | None = None
    auto_latency_ms: float = 0.5
    threads: int | None = None
    columns: tuple[str, ...] = ()  # extra corpus columns stored with each document and returned in hits
    engine: str = "local"  # "local" (this process) or "ray" (see docs/distributed.md)
    ray_address: str | None = None  # None: a Ray instance of this machine; "auto" or "ray://host:port": join one
    workers: int | None = None  # Ray workers (default: one per CPU of the cluster)
    adapt: bool = False  # train a self-supervised tower on the corpus first, build through it (train.adapt)


@dataclass(frozen=True)
class SelfSupervisedConfig:
    """Pseudo (query, positive) pairs from an unlabelled corpus, and vocabulary growth (train.selfsup).

    Each epoch every training document gets one fresh pair: the query is a random contiguous
    span of ``span_min``..``span_max`` known tokens (at most ``max_fraction`` of the document),
    or its title with probability ``p_title``; the positive is the rest of the document.
    ``grow_min_count`` > 0 adds corpus words the vectors lack, seen at least that often, as new
    rows started at the mean vector of the known words within ``grow_window`` positions.
    """

    span_min: int = 5
    span_max: int = 30
    max_fraction: float = 0.5
    p_title: float = 0.2
    validation_documents: int = 500  # held out of the pairs; their span queries choose the epoch
    validation_queries: int = 4  # span queries per held-out document
    eval_every: int = 3  # validate every this many epochs (and after the last)
    grow_min_count: int = 2  # 0: no growth
    grow_window: int = 5
    max_documents: int = 200_000  # build --adapt trains on a seeded sample of at most this many


@dataclass(frozen=True)
class TrainConfig:
    objective: str = "supervised"  # supervised: labelled data; self_supervised: an unlabelled corpus


@dataclass(frozen=True)
class Config:
    tokeniser: TokeniserConfig = field(default_factory=TokeniserConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    self_supervised: SelfSupervisedConfig = field(default_factory=SelfSupervisedConfig)
    batch_size: int = 64
    epochs: int = 5
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists of names as lists), as a manifest holds them."""
        return dataclasses.asdict(self, dict_factory=lambda items: {k: list(v) if isinstance(v, tuple) else v
                                                                    for k, v in items})

    def replace(self, overrides: dict[str, Any]) -> Config:
        """Return a copy with dotted-key overrides (``{"build.batch_size": 10}``); None values are ignored."""
        nested: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            node = nested
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return from_dict(_merge(self.to_dict(), nested), origin="overrides")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _check_type(value: Any, tp: Any, where: str, origin: str) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple:  # a list of names; YAML may also give "a,b"
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(v, str) and v for v in items):
            return tuple(items)
        raise ConfigError(f"{origin}: '{where}' must be a list of names, got {value!r}")
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{origin}: '{where}' must not be empty")
    wanted = [a for a in args if a is not type(None)] or [tp]
    for t in wanted:
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t in (bool, str) and isinstance(value, t):
            return value
    names = " or ".join(getattr(t, "__name__", str(t)) for t in wanted)
    raise ConfigError(f"{origin}: '{where}' must be {names}, got {value!r}")


# Bounds of numbers a config file may set (the CLI's options have the same ranges): (low, high), None: open.
RANGES = {
    "build.target_recall": (0, 1), "build.batch_size": (1, None), "build.shard_rows": (1, None),
    "build.row_group_rows": (1, None), "build.threads": (1, None), "build.tune_k": (1, None),
    "build.tune_queries": (1, None), "build.auto_latency_ms": (0, None), "build.workers": (1, None),
    "tokeniser.max_len": (1, None),
}


def _check_range(value: Any, where: str, origin: str) -> None:
    if where not in RANGES or value is None:
        return
    low, high = RANGES[where]
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{origin}: '{where}' must be {bound}, got {value!r}")


def _build(cls: type, data: Any, prefix: str, origin: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: '{prefix.rstrip('.') or 'config'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key '{prefix}{unknown[0]}'; valid keys here: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.", origin)
        else:
            kwargs[name] = _check_type(value, tp, prefix + name, origin)
            _check_range(kwargs[name], prefix + name, origin)
    return cls(**kwargs)


def from_dict(data: dict[str, Any], origin: str = "config") -> Config:
    """Validate a plain mapping (as parsed from YAML) into a Config."""
    return _build(Config, data, "", origin)


def _read_yaml(path: Path, seen: tuple[Path, ...]) -> dict:
    import yaml

    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'extends' loops back to itself")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if seen:
            raise ConfigError(f"config file not found: {path} (named by 'extends' in {seen[-1]}; "
                              "copy it beside that file or correct the name)") from None
        raise ConfigError(f"config file not found: {path}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'extends' must be a file name")
    return _merge(_read_yaml(path.parent / parent, seen + (path,)), data)


def load_config(path: str | Path | None = None) -> Config:
    """Load a YAML config (following ``extends`` relative to its file); None gives the defaults."""
    if path is None:
        return Config()
    return from_dict(_read_yaml(Path(path), ()), origin=str(path))
