"""Encoder backends: the ONNX exports of tiny random models, offline, against the torch model they came from."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from recommender import backends, config
from recommender.encoder import Encoder
from recommender.errors import BackendUnavailableError, InvalidParameterError
from tests.conftest import save_tiny_sentence_model

TEXTS = [
    "space cowboys and jazz",
    "a",
    "the slow romance between two rival students at school " * 12,  # past the 48-token window: truncated
    "funny cooking show with a sad ending, great music and a very slow first season",
    "mecha war",
]
ONNX_BACKENDS = ("onnx", "onnx-int8", "openvino")


@pytest.fixture(scope="module")
def cls_dot_model_dir(tmp_path_factory):
    """A tiny model with CLS pooling, no normalisation and dot-product similarity (TAS-B's shape)."""
    from sentence_transformers import SentenceTransformer

    path = save_tiny_sentence_model(tmp_path_factory.mktemp("models") / "tiny-cls-dot", seed=1, pooling="cls",
                                    normalize=False)
    model = SentenceTransformer(str(path), device="cpu")
    model.similarity_fn_name = "dot"
    model.save(str(path))
    assert Encoder.load(str(path), device="cpu").normalize is False
    return path


@pytest.fixture(scope="module", params=["mean-cosine", "cls-dot"])
def model_dir(request, tiny_model_dir, cls_dot_model_dir):
    return tiny_model_dir if request.param == "mean-cosine" else cls_dot_model_dir


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_exported_model_matches_torch(model_dir, backend):
    reference = Encoder.load(str(model_dir), device="cpu")
    encoder = Encoder.load(str(model_dir), backend=backend)
    assert encoder.backend == backend and encoder.info().backend == backend
    assert (encoder.normalize, encoder.pooling, encoder.sha256) == (reference.normalize, reference.pooling,
                                                                    reference.sha256)
    expected = reference.encode(TEXTS, batch_size=2)
    batched = encoder.encode(TEXTS, batch_size=3)
    alone = np.stack([encoder.encode([text], batch_size=1)[0] for text in TEXTS])
    # Padding must not leak into the result: a text alone and in a padded batch embed alike.
    np.testing.assert_allclose(alone, batched, atol=2e-3 if backend == "onnx-int8" else 2e-5)
    if backend == "onnx":
        np.testing.assert_allclose(batched, expected, rtol=1e-4, atol=1e-5)
    else:  # int8 weights, or bf16 arithmetic where the CPU has it
        assert _cosines(batched, expected).min() > 0.99
        np.testing.assert_allclose(np.linalg.norm(batched, axis=1), np.linalg.norm(expected, axis=1), rtol=0.05)
    if encoder.normalize:
        np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, rtol=1e-5)


