"""Inference backends of the encoder: the sentence-transformers model itself, or an ONNX export of it.

``torch`` runs the loaded sentence-transformers model (on a GPU under bf16/fp16 autocast). The others run
one ONNX graph exported from that same model -- its transformer, pooling, dense and normalisation modules
together, so the pooling and normalisation are the model's own -- with a CPU runtime:

- ``onnx``: ONNX Runtime, fp32;
- ``onnx-int8``: ONNX Runtime, weights quantised to int8 per channel (dynamic quantisation);
- ``openvino``: OpenVINO, which computes in bf16 on CPUs that have bf16 instructions and in fp32 elsewhere.

The graph is exported on first use with ``torch.onnx`` (no hub, no optimum) and cached next to the model,
or under ``DATA_DIR/onnx`` when the model folder is not writable, in a folder keyed by the sha256 of the
weights and of the module configuration; a second use only loads it. The folder is self-contained: the
graph, the model's own fast tokenizer (``tokenizer.json``) and ``export.json`` with what an encoder must know
(dimension, window, pooling, similarity, normalisation, weights hash). Serving loads only that folder
(:class:`recommender.encoder.ExportedEncoder`): no torch, no sentence-transformers, so an index loads in
about a second; the token ids are the model's own either way (a test compares them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recommender import config
from recommender.errors import BackendUnavailableError, InvalidParameterError

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
#: Bump when the exported graph changes for the same weights (export code, opset), so old caches are not reused.
#: 2: the folder also holds the tokenizer and the encoder facts, so it serves without the model.
EXPORT_VERSION = 2
ONNX_OPSET = 17
FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
EXPORT_INFO = "export.json"
TOKENIZER_FILE = "tokenizer.json"
_export_lock = threading.Lock()


def check_backend(name: str) -> str:
    """The backend name, validated.

    Raises:
        InvalidParameterError: not one of :data:`BACKENDS`.
    """
    if name not in BACKENDS:
        raise InvalidParameterError(f"unknown encoder backend {name!r}; choose from {', '.join(BACKENDS)}")
    return name


def default_backend(device: str | None = None) -> str:
    """The backend an index is built and queried with when none is named: torch on a GPU, else the CPU default."""
    if device is not None:
        on_gpu = str(device).startswith("cuda")
    else:
        import torch

        on_gpu = torch.cuda.is_available()
    return "torch" if on_gpu else config.DEFAULT_BACKEND


def manifest_backend(manifest: dict) -> str:
    """The backend an index was built with, which also encodes its queries (indexes from before backends were
    recorded were built with torch)."""
    return manifest.get("backend") or manifest.get("model", {}).get("backend") or "torch"


# ---- the torch backend ------------------------------------------------------------------------
class TorchRunner:
    """Embeds batches with the sentence-transformers model itself; on CUDA under bf16 (or fp16) autocast."""

    name = "torch"

    def __init__(self, model) -> None:
        self.model = model
        self.precision = "fp32"
        self._autocast = None
        if str(model.device).startswith("cuda"):
            import torch

            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            self._autocast = dtype
            self.precision = "bf16" if dtype is torch.bfloat16 else "fp16"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One batch of texts → float32 rows (the model's output; the encoder normalises)."""
        import contextlib

        import torch

        mixed = (torch.autocast(self.model.device.type, dtype=self._autocast) if self._autocast is not None
                 else contextlib.nullcontext())
        with mixed:
            vectors = self.model.encode(list(texts), batch_size=len(texts), show_progress_bar=False,
                                        convert_to_numpy=True, normalize_embeddings=False)
        return np.asarray(vectors, dtype=np.float32)


# ---- export ---------------------------------------------------------------------------------
def graph_key(model, weights_sha256: str) -> str:
    """Folder name of a model's export: the weights' hash plus a hash of what else shapes the graph."""
    modules = []
    for module in model:
        settings = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
        modules.append([type(module).__name__, settings])
    shape = json.dumps({"modules": modules, "export": EXPORT_VERSION, "opset": ONNX_OPSET}, sort_keys=True,
                       default=str)
    return f"{weights_sha256[:16]}-{hashlib.sha256(shape.encode()).hexdigest()[:8]}"


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def export_dir(model_path: str, key: str) -> Path:
    """Where the export of the model at ``model_path`` lives (an existing export wins; else the first writable
    of ``<model dir>/onnx/<key>`` and ``DATA_DIR/onnx/<key>``)."""
    candidates = []
    if Path(model_path).is_dir():
        candidates.append(Path(model_path) / "onnx" / key)
    candidates.append(config.DATA_DIR / "onnx" / key)
    for candidate in candidates:
        if (candidate / FP32_FILE).exists():
            return candidate
    for candidate in candidates:
        if _writable(candidate.parent) and _writable(candidate):
            return candidate
    raise BackendUnavailableError(f"no writable folder for the ONNX export of {model_path} (tried "
                                  + ", ".join(str(c) for c in candidates) + ")")


