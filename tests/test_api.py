"""Flask test-client tests of every route: shapes, paging, filters, the reference route and the error contract."""

from __future__ import annotations

import gzip
import json
import logging
import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from recommender import config
from recommender.filters import labels
from webapp import create_app

QUERY = "a dark crime story with a detective"


def error_of(response) -> dict:
    """The ``error`` object of a JSON error response (fails on HTML or any other shape).

    The reference route's errors also carry ``"results": []`` (tests/test_reference_route.py).
    """
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:200]
    body = response.get_json()
    assert set(body) == {"error"} or (set(body) == {"error", "results"} and body["results"] == [])
    assert {"code", "message"} <= set(body["error"])
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# ---- /api/v1/search --------------------------------------------------------------------------
def test_search_get_returns_cli_shape_plus_paging(client):
    response = client.get("/api/v1/search", query_string={"q": QUERY, "limit": 4})
    assert response.status_code == 200
    body = response.get_json()
    assert {"query", "results", "timing_ms", "page", "limit", "total", "pages", "terms"} <= set(body)
    assert body["query"] == QUERY and body["page"] == 1 and body["limit"] == 4
    assert len(body["results"]) == 4
    assert body["pages"] == math.ceil(body["total"] / 4)
    assert {"crime", "detective", "dark", "story"} <= set(body["terms"])
    for result in body["results"]:
        assert {"anime_id", "title", "url", "image_url", "score", "count", "evidence"} <= set(result)
        assert result["evidence"] and all({"review_id", "similarity", "snippet"} <= set(e) for e in result["evidence"])
    assert response.headers["X-Request-ID"]


def test_search_post_matches_get(client):
    fields = {"q": QUERY, "limit": 3, "page": 2, "top_n": 200, "aggregation": "count", "type": ["TV"]}
    posted = client.post("/api/v1/search", json=fields)
    got = client.get("/api/v1/search", query_string={**fields, "type": "TV"})
    assert posted.status_code == got.status_code == 200
    ids = [[r["anime_id"] for r in resp.get_json()["results"]] for resp in (posted, got)]
    assert ids[0] == ids[1] and len(ids[0]) == 3
    assert posted.get_json()["total"] == got.get_json()["total"]


def test_paging_walks_the_ranking_without_overlap(client, tiny_recommender):
    pages = [client.get("/api/v1/search", query_string={"q": QUERY, "limit": 5, "page": p}).get_json()
             for p in (1, 2, 3)]
    ids = [[r["anime_id"] for r in page["results"]] for page in pages]
    assert all(len(page) == 5 for page in ids)
    flat = [i for page in ids for i in page]
    assert len(set(flat)) == 15
    whole = tiny_recommender.search(QUERY, limit=15)
    assert flat == [r.anime_id for r in whole.results]
    assert {page["total"] for page in pages} == {whole.total}


def test_page_past_the_end_is_empty_not_an_error(client):
    first = client.get("/api/v1/search", query_string={"q": QUERY, "limit": 50}).get_json()
    last_page = first["pages"] + 1
    response = client.get("/api/v1/search", query_string={"q": QUERY, "limit": 50, "page": last_page})
    assert response.status_code == 200
    assert response.get_json()["results"] == []
    # Past what any search can rank (MAX_TOP_N anime): still an empty page, with the same total.
    deep = client.get("/api/v1/search", query_string={"q": QUERY, "limit": 10, "page": 600})
    assert deep.status_code == 200 and deep.get_json()["results"] == []
    assert deep.get_json()["total"] == first["total"]


@pytest.mark.parametrize("aggregation", ["count", "sum", "max"])
def test_each_offered_aggregation_is_accepted(client, aggregation):
    body = client.get("/api/v1/search", query_string={"q": QUERY, "aggregation": aggregation}).get_json()
    assert body["aggregation"] == aggregation and body["results"]


