"""The HTTP edge as a hostile client sees it: links, headers, CORS, strict parameters, the contract, the log.

Each test reproduces a finding of issue 12 ("Unsafe links", "Loose edges", the CLI's log line) with the
Flask test client; the waitress-level limits are in test_server_limits.py.
"""

from __future__ import annotations

import logging
import time

import pytest

from webapp import create_app

QUERY = "a dark crime story with a detective"


def error_code(response) -> str:
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:200]
    return response.get_json()["error"]["code"]


# ---- unsafe links ----------------------------------------------------------------------------------------------
@pytest.fixture()
def poisoned(tiny_recommender):
    """The best match for QUERY, with a javascript: page link and a data: image in the loaded catalogue."""
    top = tiny_recommender.search(QUERY, limit=1).results[0].anime_id
    saved = dict(tiny_recommender.catalog[top])
    tiny_recommender.catalog[top].update(url="javascript:alert(document.domain)",
                                         image_url="data:text/html,<script>alert(1)</script>")
    yield top
    tiny_recommender.catalog[top] = saved


def test_unsafe_links_are_never_served(client, poisoned):
    links = []
    body = client.get("/api/v1/search", query_string={"q": QUERY, "limit": 5}).get_json()
    links += [(r["url"], r["image_url"]) for r in body["results"] if r["anime_id"] == poisoned]
    entry = client.get(f"/api/v1/anime/{poisoned}").get_json()
    links.append((entry["url"], entry.get("image_url")))
    similar = client.get("/api/v1/anime/1/similar", query_string={"limit": 100}).get_json()
    links += [(r["url"], r["image_url"]) for r in similar["results"] if r["anime_id"] == poisoned]
    rows = client.get("/search", query_string={"query": QUERY}).get_json()["results"]
    links += [(r["MAL Link"], r["Image URL"]) for r in rows if r["MAL Link"].endswith(f"/anime/{poisoned}")]
    assert len(links) >= 3
    for url, image in links:
        assert url == f"https://myanimelist.net/anime/{poisoned}"
        assert image in (None, "")


def test_security_headers_on_every_response(client):
    for path in ("/", "/app.js", "/style.css", "/api/v1/meta", "/api/v1/nothing-here", f"/search?query={QUERY}",
                 "/api/v1/search"):
        response = client.get(path)
        csp = response.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path
        assert response.headers.get("Referrer-Policy") == "no-referrer", path


# ---- CORS ------------------------------------------------------------------------------------------------------
def test_cors_never_allows_null_and_only_get_and_post(tiny_recommender):
    client = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT_ENABLED": False}).test_client()
    null = client.get("/api/v1/meta", headers={"Origin": "null"})
    assert "Access-Control-Allow-Origin" not in null.headers
    stranger = client.get("/api/v1/meta", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    preflight = client.options("/api/v1/search", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type"})
    methods = {m.strip() for m in preflight.headers["Access-Control-Allow-Methods"].split(",")}
    assert methods == {"GET", "POST"}


def test_cors_default_lets_the_reference_frontend_in(tiny_recommender):
    client = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT_ENABLED": False}).test_client()
    for origin in ("http://localhost:3000", "http://127.0.0.1:3000"):
        response = client.get("/search?query=robots&top_n=50", headers={"Origin": origin})
        assert response.headers["Access-Control-Allow-Origin"] == origin


def test_cors_null_in_the_configured_list_is_refused(tiny_recommender):
    with pytest.raises(ValueError, match="null"):
        create_app({"RECOMMENDER": tiny_recommender, "CORS_ORIGINS": ["null", "https://a.example"]})


# ---- Retry-After -----------------------------------------------------------------------------------------------
def test_retry_after_only_on_429_and_always_positive(tiny_recommender):
    client = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT": "2 per second"}).test_client()
    seen_429 = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and seen_429 < 5:
        response = client.get("/api/v1/meta")
        if response.status_code == 200:
            assert "Retry-After" not in response.headers
        else:
            assert response.status_code == 429
            assert response.headers["Retry-After"].isdigit() and int(response.headers["Retry-After"]) >= 1
            seen_429 += 1
    assert seen_429 >= 1


def test_openapi_document_is_not_rate_limited(tiny_recommender):
    client = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT": "1 per minute"}).test_client()
    assert [client.get("/api/v1/openapi.json").status_code for _ in range(4)] == [200] * 4


# ---- strict parameters -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "/api/v1/search?q=robot%FF%FEwar",
    "/api/v1/search?q=robots&genre=%C3",
    "/search?query=robot%FF%FE&top_n=50",
    "/api/v1/search?q=robots&top_n=5_0",
    "/api/v1/search?q=robots&top_n=%D9%A5%D9%A0",  # Arabic-Indic digits for 50
    "/api/v1/search?q=robots&limit=%EF%BC%95",  # a full-width 5
    "/api/v1/search?q=robots&top_n=50&top_n=60",
    "/api/v1/search?q=robots&q=romance",
    "/api/v1/search?q=robots&aggregation=",
    "/api/v1/search?q=robots&top_n=",
    "/api/v1/search?q=robots&year_min=",
    "/api/v1/search?q=robots&genre=",
    "/api/v1/anime/1/similar?limit=",
    "/api/v1/anime/%D9%A1",
    f"/api/v1/anime/{2**31}",
    "/search?query=robots&top_n=5_0",
    "/search?query=robots&top_n=",
])
def test_loose_values_are_refused(client, url):
    response = client.get(url)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert error_code(response) in ("invalid_parameter", "invalid_query", "unknown_aggregation")