def test_pooling_is_the_models_own(cls_dot_model_dir):
    """Brute force from the bare transformer: CLS vector, no normalisation, for the CLS/dot model."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    hf_dir = cls_dot_model_dir.parent / f"{cls_dot_model_dir.name}-hf"
    tokenizer, model = AutoTokenizer.from_pretrained(hf_dir), AutoModel.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        features = tokenizer(TEXTS, padding=True, truncation=True, max_length=48, return_tensors="pt")
        expected = model(**features).last_hidden_state[:, 0].numpy()
    got = Encoder.load(str(cls_dot_model_dir), backend="onnx").encode(TEXTS)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_export_is_cached_next_to_the_model_by_weights_hash(tiny_model_dir, cls_dot_model_dir, monkeypatch):
    first = Encoder.load(str(tiny_model_dir), backend="onnx")
    folders = list((tiny_model_dir / "onnx").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith(first.sha256[:16])
    info = json.loads((folders[0] / backends.EXPORT_INFO).read_text())
    assert info["weights_sha256"] == first.sha256

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(backends, "export_onnx", no_export)
    Encoder.load(str(tiny_model_dir), backend="onnx")  # cached: no second export
    other = Encoder.load(str(cls_dot_model_dir), device="cpu")
    assert backends.graph_key(other.model, other.sha256) != folders[0].name  # other weights, other key


def test_read_only_model_folder_falls_back_to_the_data_dir(tmp_path, monkeypatch):
    model_dir = save_tiny_sentence_model(tmp_path / "read-only-model", seed=2)
    monkeypatch.setattr(config, "DATA_DIR", tmp_path / "data")
    real = backends._writable
    monkeypatch.setattr(backends, "_writable", lambda path: tmp_path / "data" in path.parents and real(path))
    encoder = Encoder.load(str(model_dir), backend="onnx")
    assert not (model_dir / "onnx").exists()
    assert list((tmp_path / "data" / "onnx").glob(f"{encoder.sha256[:16]}-*/{backends.FP32_FILE}"))


def test_unknown_backend_and_missing_runtime(tiny_model_dir, monkeypatch):
    with pytest.raises(InvalidParameterError, match="unknown encoder backend 'tensorrt'"):
        Encoder.load(str(tiny_model_dir), backend="tensorrt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendUnavailableError, match="pip install onnxruntime"):
        Encoder.load(str(tiny_model_dir), backend="onnx")


def test_default_backend_keeps_torch_on_a_gpu():
    assert backends.default_backend("cuda:0") == "torch"
    assert backends.default_backend("cpu") == config.DEFAULT_BACKEND


def test_manifest_backend_of_old_and_new_indexes():
    assert backends.manifest_backend({"model": {"sha256": "x"}}) == "torch"
    assert backends.manifest_backend({"model": {"backend": "onnx-int8"}}) == "onnx-int8"
    assert backends.manifest_backend({"backend": "openvino", "model": {}}) == "openvino"


def test_encode_reports_every_batch(tiny_encoder):
    calls = []
    vectors = tiny_encoder.encode([f"text number {i}" for i in range(10)], batch_size=4, on_batch=calls.append)
    assert calls == [4, 4, 2] and vectors.shape == (10, tiny_encoder.dim)


def test_build_with_a_backend_records_it_and_queries_use_it(demo_store_path, tiny_model_dir, tmp_path):
    from recommender.__main__ import main
    from recommender.search import Recommender

    out = tmp_path / "index"
    assert main(["build", "--db", str(demo_store_path), "--model", str(tiny_model_dir), "--out", str(out),
                 "--backend", "onnx", "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["backend"] == "onnx"
    recommender = Recommender.load(out)
    assert recommender.encoder.backend == "onnx"
    torch_recommender = Recommender.load(out, encoder=Encoder.load(str(tiny_model_dir), device="cpu"))
    query = "space cowboys and jazz"
    assert ([r.anime_id for r in recommender.search(query).results]
            == [r.anime_id for r in torch_recommender.search(query).results])


def test_build_cli_rejects_an_unknown_backend(capsys):
    from recommender.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["build", "--backend", "tensorrt"])
    assert exc.value.code == 2 and "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_embedding_progress_moves_per_batch(demo_store_path, tiny_encoder, tmp_path, monkeypatch):
    from recommender import build

    bars = []

    class RecordingBar:
        def __init__(self, *args, **kwargs):
            self.kwargs, self.updates = kwargs, []
            bars.append(self)

        def update(self, n=1):
            self.updates.append(n)

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    monkeypatch.setattr(build, "tqdm", RecordingBar)
    report = build.build_index(demo_store_path, out=tmp_path / "index", encoder=tiny_encoder, batch_size=16)
    embedding = next(bar for bar in bars if bar.kwargs.get("desc") == "embedding")
    assert embedding.kwargs["unit"] == "chunk" and embedding.kwargs["total"] == report.chunks
    assert sum(embedding.updates) == report.chunks
    assert max(embedding.updates) == 16 and len(embedding.updates) >= report.chunks / 16  # per batch, not per shard
