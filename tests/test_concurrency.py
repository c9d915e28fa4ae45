"""The query path is thread-safe without a lock, and loading an index builds nothing that the first query needs."""

from __future__ import annotations

import threading

import pytest

from recommender.filters import SearchFilters

QUERIES = [f"{mood} story about {subject}" for mood in ("funny", "dark", "cozy", "sad")
           for subject in ("space cowboys", "a cooking contest", "rival students", "a volleyball team",
                           "giant robots", "a detective")]
FILTERS = [None, SearchFilters(types=("TV",)), SearchFilters(genres=("Comedy",)), SearchFilters(year_min=2010)]


def answer(rec, i: int) -> dict:
    response = rec.search(QUERIES[i], limit=5, filters=FILTERS[i % len(FILTERS)],
                          aggregation=("soft", "count", "topk")[i % 3])
    return {k: v for k, v in response.to_dict().items() if k != "timing_ms"}


def test_eight_threads_without_a_lock_answer_like_serial_calls(tiny_recommender):
    rec = tiny_recommender
    serial = [answer(rec, i) for i in range(len(QUERIES))]
    rec.encoder._query_cache.clear()
    rec.data._filter_cache.clear()
    results: dict[int, dict] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(offset: int) -> None:
        start.wait()
        try:
            for i in range(offset, len(QUERIES), 8):
                results[i] = answer(rec, i)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert [results[i] for i in range(len(QUERIES))] == serial


def test_first_query_after_load_builds_nothing(tiny_index_dir, tiny_encoder, monkeypatch):
    from recommender import build, index, lexical
    from recommender.search import Recommender

    def refuse(*_args, **_kwargs):
        raise AssertionError("something was built at query time")

    for module, name in ((lexical.LexicalIndex, "build"), (index.VectorIndex, "build"), (build, "build_index"),
                         (build, "embed_synopses"), (build, "anime_centroids"), (build, "build_lexical")):
        monkeypatch.setattr(module, name, refuse)
    rec = Recommender.load(tiny_index_dir, encoder=tiny_encoder)
    assert rec.search("space cowboys and jazz", limit=3).results
    assert rec.search("volleyball", limit=3, filters=SearchFilters(types=("TV",))).results
    assert rec.similar(1, limit=2).results


def test_the_api_runs_searches_without_a_global_lock(tiny_recommender, monkeypatch):
    from webapp.app import DEFAULTS, create_app

    assert not any("SERIAL" in key for key in DEFAULTS)
    app = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT_ENABLED": False, "LOG_REQUESTS": False,
                      "RELOAD_INTERVAL_S": 0})
    both_inside = threading.Barrier(2, timeout=10)  # passes only if two searches run at the same time
    real_search = tiny_recommender.search

    def search_that_waits_for_another(*args, **kwargs):
        both_inside.wait()
        return real_search(*args, **kwargs)

    monkeypatch.setattr(tiny_recommender, "search", search_that_waits_for_another)
    statuses: list[int] = []

    def ask(query: str) -> None:
        statuses.append(app.test_client().get("/api/v1/search", query_string={"q": query}).status_code)

    threads = [threading.Thread(target=ask, args=(q,)) for q in ("space cowboys", "cozy camping")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200, 200]


@pytest.mark.parametrize("attribute", ["_filter_cache"])
def test_caches_are_bounded(tiny_recommender, attribute):
    from recommender.index_data import FILTER_CACHE_SIZE

    rec = tiny_recommender
    for year in range(1900, 1900 + FILTER_CACHE_SIZE + 20):
        rec.allowed(SearchFilters(year_min=year))
    assert len(getattr(rec.data, attribute)) <= FILTER_CACHE_SIZE
