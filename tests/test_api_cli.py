"""``python api.py``: option handling and failing fast, with a clear message, when there is no index."""

from __future__ import annotations

import pytest

import api
from recommender import config
from recommender.errors import IndexNotFoundError, RecommenderError
from webapp import create_app


def test_missing_index_fails_fast_with_one_line(tmp_path, capsys):
    assert api.main(["--index", str(tmp_path / "nowhere"), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: index not found") and "python -m recommender build" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_no_index_anywhere_tells_how_to_build_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "INDEX_ROOT", tmp_path / "index")
    assert api.main(["--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "python main.py" in err and "python -m recommender build" in err


def test_default_index_is_the_only_one_under_data_index(tmp_path, monkeypatch):
    root = tmp_path / "index"
    (root / "only").mkdir(parents=True)
    (root / "only" / "manifest.json").write_text("{}")
    monkeypatch.setattr(config, "INDEX_ROOT", root)
    assert api.resolve_index(None) == str(root / "only")
    assert api.resolve_index("explicit/dir") == "explicit/dir"
    (root / "second").mkdir()
    (root / "second" / "manifest.json").write_text("{}")
    with pytest.raises(RecommenderError, match="several indexes"):
        api.resolve_index(None)


def test_options_become_app_settings(tmp_path):
    args = api.build_parser().parse_args([
        "--index", str(tmp_path), "--rate-limit", "off", "--cors-origins", "https://a.example, https://b.example",
        "--no-gzip", "--workers", "2",
    ])
    settings = api.settings_from_args(args)
    assert settings["INDEX_DIR"] == str(tmp_path)
    assert settings["RATE_LIMIT_ENABLED"] is False and settings["GZIP"] is False
    assert settings["CORS_ORIGINS"] == ["https://a.example", "https://b.example"]
    defaults = api.settings_from_args(api.build_parser().parse_args(["--index", str(tmp_path)]))
    assert defaults["RATE_LIMIT"] == "10 per second" and defaults["RATE_LIMIT_ENABLED"] is True
    assert defaults["CORS_ORIGINS"] == ["http://localhost:3000", "http://127.0.0.1:3000"]  # the reference frontend
    assert defaults["RELOAD_INTERVAL_S"] == 5.0


def test_bad_server_options_are_refused(tmp_path, capsys):
    assert api.main(["--index", str(tmp_path), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_create_app_without_an_index_raises_the_domain_error():
    with pytest.raises(IndexNotFoundError, match="no index given"):
        create_app({})


def test_create_app_loads_an_index_directory(tiny_index_dir, tiny_model_dir):
    app = create_app({"INDEX_DIR": str(tiny_index_dir), "MODEL": str(tiny_model_dir), "DEVICE": "cpu"})
    health = app.test_client().get("/api/v1/health").get_json()
    assert health["index_loaded"] is True and health["index"] == tiny_index_dir.name