def _input_names(model) -> list[str]:
    """The tensor features the model's own preprocessing produces (e.g. input_ids, token_type_ids, attention_mask)."""
    import torch

    features = model.preprocess(["a b", "a"])
    return [name for name, value in features.items() if isinstance(value, torch.Tensor)]


def export_onnx(model, path: Path) -> Path:
    """Export the whole sentence-transformers model (transformer → pooling → dense → normalize) to ONNX.

    The graph takes the features of ``model.preprocess`` with dynamic batch and sequence axes and returns
    ``sentence_embedding``. Written to a temporary file and renamed, so a crash never leaves half a file.
    """
    import torch

    names = _input_names(model)

    class SentenceGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]

    # Two texts of different lengths, so padding and the attention mask are part of the traced example.
    features = model.preprocess(["an example sentence for tracing the graph", "short"])
    example = tuple(features[name].to("cpu") for name in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["sentence_embedding"] = {0: "batch"}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation notices are noise for a user
            torch.onnx.export(SentenceGraph().eval(), example, str(tmp), dynamo=False, input_names=names,
                              output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=ONNX_OPSET,
                              do_constant_folding=True)
        os.replace(tmp, path)
    except ModuleNotFoundError as exc:
        raise BackendUnavailableError(f"exporting to ONNX needs the {exc.name} package: pip install onnx") from None
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return path


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of an fp32 ONNX file (per-channel weights: cosine to fp32 ≈ 0.99 on MiniLM)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise BackendUnavailableError("the onnx-int8 backend needs onnxruntime: pip install onnxruntime") from None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs every tensor it skips on the root logger
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, target)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
    return target


def exported_graph(model, model_path: str, weights_sha256: str, backend: str, facts: dict | None = None) -> Path:
    """The ONNX file ``backend`` runs for this model, exported (and quantised) now if it is not cached yet.

    ``facts`` (the encoder's manifest facts: dimension, window, pooling…) are written into ``export.json``
    with the tokenizer, so the folder can serve queries on its own.
    """
    key = graph_key(model, weights_sha256)
    with _export_lock:
        folder = export_dir(model_path, key)
        fp32 = folder / FP32_FILE
        if not fp32.exists():
            log.warning("exporting %s to ONNX (once; cached in %s)", model_path, folder)
            export_onnx(model, fp32)
        if not (folder / EXPORT_INFO).exists():
            model.tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
            info = {"model": model_path, "weights_sha256": weights_sha256, "key": key, "opset": ONNX_OPSET,
                    "export_version": EXPORT_VERSION, "inputs": _input_names(model),
                    "pad_token": model.tokenizer.pad_token, "pad_id": model.tokenizer.pad_token_id,
                    "encoder": dict(facts or {})}
            tmp = folder / f".{EXPORT_INFO}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(info, indent=2))
            os.replace(tmp, folder / EXPORT_INFO)  # written last: its presence means the folder is complete
        if backend != "onnx-int8":
            return fp32
        int8 = folder / INT8_FILE
        if not int8.exists():
            log.warning("quantising the ONNX export to int8 (once; cached in %s)", folder)
            quantize_int8(fp32, int8)
        return int8


class TokenizerFeatures:
    """The model's own fast tokenizer (from an export folder) producing the graph's input arrays.

    Truncation and padding are set once here and never changed, so one instance is safe
    to share between threads (the transformers wrapper re-sets them on every call).
    """

    def __init__(self, folder: Path, info: dict) -> None:
        from tokenizers import Tokenizer

        self.inputs = list(info["inputs"])
        window = int(info["encoder"]["max_seq_length"])
        self.tokenizer = Tokenizer.from_file(str(Path(folder) / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length=window)
        self.tokenizer.enable_padding(pad_id=int(info["pad_id"]), pad_token=str(info["pad_token"]))
        self.offsets_tokenizer = Tokenizer.from_file(str(Path(folder) / TOKENIZER_FILE))
        self.offsets_tokenizer.no_truncation()
        self.offsets_tokenizer.no_padding()

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(list(texts))
        arrays = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                  "token_type_ids": [e.type_ids for e in encodings]}
        return {name: np.asarray(arrays[name], dtype=np.int64) for name in self.inputs}

    def offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character span of every token (no special tokens, no truncation), as the model's tokenizer gives."""
        encodings = self.offsets_tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [[tuple(span) for span in e.offsets] for e in encodings]