def test_filters_restrict_results(client, tiny_recommender):
    query = {"q": QUERY, "limit": 20, "genre": "Comedy", "year_min": 2005, "year_max": 2020, "min_score": 7.5}
    body = client.get("/api/v1/search", query_string=query).get_json()
    assert body["results"], "the demo corpus has recent, well-rated comedies"
    assert body["filters"]["genres"] == ["Comedy"] and body["filters"]["year_min"] == 2005
    for result in body["results"]:
        assert "comedy" in labels(tiny_recommender.anime(result["anime_id"]))
        assert 2005 <= result["year"] <= 2020 and result["mal_score"] >= 7.5
    unfiltered = client.get("/api/v1/search", query_string={"q": QUERY, "limit": 20}).get_json()
    assert body["total"] < unfiltered["total"]


def test_type_and_exclude_filters(client, tiny_recommender):
    movies = client.get("/api/v1/search", query_string={"q": QUERY, "type": "movie", "limit": 20}).get_json()
    assert movies["results"] and {r["type"] for r in movies["results"]} == {"Movie"}
    assert movies["filters"]["types"] == ["Movie"]  # spelled as the catalogue spells it
    no_drama = client.get("/api/v1/search", query_string={"q": QUERY, "exclude_genre": "Drama,Action",
                                                          "limit": 20}).get_json()
    assert no_drama["results"]
    for result in no_drama["results"]:
        assert not {"drama", "action"} & labels(tiny_recommender.anime(result["anime_id"]))


def test_repeated_and_comma_separated_genres_are_the_same_filter(client):
    repeated = client.get("/api/v1/search?q=friends&genre=Comedy&genre=School&limit=20").get_json()
    comma = client.get("/api/v1/search?q=friends&genre=Comedy,School&limit=20").get_json()
    assert repeated["filters"]["genres"] == comma["filters"]["genres"] == ["Comedy", "School"]
    assert [r["anime_id"] for r in repeated["results"]] == [r["anime_id"] for r in comma["results"]]


# ---- cleaning instead of crashing ----------------------------------------------------------------
@pytest.mark.parametrize("raw, cleaned", [
    ("space\x00 cowboys\x1b[31m with\u200b jazz", "space cowboys [31m with jazz"),
    ("  lots   of\n\twhitespace  ", "lots of whitespace"),
    ("'; DROP TABLE reviews; -- OR 1=1", "'; DROP TABLE reviews; -- OR 1=1"),
    ("<script>alert(1)</script> romance", "<script>alert(1)</script> romance"),
    ("宇宙のカウボーイ 🚀 jazz", "宇宙のカウボーイ 🚀 jazz"),
])
def test_odd_queries_are_cleaned_and_answered(client, raw, cleaned):
    response = client.get("/api/v1/search", query_string={"q": raw})
    assert response.status_code == 200
    assert response.get_json()["query"] == cleaned


def test_lone_surrogate_in_json_is_dropped(client):
    response = client.post("/api/v1/search", data='{"q": "robot \\ud800 war"}', content_type="application/json")
    assert response.status_code == 200
    assert response.get_json()["query"] == "robot war"


def test_sql_looking_query_leaves_the_index_intact(client):
    before = client.get("/api/v1/health").get_json()["counts"]
    for text in ("1; DELETE FROM reviews", "x' UNION SELECT * FROM sqlite_master --", "\"; DROP TABLE anime; --"):
        assert client.get("/api/v1/search", query_string={"q": text}).status_code == 200
    assert client.get("/api/v1/health").get_json()["counts"] == before


def test_query_at_the_length_cap_is_accepted(client):
    response = client.get("/api/v1/search", query_string={"q": "x" * config.MAX_QUERY_CHARS})
    assert response.status_code == 200