@pytest.mark.parametrize("body", [{"q": "robots", "exclude_genre": None}, {"q": "robots", "top_n": None},
                                  {"q": "robots", "aggregation": None}, {"q": None}])
def test_json_null_is_not_absent(client, body):
    response = client.post("/api/v1/search", json=body)
    assert response.status_code == 400 and error_code(response) in ("invalid_parameter", "invalid_query")


def test_plain_values_still_work(client):
    response = client.get("/api/v1/search?q=robots&top_n=50&limit=3&page=2&year_min=1990&nsfw=false")
    assert response.status_code == 200 and len(response.get_json()["results"]) == 3
    assert client.get(f"/api/v1/anime/{2**31 - 1}").status_code == 404


# ---- the contract ----------------------------------------------------------------------------------------------
def test_spec_states_the_bounds_the_server_enforces(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    anime_id = paths["/api/v1/anime/{anime_id}"]["get"]["parameters"][0]["schema"]
    assert anime_id["minimum"] == 1 and anime_id["maximum"] == 2**31 - 1
    params = {p["name"]: p for p in paths["/api/v1/search"]["get"]["parameters"]}
    assert params["q"]["schema"]["minLength"] == 1 and "pattern" in params["q"]["schema"]
    assert "year_max" in params["year_min"]["description"]
    assert params["page"]["schema"]["maximum"] >= 1
    meta = client.get("/api/v1/meta").get_json()
    assert params["genre"]["schema"]["items"]["enum"] == meta["genres"]
    assert params["type"]["schema"]["items"]["enum"] == meta["types"]
    body = spec["components"]["schemas"]["SearchRequest"]["properties"]
    assert body["q"]["minLength"] == 1 and body["year_min"]["minimum"] == 1900
    reference = {p["name"] for p in paths["/search"]["get"]["parameters"]}
    assert {"query", "top_n", "limit", "aggregation"} <= reference


def test_health_names_the_index_without_its_path(client, tiny_index_dir):
    body = client.get("/api/v1/health").get_json()
    assert body["index"] == tiny_index_dir.name
    assert "/" not in body["index"]


# ---- the log ---------------------------------------------------------------------------------------------------
def test_log_truncates_long_queries(client, caplog):
    long_query = "romance " * 625  # 5,000 characters
    with caplog.at_level(logging.INFO, logger="webapp"):
        client.get("/api/v1/search", query_string={"q": long_query[:999]}, headers={"X-Request-ID": "long-1"})
        client.get("/search", query_string={"query": long_query}, headers={"X-Request-ID": "long-2"})
    lines = [r.getMessage() for r in caplog.records if "long-" in r.getMessage()]
    assert len(lines) == 2
    for line in lines:
        assert "romance" in line and line.count("romance") <= 200 // len("romance") + 1
        assert len(line) < 400