def read_export(folder: str | Path) -> dict:
    """The ``export.json`` of a complete export folder.

    Raises:
        BackendUnavailableError: missing, unreadable, or from another export version.
    """
    path = Path(folder) / EXPORT_INFO
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackendUnavailableError(f"no usable export in {folder}: {exc}") from None
    if info.get("export_version") != EXPORT_VERSION or not info.get("encoder"):
        raise BackendUnavailableError(f"{folder} holds an export of another version; the build exports it again")
    return info


# ---- the ONNX runtimes ----------------------------------------------------------------------
class OnnxRuntimeRunner:
    """Runs an exported graph with ONNX Runtime on the CPU (thread-safe: ``InferenceSession.run`` is).

    ``features`` turns texts into the graph's input arrays (the model's tokenizer).
    """

    def __init__(self, features, graph: Path, threads: int, name: str) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError(f"the {name} backend needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.features, self.name = features, name
        self.precision = "int8" if name == "onnx-int8" else "fp32"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        features = self.features(texts)
        return np.asarray(self.session.run(None, {k: features[k] for k in self.inputs})[0], dtype=np.float32)


class OpenVinoRunner:
    """Runs an exported graph with OpenVINO on the CPU. An infer request is not thread-safe, so every
    thread gets its own (they share the compiled model): concurrent queries do not wait for each other."""

    name = "openvino"

    def __init__(self, features, graph: Path, threads: int) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise BackendUnavailableError("the openvino backend needs openvino: pip install openvino") from None
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(graph)), "CPU",
                                           {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY"})
        hint = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.precision = hint.replace("<Type: '", "").rstrip("'>")
        self.inputs = [port.get_any_name() for port in self.compiled.inputs]
        self.features = features
        self._local = threading.local()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        features = self.features(texts)
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        output = request.infer({k: features[k] for k in self.inputs})
        return np.array(next(iter(output.values())), dtype=np.float32)


def model_features(model):
    """The sentence-transformers model's own preprocessing as a features function (for export and builds)."""
    def features(texts: Sequence[str]) -> dict[str, np.ndarray]:
        prepared = model.preprocess(list(texts))
        return {name: value.numpy().astype(np.int64, copy=False) for name, value in prepared.items()
                if hasattr(value, "numpy")}

    return features


def graph_runner(backend: str, graph: Path, features, threads: int):
    """The ONNX runtime for ``backend`` over ``graph``.

    Raises:
        BackendUnavailableError: the runtime is missing or rejects the file.
    """
    try:
        if backend == "openvino":
            return OpenVinoRunner(features, graph, threads)
        return OnnxRuntimeRunner(features, graph, threads, backend)
    except BackendUnavailableError:
        raise
    except Exception as exc:  # a corrupt cached file or a runtime that rejects the graph
        raise BackendUnavailableError(f"cannot load {graph} with the {backend} backend: {exc}; delete the file"
                                      " to export it again") from exc


def make_runner(backend: str, model, model_path: str, weights_sha256: str, threads: int | None = None,
                facts: dict | None = None):
    """A runner with ``embed(texts) -> float32 rows`` for ``backend`` (exporting the model first if needed).

    Args:
        backend: one of :data:`BACKENDS`.
        model: the loaded ``SentenceTransformer`` (its tokenizer is used by every backend).
        model_path: its directory or hub name (where the export is cached).
        weights_sha256: hash of its weights (the cache key).
        threads: CPU threads of the ONNX runtimes (default: torch's current setting, which
            :func:`recommender.search.set_serving_threads` pins for serving).
        facts: what ``export.json`` records about the encoder (see :func:`exported_graph`).

    Raises:
        InvalidParameterError: unknown backend.
        BackendUnavailableError: the backend's package is not installed or the export cannot be written.
    """
    check_backend(backend)
    if backend == "torch":
        return TorchRunner(model)
    if str(model.device).startswith("cuda"):
        log.warning("the %s backend runs on the CPU; use --backend torch to encode on the GPU", backend)
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    graph = exported_graph(model, model_path, weights_sha256, backend, facts)
    runner = graph_runner(backend, graph, model_features(model), threads)
    runner.export_dir = str(graph.parent)
    return runner
