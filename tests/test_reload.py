"""A running API picks up a rebuilt index: detected by its manifest, loaded beside the old one, swapped atomically."""

from __future__ import annotations

import threading
import time

import pytest

from recommender.build import build_index
from scraping.importers import import_anime_jsonl, import_path
from scraping.store import Store
from tests.conftest import DEMO_DIR
from webapp import create_app

pytestmark = pytest.mark.slow


def small_store(path, reviews: int):
    """A store with the demo anime and the first ``reviews`` demo reviews."""
    lines = (DEMO_DIR / "reviews.jsonl").read_text().splitlines()[:reviews]
    subset = path.parent / f"reviews-{reviews}.jsonl"
    subset.write_text("\n".join(lines) + "\n")
    with Store.open(path) as store:
        import_anime_jsonl(store, DEMO_DIR / "anime.jsonl")
        import_path(store, subset)
    return path


def test_rebuilt_index_is_served_without_dropping_requests(tmp_path, tiny_encoder, tiny_model_dir):
    index = tmp_path / "index"
    build_index(small_store(tmp_path / "a.sqlite", 60), out=index, encoder=tiny_encoder, progress=False)
    app = create_app({"INDEX_DIR": str(index), "MODEL": str(tiny_model_dir), "DEVICE": "cpu",
                      "RATE_LIMIT_ENABLED": False, "RELOAD_INTERVAL_S": 0.2})
    service = app.extensions["anime_search"]
    client = app.test_client()
    before = client.get("/api/v1/health").get_json()["counts"]["reviews"]
    assert before == 60

    statuses: list[int] = []
    stop = threading.Event()

    def keep_searching():
        own = app.test_client()
        while not stop.is_set():
            statuses.append(own.get("/api/v1/search?q=space+jazz&limit=3").status_code)

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        build_index(small_store(tmp_path / "b.sqlite", 200), out=index, encoder=tiny_encoder, progress=False)
        deadline = time.monotonic() + 30
        while client.get("/api/v1/health").get_json()["counts"]["reviews"] == before:
            assert time.monotonic() < deadline, "the rebuilt index was never picked up"
            time.sleep(0.1)
        time.sleep(0.5)  # a few more searches on the new index
    finally:
        stop.set()
        searcher.join(timeout=30)
        service.stop_watching()
    assert client.get("/api/v1/health").get_json()["counts"]["reviews"] == 200
    assert len(statuses) > 5 and set(statuses) == {200}, statuses


def test_a_broken_rebuild_keeps_the_old_index(tmp_path, tiny_encoder, tiny_model_dir, caplog):
    index = tmp_path / "index"
    build_index(small_store(tmp_path / "a.sqlite", 40), out=index, encoder=tiny_encoder, progress=False)
    app = create_app({"INDEX_DIR": str(index), "MODEL": str(tiny_model_dir), "DEVICE": "cpu",
                      "RATE_LIMIT_ENABLED": False})
    service = app.extensions["anime_search"]
    (index / "manifest.json").write_text("{ half written")
    assert service.reload_if_changed() is False
    assert "keeps serving" in caplog.text
    response = app.test_client().get("/api/v1/search?q=robots&limit=2")
    assert response.status_code == 200 and len(response.get_json()["results"]) == 2
