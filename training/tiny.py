"""Random models built offline in seconds: tiny ones for tests and quick runs, production-shaped ones for benchmarks.

* ``tiny:t5``, ``tiny:cross-encoder``, ``tiny:bi-encoder``: 2-layer, 32-wide models with a
  WordPiece vocabulary of characters and a few hundred words written here, so any English
  text tokenizes. Their outputs are meaningless (a random T5 writes word salad), which is
  what a pipeline test needs: the shapes, files and resumption logic are real, the quality is not.
* ``tiny:t5-base``, ``tiny:cross-encoder-l6``, ``tiny:bi-encoder-base``: random weights in the
  shapes of the production models (T5-base generator, MiniLM-L6 cross-encoder, 6-layer
  768-wide DistilBERT-sized bi-encoder with CLS pooling and dot product), with the BERT
  uncased vocabulary of the packaged all-MiniLM-L6-v2 when it is installed. They cost what the
  real models cost per token, so throughput measured with them stands for the real run on
  the same hardware without needing the model hub.

A config may name any of these; :func:`resolve_tiny` builds the model once under a cache
directory and returns its path.
"""

from __future__ import annotations

import shutil
import string
from pathlib import Path

TINY_PREFIX = "tiny:"

_WORDS = """
what which who how why when where is are was were does do did can could should would will the a an of in on
to for with about from by at as and or but not no it its this that these those there their they them he she
his her i you we me my your our anime series show episode episodes season arc story plot ending opening music
soundtrack voice acting animation art studio character characters protagonist villain hero heroine cast
romance love comedy drama action horror mystery thriller slice life fantasy science fiction space robot mecha
magic school student students teacher club sports team baseball soccer tennis swimming racing idol band
family friends friendship war battle fight fights sword ninja pirate detective crime murder police samurai
ghost demon vampire zombie monster god gods dragon world worlds time travel future past city village island
sea ocean sky train food cooking restaurant cafe game games player players virtual reality dream dreams
memory memories death life lives human humans power powers strong weak good bad best worst great boring
slow fast funny sad dark light happy lonely beautiful ugly cute scary serious silly deep shallow long short
first last new old young review reviews recommend recommended watch watched watching enjoy enjoyed like liked
hate hated feel feels felt think thought people person girl girls boy boys man woman men women king queen
prince princess knight knights country kingdom emperor empire revenge betrayal tragedy hope despair growth
rival rivals mentor journey adventure quest treasure mystery secret secrets truth lie lies twist twists
""".split()

#: (hidden, layers, heads, feed-forward) of the BERT-style models.
_BERT_SHAPES = {
    "cross-encoder": (32, 2, 2, 64),
    "bi-encoder": (32, 2, 2, 64),
    "cross-encoder-l6": (384, 6, 12, 1536),    # cross-encoder/ms-marco-MiniLM-L-6-v2
    "bi-encoder-base": (768, 6, 12, 3072),     # DistilBERT-base (TAS-B, msmarco-distilbert-base-v3)
}
#: (d_model, layers, heads, d_kv, d_ff) of the T5 models.
_T5_SHAPES = {"t5": (32, 2, 4, 8, 64), "t5-base": (768, 12, 12, 64, 3072)}
_REAL_VOCAB_KINDS = {"t5-base", "cross-encoder-l6", "bi-encoder-base"}
TINY_KINDS = ("t5", "cross-encoder", "bi-encoder")
SHAPED_KINDS = ("t5-base", "cross-encoder-l6", "bi-encoder-base")


def tiny_vocab() -> list[str]:
    """Special tokens first (T5's ids: pad 0, eos 1, unk 2; BERT's names after), then characters and words."""
    chars = list(string.ascii_lowercase + string.digits + ".,!?'-;:\"()&/")
    specials = ["<pad>", "</s>", "<unk>", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = [f"##{c}" for c in string.ascii_lowercase + string.digits]
    return list(dict.fromkeys(specials + chars + pieces + _WORDS))


def _real_bert_tokenizer():
    """The packaged MiniLM's BERT-uncased tokenizer (TAS-B's vocabulary too), or None when not installed."""
    from transformers import AutoTokenizer

    from recommender.encoder import packaged_model_path

    path = packaged_model_path()
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True) if path is not None else None


def _tiny_bert_tokenizer():
    from transformers import BertTokenizerFast

    vocab = tiny_vocab()
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True,
                             model_max_length=512)


def _bert_tokenizer(kind: str):
    return (_real_bert_tokenizer() if kind in _REAL_VOCAB_KINDS else None) or _tiny_bert_tokenizer()


