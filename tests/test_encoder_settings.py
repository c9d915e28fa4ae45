"""The encoder keeps a model's own pooling and similarity, whether it is loaded by hub name or from a folder."""

from __future__ import annotations

import shutil

import pytest

from recommender.config import TASB_MODEL
from recommender.encoder import Encoder
from tests.conftest import save_tiny_bert, save_tiny_sentence_model

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache holding a plain Transformers checkpoint under TAS-B's hub name.

    TAS-B is published that way (no modules.json): sentence-transformers then builds mean pooling.
    """
    import huggingface_hub.constants

    repo = tmp_path / "hub" / ("models--" + TASB_MODEL.replace("/", "--"))
    save_tiny_bert(repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return repo / "snapshots" / REVISION


def test_tasb_by_hub_name_gets_cls_pooling_and_dot_product(hub_cache):
    encoder = Encoder.load(TASB_MODEL, device="cpu")
    assert (encoder.pooling, encoder.similarity, encoder.normalize) == ("cls", "dot", False)
    import numpy as np
    import torch

    text = "a detective story with a dark ending"
    features = encoder.model.preprocess([text])
    with torch.inference_mode():
        tokens = encoder.model[0](features)["token_embeddings"][0]
    assert np.allclose(encoder.encode([text])[0], tokens[0].numpy(), atol=1e-5)  # the [CLS] vector, unnormalised


def test_a_folder_copy_of_tasb_gets_the_same_settings(hub_cache, tmp_path):
    folder = tmp_path / "models" / TASB_MODEL.split("/")[-1]
    shutil.copytree(hub_cache, folder)
    assert (Encoder.load(str(folder), device="cpu").pooling, Encoder.load(str(folder), device="cpu").similarity) \
        == ("cls", "dot")
    # Loaded by path from the hub cache itself (models--org--name/snapshots/…): the same model.
    assert Encoder.load(str(hub_cache), device="cpu").pooling == "cls"


def test_settings_the_model_files_state_win(tmp_path):
    # A sentence-transformers folder named like TAS-B that says mean pooling + normalised cosine keeps them.
    folder = save_tiny_sentence_model(tmp_path / TASB_MODEL.split("/")[-1], pooling="mean", normalize=True)
    encoder = Encoder.load(str(folder), device="cpu")
    assert (encoder.pooling, encoder.similarity) == ("mean", "cosine")
    other = Encoder.load(str(save_tiny_sentence_model(tmp_path / "plain", pooling="max", normalize=False)),
                         device="cpu")
    assert other.pooling == "max"  # models not in the table are left as their files say