# ---- the table of bad input: each a JSON 4xx, never a 500 -------------------------------------------
LONG = "y" * (config.MAX_QUERY_CHARS + 1)
BAD_REQUESTS = [
    # (method, url, kwargs, status, code)
    ("GET", "/api/v1/search", {}, 400, "invalid_query"),
    ("GET", "/api/v1/search?q=", {}, 400, "invalid_query"),
    ("GET", "/api/v1/search?q=%20%20%09", {}, 400, "invalid_query"),
    ("GET", "/api/v1/search?q=%00%01%02%7F", {}, 400, "invalid_query"),
    ("GET", f"/api/v1/search?q={LONG}", {}, 400, "invalid_query"),
    ("GET", "/api/v1/search?q=x&limit=abc", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&limit=0", {}, 400, "invalid_parameter"),
    ("GET", f"/api/v1/search?q=x&limit={config.MAX_LIMIT + 1}", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&limit=2.5", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&page=0", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&page=-3", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&page=" + "9" * 400, {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&page=5001", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&top_n=0", {}, 400, "invalid_parameter"),
    ("GET", f"/api/v1/search?q=x&top_n={config.MAX_TOP_N + 1}", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&aggregation=popularity_contest", {}, 400, "unknown_aggregation"),
    ("GET", "/api/v1/search?q=x&year_min=last+year", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&year_min=2020&year_max=2000", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&year_max=1066", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&min_score=11", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&min_score=nan", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&min_score=1e999", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&nsfw=maybe", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&genre=Underwater+Basket+Weaving", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&type=Podcast", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/search?q=x&genre=" + ",".join(f"g{i}" for i in range(40)), {}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
    ("POST", "/api/v1/search", {"data": b"\xff\xfe{}", "content_type": "application/json"}, 400, "invalid_json"),
    ("POST", "/api/v1/search", {"data": "[" * 100_000, "content_type": "application/json"}, 413,
     "payload_too_large"),
    ("POST", "/api/v1/search", {"data": "[" * 20_000 + "]" * 20_000, "content_type": "application/json"}, 400,
     "invalid_json"),
    ("POST", "/api/v1/search", {"json": ["q", "romance"]}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"json": "romance"}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"data": "null", "content_type": "application/json"}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"json": {"query": "romance"}}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"json": {"q": 42}}, 400, "invalid_query"),
    ("POST", "/api/v1/search", {"json": {"q": ["romance"]}}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"json": {"q": "romance", "limit": True}}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"json": {"q": "romance", "limit": 2.0}}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"json": {"q": "romance", "genre": {"Comedy": 1}}}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"json": {"q": "romance", "genre": [1, 2]}}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"json": {"q": "romance", "nsfw": "sometimes"}}, 400, "invalid_parameter"),
    ("POST", "/api/v1/search", {"data": "q=romance", "content_type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type"),
    ("POST", "/api/v1/search", {"data": '{"q": "romance"}'}, 415, "unsupported_media_type"),
    ("GET", "/api/v1/anime/abc", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/anime/0", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/anime/-1", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/anime/99999999999999999999", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/anime/987654", {}, 404, "unknown_anime"),
    ("GET", "/api/v1/anime/987654/similar", {}, 404, "unknown_anime"),
    ("GET", "/api/v1/anime/1/similar?limit=0", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/anime/1/similar?year_min=soon", {}, 400, "invalid_parameter"),
    ("GET", "/search", {}, 400, "invalid_query"),
    ("GET", "/search?query=%20", {}, 400, "invalid_query"),
    ("GET", "/search?query=romance&top_n=lots", {}, 400, "invalid_parameter"),
    ("GET", f"/search?query=romance&top_n={config.MAX_TOP_N + 1}", {}, 400, "invalid_parameter"),
    ("GET", "/api/v1/no-such-route", {}, 404, "not_found"),
    ("GET", "/index.php", {}, 404, "not_found"),
    ("GET", "/../../etc/passwd", {}, 404, "not_found"),
    ("DELETE", "/api/v1/search", {}, 405, "method_not_allowed"),
    ("POST", "/api/v1/health", {"json": {}}, 405, "method_not_allowed"),
    ("PUT", "/search?query=romance", {}, 405, "method_not_allowed"),
    ("POST", "/", {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize("method, url, kwargs, status, code", BAD_REQUESTS,
                         ids=[f"{m} {u[:60]} {k.get('json', '')!s:.30}" for m, u, k, _, _ in BAD_REQUESTS])
def test_bad_input_is_a_json_4xx(client, method, url, kwargs, status, code):
    response = client.open(url, method=method, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    error = error_of(response)
    assert error["code"] == code
    assert error["request_id"] == response.headers["X-Request-ID"]


def test_bad_input_table_is_large_enough():
    assert len(BAD_REQUESTS) >= 20


def test_405_names_the_allowed_methods(client):
    response = client.delete("/api/v1/search")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_unexpected_error_is_a_logged_json_500(app, client, monkeypatch, caplog):
    service = app.extensions["anime_search"]

    def explode(*args, **kwargs):
        raise RuntimeError("simulated fault")

    monkeypatch.setattr(service.recommender, "search", explode)
    with caplog.at_level(logging.ERROR, logger="webapp"):
        response = client.get("/api/v1/search?q=anything", headers={"X-Request-ID": "test-req-42"})
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error" and error["request_id"] == "test-req-42"
    assert "simulated fault" not in error["message"]  # internals stay in the log
    assert any("test-req-42" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_hostile_request_id_is_replaced(client):
    response = client.get("/api/v1/health", headers={"X-Request-ID": "x" * 200})
    assert response.headers["X-Request-ID"] != "x" * 200 and len(response.headers["X-Request-ID"]) == 16


# ---- the reference route ---------------------------------------------------------------------------
def test_reference_route_keeps_its_exact_shape(client):
    response = client.get("/search", query_string={"query": "funny school club", "top_n": 50})
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["results"]
    assert body["results"]
    for row in body["results"]:
        assert set(row) == {"Anime Title", "MAL Link", "Image URL", "count"}
        assert isinstance(row["Anime Title"], str) and row["MAL Link"].startswith("https://myanimelist.net/anime/")
        # count may be 0: an anime can rank on its synopsis alone, with no review among the top N
        assert isinstance(row["Image URL"], str) and isinstance(row["count"], int) and row["count"] >= 0
    assert len(body["results"]) <= 18  # the reference frontend showed results.head(18)


def test_reference_route_votes_only_over_the_top_n(client):
    body = client.get("/search?query=robots&top_n=3&limit=1&aggregation=count").get_json()
    assert 1 <= sum(r["count"] for r in body["results"]) <= 3


# ---- anime, similar, health, meta ------------------------------------------------------------------
def test_anime_returns_metadata_and_review_count(client, tiny_recommender):
    body = client.get("/api/v1/anime/1").get_json()
    assert body["anime_id"] == 1 and body["title"] == "Cowboy Bebop"
    assert body["review_count"] == tiny_recommender.review_counts[1] > 0
    assert "Action" in body["genres"]


def test_similar_returns_other_anime_in_search_shape(client):
    response = client.get("/api/v1/anime/1/similar", query_string={"limit": 4})
    assert response.status_code == 200
    body = response.get_json()
    assert body["anime"]["anime_id"] == 1 and body["limit"] == 4
    ids = [r["anime_id"] for r in body["results"]]
    assert len(ids) == 4 and 1 not in ids and len(set(ids)) == 4
    assert all({"title", "url", "score", "count", "evidence"} <= set(r) for r in body["results"])


def test_similar_honours_filters(client):
    body = client.get("/api/v1/anime/1/similar", query_string={"limit": 10, "type": "Movie"}).get_json()
    assert body["results"] and {r["type"] for r in body["results"]} == {"Movie"}


def test_health_reports_the_loaded_index(client, tiny_recommender):
    body = client.get("/api/v1/health").get_json()
    assert body["status"] == "ok" and body["index_loaded"] is True
    assert body["counts"]["reviews"] == sum(tiny_recommender.review_counts.values())
    assert body["vectors"] == tiny_recommender.index.ntotal and body["model"]


def test_meta_lists_filter_choices(client):
    body = client.get("/api/v1/meta").get_json()
    assert "count" in body["aggregations"] and body["default_aggregation"] in body["aggregations"]
    assert {"Comedy", "Drama", "Sci-Fi"} <= set(body["genres"])
    assert {"TV", "Movie"} <= set(body["types"])
    low, high = body["year_range"]
    assert 1900 < low <= high < 2100
    assert body["limits"]["max_query_chars"] == config.MAX_QUERY_CHARS


def test_openapi_describes_every_route(app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<raw_id>", "{anime_id}")
        if rule.endpoint == "page.asset":
            continue  # the page's own files, listed under "/"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {rule.rule} is not in openapi.json"
    aggregations = spec["paths"]["/api/v1/search"]["get"]["parameters"]
    assert next(p for p in aggregations if p["name"] == "aggregation")["schema"]["enum"] == \
        client.get("/api/v1/meta").get_json()["aggregations"]


# ---- the page ------------------------------------------------------------------------------------
def test_page_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'src="app.js"' in html and 'href="style.css"' in html
    assert client.get("/app.js").mimetype in ("text/javascript", "application/javascript")
    assert client.get("/style.css").mimetype == "text/css"


def test_page_needs_nothing_from_outside(client):
    # Offline use: no script, stylesheet, font or image is fetched from another host.
    for path in ("/", "/app.js", "/style.css"):
        text = client.get(path).get_data(as_text=True)
        for marker in ('src="http', "src='http", 'href="//', "@import", "url(http", "url(//", "fonts.googleapis"):
            assert marker not in text, f"{path} refers to an external resource: {marker}"


# ---- conventions: limits, CORS, gzip ---------------------------------------------------------------
def test_rate_limit_answers_429_json_with_retry_after(tiny_recommender):
    limited = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT": "3 per minute"}).test_client()
    statuses = [limited.get("/api/v1/meta").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = limited.get("/api/v1/search?q=robots")
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    # The health probe and the page are never limited.
    assert limited.get("/api/v1/health").status_code == 200
    assert limited.get("/").status_code == 200


def test_rate_limit_is_per_client(tiny_recommender):
    limited = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT": "2 per minute"}).test_client()
    for _ in range(2):
        assert limited.get("/api/v1/meta", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 200
    assert limited.get("/api/v1/meta", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 429
    assert limited.get("/api/v1/meta", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_cors_origins_are_configurable(tiny_recommender):
    open_app = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT_ENABLED": False,
                           "CORS_ORIGINS": "*"}).test_client()
    response = open_app.get("/api/v1/meta", headers={"Origin": "https://frontend.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://frontend.example"

    strict = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT_ENABLED": False,
                         "CORS_ORIGINS": ["https://frontend.example"]}).test_client()
    allowed = strict.get("/search?query=robots", headers={"Origin": "https://frontend.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://frontend.example"
    other = strict.get("/api/v1/meta", headers={"Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = strict.options("/api/v1/search", headers={
        "Origin": "https://frontend.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type"})
    assert preflight.status_code == 200 and "POST" in preflight.headers["Access-Control-Allow-Methods"]


def test_gzip_when_accepted(client):
    plain = client.get("/search?query=robots+and+friends")
    zipped = client.get("/search?query=robots+and+friends", headers={"Accept-Encoding": "gzip, deflate"})
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(zipped.get_data())) == plain.get_json()


def test_gzip_can_be_switched_off(tiny_recommender):
    client = create_app({"RECOMMENDER": tiny_recommender, "GZIP": False, "RATE_LIMIT_ENABLED": False}).test_client()
    response = client.get("/search?query=robots+and+friends", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in response.headers and response.get_json()["results"]


def test_concurrent_searches_each_get_their_own_answer(app):
    def worker(n: int) -> list[tuple[int, str, str]]:
        client = app.test_client()
        out = []
        for i in range(4):
            query = f"robots and friends number {n} {i}"
            response = client.get("/api/v1/search", query_string={"q": query, "limit": 2})
            out.append((response.status_code, response.get_json().get("query"), query))
        return out

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = [a for batch in pool.map(worker, range(8)) for a in batch]
    assert len(answers) == 32
    assert all(status == 200 and got == sent for status, got, sent in answers)


def test_requests_are_logged_with_timing(client, caplog):
    with caplog.at_level(logging.INFO, logger="webapp"):
        response = client.get("/api/v1/meta", headers={"X-Request-ID": "log-me-1"})
    line = next(r.getMessage() for r in caplog.records if "log-me-1" in r.getMessage())
    assert "GET /api/v1/meta 200" in line and line.split()[-2].endswith("ms")
    assert response.headers["Server-Timing"].startswith("app;dur=")
