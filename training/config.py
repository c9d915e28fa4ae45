"""One TOML file describes a GPL run; this module reads and validates it.

Defaults follow the GPL paper (Wang et al., "GPL: Generative Pseudo Labeling for Unsupervised
Domain Adaptation of Dense Retrieval", NAACL 2022, arXiv:2112.07577): T5 query generator
``BeIR/query-gen-msmarco-t5-base-v1`` writing 3 queries per passage, hard negatives from
``msmarco-distilbert-base-v3`` and ``msmarco-MiniLM-L-6-v3``, margins from
``cross-encoder/ms-marco-MiniLM-L-6-v2``, MarginMSE with batch 32, learning rate 2e-5,
1,000 warm-up steps and 350-token inputs. The paper trains 140k steps; we train far fewer
and keep the checkpoint with the best held-out score (see docs/training.md).

The base model keeps its own pooling and similarity (CLS + dot product for TAS-B) unless
the file says otherwise. Every problem is reported as one line naming the key.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from recommender import config as rconfig
from training.errors import ConfigError
from training.tiny import tiny_kind_error

POOLINGS = ("auto", "cls", "mean", "max")
SIMILARITIES = ("auto", "dot", "cosine")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
STAGES = ("corpus", "generate", "mine", "label", "train", "export")

#: Base models published without (complete) sentence-transformers settings, and what they were trained
#: with: one table for training and for ``recommender.encoder`` (see ``recommender.config``).
KNOWN_BASE_MODELS = rconfig.KNOWN_MODEL_SETTINGS


@dataclass(frozen=True)
class CorpusConfig:
    """Where the passages come from and how many to use."""

    db: str = str(rconfig.DEFAULT_DB)
    anime_ids: tuple[int, ...] = ()     # only reviews of these anime (empty: all)
    sources: tuple[str, ...] = ()       # only reviews from these sources, e.g. "mal" (empty: all)
    min_chars: int = 100                # skip reviews shorter than this
    sample: int = 0                     # at most this many passages, a deterministic sample by seed (0: all)
    eval_reviews: int = 4000            # reviews of whole held-out anime used for the known-item evaluation (0: none)
    eval_per_anime: int = 20            # at most this many of each held-out anime (half become queries)


@dataclass(frozen=True)
class ModelsConfig:
    """The five models of GPL."""

    base: str = rconfig.TASB_MODEL
    pooling: str = "auto"               # auto = the model's own (see KNOWN_BASE_MODELS)
    similarity: str = "auto"            # auto = the model's own
    generator: str = "BeIR/query-gen-msmarco-t5-base-v1"
    retrievers: tuple[str, ...] = ("sentence-transformers/msmarco-distilbert-base-v3",
                                   "sentence-transformers/msmarco-MiniLM-L-6-v3")
    cross_encoder: str = "cross-encoder/ms-marco-MiniLM-L-6-v2"


@dataclass(frozen=True)
class GenerateConfig:
    """T5 query generation."""

    queries_per_passage: int = 3
    max_passage_tokens: int = 350       # generator input is cut here
    max_query_tokens: int = 64
    top_p: float = 0.95
    top_k: int = 25
    batch_size: int = 128               # passages per generate() call
    save_every: int = 2048              # passages per saved shard (the most a killed run loses)


@dataclass(frozen=True)
class MineConfig:
    """Hard negatives from the retrievers."""

    negatives_per_query: int = 1        # training triplets per generated query
    top_k: int = 50                     # each retriever's candidates per query
    batch_size: int = 256               # texts per encode batch


@dataclass(frozen=True)
class LabelConfig:
    """Cross-encoder margins."""

    batch_size: int = 256               # pairs per forward pass
    save_every: int = 50_000            # triplets per saved shard


@dataclass(frozen=True)
class TrainConfig:
    """MarginMSE training of the bi-encoder."""

    steps: int = 10_000
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_steps: int = 1000
    weight_decay: float = 0.01
    max_seq_length: int = 350           # also the exported model's, hence the index's chunk length
    precision: str = "auto"             # auto = bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU
    eval_every: int = 1000              # steps between known-item evaluations (and checkpoints)
    eval_queries: int = 0               # cap on the selection queries asked at each evaluation (0: all of them)
    keep_checkpoints: int = 2           # newest checkpoints kept besides the best


@dataclass(frozen=True)
class ExportConfig:
    """Where the adapted model goes."""

    name: str = ""                      # default: the run name
    dir: str = ""                       # default: data/models/<name>


@dataclass(frozen=True)
class RunConfig:
    """A whole GPL run."""

    name: str = "gpl"
    seed: int = 13
    output_dir: str = ""                # run directory; default: data/gpl/<name>
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    mine: MineConfig = field(default_factory=MineConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    # ---- derived --------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else rconfig.DATA_DIR / "gpl" / self.name

    @property
    def model_name(self) -> str:
        return self.export.name or self.name

    @property
    def export_dir(self) -> Path:
        return Path(self.export.dir) if self.export.dir else rconfig.MODELS_DIR / self.model_name

    def base_pooling_and_similarity(self) -> tuple[str, str]:
        """Pooling and similarity to train with: explicit settings win, then the known-model table.

        ``"auto"`` left in the result means "whatever the loaded model already has".
        """
        known = KNOWN_BASE_MODELS.get(self.models.base, ("auto", "auto"))
        pooling = self.models.pooling if self.models.pooling != "auto" else known[0]
        similarity = self.models.similarity if self.models.similarity != "auto" else known[1]
        return pooling, similarity

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def stage_settings(self, stage: str) -> dict[str, Any]:
        """Every setting that shapes ``stage``'s output, including those of the stages before it, as flat keys.

        Changing the number of training steps therefore keeps the generated queries, while
        changing the generator redoes generation and everything after it. Shard sizes are
        settings: each shard has its own random seed, so they shape what is generated.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        parts: dict[str, Any] = {"seed": self.seed}
        for name in STAGES[: STAGES.index(stage) + 1]:
            parts.update(_flatten(json.loads(json.dumps(_STAGE_KEYS[name](self), default=str))))
        return parts

    def stage_hash(self, stage: str) -> str:
        """Hash of :meth:`stage_settings`: what a stage's done-marker records."""
        text = json.dumps(self.stage_settings(stage), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_overrides(self, *, max_steps: int | None = None, sample: int | None = None) -> RunConfig:
        """A copy with the CLI's ``--max-steps``/``--sample`` applied (validated like the file)."""
        run = self
        if max_steps is not None:
            _check_int("train.steps", max_steps, minimum=1)
            run = replace(run, train=replace(run.train, steps=max_steps))
        if sample is not None:
            _check_int("corpus.sample", sample, minimum=0)
            run = replace(run, corpus=replace(run.corpus, sample=sample))
        return run


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` for every setting that differs (a missing key shows as None)."""
    return {key: (old.get(key), new.get(key)) for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}


# Keys are dotted like the TOML file, so a refusal names the setting the way the user wrote it.
_STAGE_KEYS = {
    "corpus": lambda c: {"corpus": asdict(c.corpus), "models": {"base": c.models.base},
                         "train": {"max_seq_length": c.train.max_seq_length}},
    "generate": lambda c: {"models": {"generator": c.models.generator}, "generate": {
        k: v for k, v in asdict(c.generate).items() if k != "batch_size"}},
    "mine": lambda c: {"models": {"retrievers": list(c.models.retrievers)}, "mine": {
        k: v for k, v in asdict(c.mine).items() if k != "batch_size"}},
    "label": lambda c: {"models": {"cross_encoder": c.models.cross_encoder},
                        "label": {"save_every": c.label.save_every}},
    "train": lambda c: {"models": {"base": c.models.base, "pooling": c.models.pooling,
                                   "similarity": c.models.similarity},
                        "train": {k: v for k, v in asdict(c.train).items() if k != "keep_checkpoints"}},
    "export": lambda c: {"export": {"name": c.model_name}},
}

_SECTIONS = {
    "corpus": CorpusConfig, "models": ModelsConfig, "generate": GenerateConfig, "mine": MineConfig,
    "label": LabelConfig, "train": TrainConfig, "export": ExportConfig,
}
_TOP_KEYS = {"name", "seed", "output_dir"}


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run configuration file.

    Raises:
        ConfigError: the file is missing or not TOML, a key is unknown, or a value is invalid.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Build a validated :class:`RunConfig` from parsed TOML (missing keys take their defaults).

    Raises:
        ConfigError: unknown key or invalid value; the message names the key.
    """
    top: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table, got {value!r}")
            sections[key] = _section(key, _SECTIONS[key], value)
        elif key in _TOP_KEYS:
            top[key] = value
        else:
            raise ConfigError(f"unknown key {key!r} (known: {', '.join(sorted(_TOP_KEYS | set(_SECTIONS)))})")
    run = RunConfig(**top, **sections)
    validate(run)
    return run


def _section(name: str, cls: type, values: dict[str, Any]):
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key '{name}.{key}' (known: {', '.join(known)})")
        default = known[key].default
        if isinstance(default, tuple):
            if not isinstance(value, list):
                raise ConfigError(f"{name}.{key} must be a list, got {value!r}")
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _check_int(key: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key} must be <= {maximum}, got {value}")


def _check_float(key: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ConfigError(f"{key} must be {bound} and <= {high}, got {value}")


def _check_str(key: str, value: Any, choices: tuple[str, ...] | None = None, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def validate(run: RunConfig) -> None:
    """Check every value of a run configuration.

    Raises:
        ConfigError: the first invalid value, as ``<section>.<key> must be …, got …``.
    """
    _check_str("name", run.name)
    if "/" in run.name or run.name.startswith("."):
        raise ConfigError(f"name must be a plain directory name, got {run.name!r}")
    _check_int("seed", run.seed, minimum=0)
    _check_str("output_dir", run.output_dir, allow_empty=True)

    c = run.corpus
    _check_str("corpus.db", c.db)
    for i, anime_id in enumerate(c.anime_ids):
        _check_int(f"corpus.anime_ids[{i}]", anime_id, minimum=1)
    for i, source in enumerate(c.sources):
        _check_str(f"corpus.sources[{i}]", source)
    _check_int("corpus.min_chars", c.min_chars, minimum=0)
    _check_int("corpus.sample", c.sample, minimum=0)
    _check_int("corpus.eval_reviews", c.eval_reviews, minimum=0)
    _check_int("corpus.eval_per_anime", c.eval_per_anime, minimum=2)

    m = run.models
    for key in ("base", "generator", "cross_encoder"):
        _check_str(f"models.{key}", getattr(m, key))
    _check_str("models.pooling", m.pooling, POOLINGS)
    _check_str("models.similarity", m.similarity, SIMILARITIES)
    if not m.retrievers:
        raise ConfigError("models.retrievers must name at least one retriever")
    for i, retriever in enumerate(m.retrievers):
        _check_str(f"models.retrievers[{i}]", retriever)
    named = [("models.base", m.base), ("models.generator", m.generator), ("models.cross_encoder", m.cross_encoder)]
    for key, name in named + [(f"models.retrievers[{i}]", r) for i, r in enumerate(m.retrievers)]:
        if problem := tiny_kind_error(name):
            raise ConfigError(f"{key}: {problem}")

    g = run.generate
    _check_int("generate.queries_per_passage", g.queries_per_passage, minimum=1, maximum=50)
    _check_int("generate.max_passage_tokens", g.max_passage_tokens, minimum=8)
    _check_int("generate.max_query_tokens", g.max_query_tokens, minimum=2)
    _check_float("generate.top_p", g.top_p, 0.0, 1.0, low_open=True)
    _check_int("generate.top_k", g.top_k, minimum=0)
    _check_int("generate.batch_size", g.batch_size, minimum=1)
    _check_int("generate.save_every", g.save_every, minimum=1)

    _check_int("mine.negatives_per_query", run.mine.negatives_per_query, minimum=1)
    _check_int("mine.top_k", run.mine.top_k, minimum=1)
    _check_int("mine.batch_size", run.mine.batch_size, minimum=1)
    if run.mine.negatives_per_query > run.mine.top_k:
        raise ConfigError(f"mine.negatives_per_query ({run.mine.negatives_per_query}) must be <= mine.top_k "
                          f"({run.mine.top_k})")

    _check_int("label.batch_size", run.label.batch_size, minimum=1)
    _check_int("label.save_every", run.label.save_every, minimum=1)

    t = run.train
    _check_int("train.steps", t.steps, minimum=1)
    _check_int("train.batch_size", t.batch_size, minimum=1)
    _check_float("train.learning_rate", t.learning_rate, 0.0, 1.0, low_open=True)
    _check_int("train.warmup_steps", t.warmup_steps, minimum=0)
    _check_float("train.weight_decay", t.weight_decay, 0.0, 1.0)
    _check_int("train.max_seq_length", t.max_seq_length, minimum=16, maximum=8192)
    _check_str("train.precision", t.precision, PRECISIONS)
    _check_int("train.eval_every", t.eval_every, minimum=1)
    _check_int("train.eval_queries", t.eval_queries, minimum=0)
    _check_int("train.keep_checkpoints", t.keep_checkpoints, minimum=1)

    _check_str("export.name", run.export.name, allow_empty=True)
    if "/" in run.export.name:
        raise ConfigError(f"export.name must be a plain directory name, got {run.export.name!r}")
    _check_str("export.dir", run.export.dir, allow_empty=True)
