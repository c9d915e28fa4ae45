"""Serving from the ONNX export folder alone: the model's own tokens and vectors, and no torch in the process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from recommender import backends
from recommender.encoder import Encoder, ExportedEncoder
from recommender.errors import BackendUnavailableError, InvalidParameterError
from tests.conftest import PROJECT_ROOT

TEXTS = ["space cowboys and jazz", "a", "Rival students, Tokyo!  l'amour " * 12, "funny cooking show", "mecha war"]


@pytest.fixture(scope="module")
def exported(tiny_model_dir):
    full = Encoder.load(str(tiny_model_dir), backend="onnx")
    return full, ExportedEncoder.load(full.info().export, "onnx")


def test_export_folder_serves_the_same_tokens_vectors_and_facts(exported):
    full, lean = exported
    prepared = full.model.preprocess(TEXTS)
    features = lean._features(TEXTS)
    for name in features:
        assert np.array_equal(features[name], prepared[name].numpy()), name
    np.testing.assert_allclose(lean.encode(TEXTS, batch_size=2), full.encode(TEXTS, batch_size=2), atol=1e-6)
    assert lean.encode_query("space cowboys").shape == (full.dim,)
    assert lean.info().to_dict() == full.info().to_dict()
    assert lean.token_offsets(TEXTS) == full.token_offsets(TEXTS)
    assert lean.tokens_per_chunk == full.tokens_per_chunk


def test_incomplete_or_foreign_export_folders_are_refused(exported, tmp_path):
    full, _ = exported
    with pytest.raises(BackendUnavailableError, match="no usable export"):
        ExportedEncoder.load(tmp_path, "onnx")
    (tmp_path / backends.EXPORT_INFO).write_text(json.dumps({"export_version": 1}))
    with pytest.raises(BackendUnavailableError, match="another version"):
        ExportedEncoder.load(tmp_path, "onnx")
    with pytest.raises(InvalidParameterError):
        ExportedEncoder.load(full.info().export, "torch")


def test_an_index_built_with_an_onnx_backend_loads_and_answers_without_torch(demo_store_path, tiny_model_dir,
                                                                             tmp_path):
    from recommender.build import build_index

    out = tmp_path / "index"
    build_index(demo_store_path, out=out, encoder=Encoder.load(str(tiny_model_dir), backend="onnx"), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["backend"] == "onnx" and manifest["model"]["export"]
    code = ("import sys, json\nfrom recommender.search import Recommender\n"
            f"rec = Recommender.load({str(out)!r})\n"
            "response = rec.search('space cowboys and jazz', limit=3)\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'encoder': type(rec.encoder).__name__,"
            " 'results': [r.anime_id for r in response.results]}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"torch": False, "encoder": "ExportedEncoder", "results": report["results"]}
    assert len(report["results"]) == 3
