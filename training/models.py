"""Where and how the GPL models run: device and precision, name resolution, loading with the right settings.

Training code is the one place besides ``recommender.encoder`` that loads sentence-transformers
models; the T5 generator and the cross-encoder are loaded only here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from recommender.config import usable_cores
from recommender.encoder import Encoder, resolve_model, set_pooling
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
    if pooling != "auto" and not set_pooling(model, pooling):
        raise StageError(f"{name} has no pooling layer to set to {pooling!r}")
    # An explicit similarity travels with the saved model, so the index never has to guess it.
    model.similarity_fn_name = similarity if similarity != "auto" else Encoder(model, name, path).similarity
    limit = _position_limit(model)
    if limit is not None and run.train.max_seq_length > limit:
        raise StageError(f"train.max_seq_length {run.train.max_seq_length} is longer than {name}'s "
                         f"{limit} positions")
    model.max_seq_length = run.train.max_seq_length
    return model


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


#: The longest (query, passage) pair the cross-encoder reads, as GPL lets it (the model's own limit, at most this).
PAIR_TOKENS = 512


def load_cross_encoder(run: RunConfig, hw: Hardware):
    """The cross-encoder that labels the margins.

    GPL cuts the query and the passage to the training length *each* (see
    :func:`clip_to_tokens`) and lets the pair be as long as the cross-encoder reads, up to
    512 tokens; a single limit of 350 on the pair would cut the passages' ends off.
    """
    from sentence_transformers import CrossEncoder

    path = resolve_name(run.models.cross_encoder, run)
    try:
        model = CrossEncoder(path, device=hw.device, local_files_only=Path(path).is_dir())
    except Exception as exc:
        raise _load_failed("cross-encoder", run.models.cross_encoder, exc) from exc
    limits = [PAIR_TOKENS, _position_limit(model) or PAIR_TOKENS]
    if isinstance(model.max_seq_length, int) and model.max_seq_length > 0:
        limits.append(model.max_seq_length)
    model.max_seq_length = min(limits)
    if hw.device == "cuda" and hw.precision != "fp32":
        model.to(hw.dtype)
    return model


def clip_to_tokens(tokenizer, texts: list[str], max_tokens: int) -> list[str]:
    """Each text cut after its first ``max_tokens`` tokens (special tokens not counted), at the end of a token."""
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                        return_attention_mask=False, return_token_type_ids=False, truncation=False, verbose=False)
    return [text if len(spans) <= max_tokens else text[: spans[max_tokens - 1][1]]
            for text, spans in zip(texts, encoded["offset_mapping"], strict=True)]


def dataloader_workers(device: str, cpus: int | None = None, processes: int = 1) -> int:
    """Tokenizing workers per training process: on a GPU, the cores each process has besides its own, at most 8.

    On the CPU the cores are busy training, so batches are prepared in the main process (0).
    """
    if device != "cuda":
        return 0
    cpus = usable_cores() if cpus is None else cpus
    return max(0, min(8, cpus // max(1, processes) - 1))


def mining_devices(device: str, gpus: int | None = None) -> list[str] | bool:
    """What ``mine_hard_negatives(use_multi_process=...)`` gets: every GPU when there are several, else False."""
    if device != "cuda":
        return False
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    return [f"cuda:{i}" for i in range(gpus)] if gpus > 1 else False