def _tiny_t5_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {token: i for i, token in enumerate(tiny_vocab())}
    backend = Tokenizer(models.WordPiece(vocab=ids, unk_token="<unk>", continuing_subword_prefix="##"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # T5 ends every input with </s>; the decoder joins "##" pieces back into words.
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", ids["</s>"])])
    backend.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_input_names=["input_ids", "attention_mask"], model_max_length=512)


def save_tiny_t5(directory: str | Path, *, seed: int = 0, kind: str = "t5") -> Path:
    """A random T5 (``kind`` picks the shape) and a fast tokenizer, saved as a Hugging Face model directory.

    The production-shaped one uses the BERT vocabulary (its [SEP] ends a query); the
    tokenizer's ``token_type_ids`` must then be dropped before ``generate``.
    """
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    directory = Path(directory)
    d_model, layers, heads, d_kv, d_ff = _T5_SHAPES[kind]
    tokenizer = (_real_bert_tokenizer() if kind in _REAL_VOCAB_KINDS else None) or _tiny_t5_tokenizer()
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=d_kv, d_ff=d_ff, num_layers=layers,
                      num_decoder_layers=layers, num_heads=heads, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=eos, decoder_start_token_id=tokenizer.pad_token_id)
    T5ForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _bert_config(kind: str, vocab_size: int, pad_token_id: int, **extra):
    from transformers import BertConfig

    hidden, layers, heads, ff = _BERT_SHAPES[kind]
    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=ff, max_position_embeddings=512, pad_token_id=pad_token_id, **extra)


def save_tiny_cross_encoder(directory: str | Path, *, seed: int = 0, kind: str = "cross-encoder") -> Path:
    """A random BERT with a one-logit classification head, loadable by ``CrossEncoder``."""
    import torch
    from transformers import BertForSequenceClassification

    directory = Path(directory)
    tokenizer = _bert_tokenizer(kind)
    torch.manual_seed(seed)
    # A wide initialisation, so that the random head's logits differ between pairs (margins are not all 0).
    config = _bert_config(kind, len(tokenizer), tokenizer.pad_token_id, num_labels=1, initializer_range=0.5)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_bi_encoder(directory: str | Path, *, seed: int = 0, kind: str = "bi-encoder",
                         max_seq_length: int | None = None) -> Path:
    """A random BERT sentence model with CLS pooling and dot-product similarity (TAS-B's recipe)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertModel

    directory = Path(directory)
    hf_dir = directory.parent / f".{directory.name}-hf"
    tokenizer = _bert_tokenizer(kind)
    torch.manual_seed(seed)
    BertModel(_bert_config(kind, len(tokenizer), tokenizer.pad_token_id)).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=max_seq_length or (512 if kind in _REAL_VOCAB_KINDS else 128))
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "cls")],
                                device="cpu", similarity_fn_name="dot")
    model.save(str(directory), create_model_card=False)
    shutil.rmtree(hf_dir, ignore_errors=True)  # the saved model holds its own copy
    return directory


def _builder(kind: str):
    if kind in _T5_SHAPES:
        return lambda path: save_tiny_t5(path, kind=kind)
    if kind.startswith("cross-encoder"):
        return lambda path: save_tiny_cross_encoder(path, kind=kind)
    return lambda path: save_tiny_bi_encoder(path, kind=kind)


def is_tiny(name: str) -> bool:
    """True for a ``tiny:<kind>`` model name."""
    return str(name).startswith(TINY_PREFIX)


def tiny_kind_error(name: str) -> str | None:
    """Why ``name`` is not a buildable tiny model (None when it is, or when it is no tiny name at all)."""
    if not is_tiny(name) or str(name)[len(TINY_PREFIX):] in TINY_KINDS + SHAPED_KINDS:
        return None
    return f"unknown tiny model {name!r}; choose one of {', '.join(TINY_PREFIX + k for k in TINY_KINDS + SHAPED_KINDS)}"


def resolve_tiny(name: str, cache_dir: str | Path) -> str:
    """Path of the random model ``name`` (``tiny:t5`` …), building it under ``cache_dir`` the first time.

    Raises:
        ValueError: unknown kind.
    """
    problem = tiny_kind_error(name)
    if problem:
        raise ValueError(problem)
    kind = str(name)[len(TINY_PREFIX):]
    target = Path(cache_dir) / kind
    if not (target / "config.json").exists() and not (target / "modules.json").exists():
        tmp = target.parent / f".{kind}.tmp"
        _builder(kind)(tmp)
        tmp.rename(target)
    return str(target)


def make_tiny_models(directory: str | Path, *, shaped: bool = False) -> dict[str, str]:
    """Build every tiny model kind (or, with ``shaped``, the production-shaped ones) under ``directory``."""
    kinds = SHAPED_KINDS if shaped else TINY_KINDS
    return {kind: resolve_tiny(TINY_PREFIX + kind, directory) for kind in kinds}
