"""Where and how the GPL models run: device and precision, name resolution, loading with the right settings.

Training code is the one place besides ``recommender.encoder`` that loads sentence-transformers
models; the T5 generator and the cross-encoder are loaded only here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from recommender.encoder import Encoder, resolve_model
from recommender.errors import ModelNotFoundError
from training.config import RunConfig
from training.errors import StageError
from training.tiny import is_tiny, resolve_tiny

log = logging.getLogger(__name__)


# ---- hardware ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hardware:
    """Where the models run and in which precision."""

    device: str        # "cuda" or "cpu"
    precision: str     # "bf16", "fp16" or "fp32"

    @property
    def dtype(self):
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.precision]

    @property
    def inference_dtype(self):
        """Precision for generation/encoding: T5 overflows in fp16, so fp16 runs mean fp32 for the generator."""
        import torch

        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def describe(self) -> str:
        if self.device == "cuda":
            import torch

            return f"{torch.cuda.get_device_name(0)} ({self.precision})"
        return f"CPU ({self.precision})"


def resolve_hardware(precision: str = "auto", device: str | None = None) -> Hardware:
    """Pick the device (CUDA when available) and the precision the config asks for, where the device has it."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        if precision in ("bf16", "fp16"):
            log.warning("precision %s needs a GPU; using fp32 on the CPU", precision)
        return Hardware("cpu", "fp32")
    bf16 = torch.cuda.is_bf16_supported()
    if precision == "auto":
        precision = "bf16" if bf16 else "fp16"
    elif precision == "bf16" and not bf16:
        log.warning("this GPU has no bf16; using fp16")
        precision = "fp16"
    return Hardware(device, precision)


# ---- models ---------------------------------------------------------------------------------
def resolve_name(name: str, run: RunConfig) -> str:
    """A model name from the config as something loadable: ``tiny:*`` built on demand, local dirs resolved."""
    if is_tiny(name):
        return resolve_tiny(name, run.run_dir / "tiny-models")
    try:
        return resolve_model(name)
    except ModelNotFoundError as exc:
        raise StageError(str(exc)) from None


def _load_failed(kind: str, name: str, exc: Exception) -> StageError:
    hint = "" if Path(name).exists() else " (a hub model needs internet once, or a local copy: give its directory)"
    return StageError(f"cannot load the {kind} {name!r}: {exc.__class__.__name__}: {exc}{hint}")


def load_bi_encoder(name: str, run: RunConfig, hw: Hardware, *, for_training: bool = False):
    """A SentenceTransformer on ``hw``; for training, with the configured pooling, similarity and length.

    Pooling and similarity default to the base model's own (``KNOWN_BASE_MODELS`` fills in
    models published without a sentence-transformers config, such as TAS-B: CLS + dot).
    """
    from sentence_transformers import SentenceTransformer

    path = resolve_name(name, run)
    try:
        model = SentenceTransformer(path, device=hw.device, local_files_only=Path(path).is_dir())
    except Exception as exc:  # the hub client raises many types; all mean "cannot load"
        raise _load_failed("bi-encoder", name, exc) from exc
    if not for_training:
        if hw.device == "cuda" and hw.precision != "fp32":
            model.to(hw.dtype)
        return model
    pooling, similarity = run.base_pooling_and_similarity()
    if pooling != "auto":
        set_pooling(model, pooling)
    # An explicit similarity travels with the saved model, so the index never has to guess it.
    model.similarity_fn_name = similarity if similarity != "auto" else Encoder(model, name, path).similarity
    limit = _position_limit(model)
    if limit is not None and run.train.max_seq_length > limit:
        raise StageError(f"train.max_seq_length {run.train.max_seq_length} is longer than {name}'s "
                         f"{limit} positions")
    model.max_seq_length = run.train.max_seq_length
    return model


def set_pooling(model, mode: str) -> None:
    """Replace a SentenceTransformer's pooling layer by one of ``mode`` (``cls``, ``mean``, ``max``)."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    for key, module in model._modules.items():
        if type(module).__name__ == "Pooling":
            current = getattr(module, "pooling_mode", None)
            if current != mode:
                model._modules[key] = Pooling(module.get_embedding_dimension(), mode)
            return
    raise StageError("the base model has no pooling layer to set")


def _position_limit(model) -> int | None:
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    return int(limit) if limit else None


def load_generator(run: RunConfig, hw: Hardware):
    """The T5 query generator and its tokenizer."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    path = resolve_name(run.models.generator, run)
    local = Path(path).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=local, dtype=hw.inference_dtype)
    except Exception as exc:
        raise _load_failed("query generator", run.models.generator, exc) from exc
    return model.to(hw.device).eval(), tokenizer


def load_cross_encoder(run: RunConfig, hw: Hardware):
    """The cross-encoder that labels the margins, cut at the training length like GPL."""
    from sentence_transformers import CrossEncoder

    path = resolve_name(run.models.cross_encoder, run)
    try:
        model = CrossEncoder(path, device=hw.device, max_length=run.train.max_seq_length,
                             local_files_only=Path(path).is_dir())
    except Exception as exc:
        raise _load_failed("cross-encoder", run.models.cross_encoder, exc) from exc
    if hw.device == "cuda" and hw.precision != "fp32":
        model.to(hw.dtype)
    return model
