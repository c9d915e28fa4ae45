"""The reference frontend's ``GET /search`` (issue 15): its shape, today's ranking, no crash on errors, raw queries.

The ``count`` check is a brute-force reference computed here from the documented index files
(chunks.parquet, reviews.arrow, catalog.json) and the encoder: a flat numpy search and a vote of
one per review, independent of the recommender's own retrieval code.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc  # noqa: F401  (pa.ipc)
import pytest

from recommender import config
from recommender.filters import is_adult
from webapp import create_app

QUERY = "sad ending that made me cry"


def rows_of(response) -> list[tuple[str, int]]:
    return [(row["Anime Title"], row["count"]) for row in response.get_json()["results"]]


# ---- 1. the default ranking, 18 rows, count on request ---------------------------------------------------------
def test_default_ranking_is_the_default_aggregation_and_18_rows(client, tiny_recommender):
    response = client.get("/search", query_string={"query": QUERY, "top_n": 500})
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["results"]
    expected = tiny_recommender.search(QUERY, top_n=500, limit=18)  # the default aggregation
    assert len(body["results"]) == len(expected.results) == 18
    assert rows_of(response) == [(r.title, r.count) for r in expected.results]
    for row in body["results"]:
        assert set(row) == {"Anime Title", "MAL Link", "Image URL", "count"}
        assert row["MAL Link"].startswith("https://myanimelist.net/anime/") and isinstance(row["Image URL"], str)


def test_limit_parameter_sets_the_number_of_rows(client):
    assert len(client.get("/search?query=robots&top_n=500&limit=5").get_json()["results"]) == 5
    assert len(client.get("/search?query=robots&limit=40").get_json()["results"]) == 40


def brute_force_count(recommender, index_dir, query: str, top_n: int) -> list[tuple[str, int]]:
    """The reference vote: (title, reviews among the top-N chunks by exact similarity), most votes first.

    One vote per review; ties go to the anime with the better-ranked chunk; adult titles are left out
    before the top N are taken, as every search does.
    """
    chunks = pd.read_parquet(index_dir / "chunks.parquet")
    reviews = pa.ipc.open_file(pa.memory_map(str(index_dir / "reviews.arrow"))).read_all().to_pandas()
    reviews = reviews.set_index("review_id")
    catalog = {int(k): v for k, v in json.loads((index_dir / "catalog.json").read_text()).items()}
    chunks = chunks[[not is_adult(catalog.get(int(a), {})) for a in chunks["anime_id"]]]
    texts = [reviews.at[r, "text"][int(s):int(e)] for r, s, e in zip(chunks["review_id"], chunks["start"],
                                                                      chunks["end"], strict=True)]
    vectors = recommender.encoder.encode(texts)
    sims = vectors @ recommender.encoder.encode_query(query)
    top = np.argsort(-sims, kind="stable")[:top_n]
    voters: dict[int, set[str]] = {}
    best_rank: dict[int, int] = {}
    for rank, i in enumerate(top):
        anime = int(chunks["anime_id"].iloc[i])
        voters.setdefault(anime, set()).add(str(chunks["review_id"].iloc[i]))
        best_rank.setdefault(anime, rank)
    order = sorted(voters, key=lambda a: (-len(voters[a]), best_rank[a]))
    return [(catalog[a]["title"], len(voters[a])) for a in order]


@pytest.mark.parametrize("query, top_n", [(QUERY, 120), ("giant robots and teenage pilots", 300)])
def test_aggregation_count_is_the_reference_vote(client, tiny_recommender, tiny_index_dir, query, top_n):
    expected = brute_force_count(tiny_recommender, tiny_index_dir, query, top_n)
    assert 18 < len(expected) <= config.MAX_LIMIT
    # Every anime voted for, as the reference returned them (a limit the vote fills exactly).
    response = client.get("/search", query_string={"query": query, "top_n": top_n, "aggregation": "count",
                                                   "limit": len(expected)})
    assert response.status_code == 200
    assert rows_of(response) == expected
    old_frontend = client.get("/search", query_string={"query": query, "top_n": top_n, "aggregation": "count"})
    assert rows_of(old_frontend) == expected[:18]


# ---- 2. errors keep the frontend alive -------------------------------------------------------------------------
@pytest.mark.parametrize("url, status, code", [
    ("/search?query=&top_n=500", 400, "invalid_query"),
    ("/search", 400, "invalid_query"),
    ("/search?query=robots&top_n=lots", 400, "invalid_parameter"),
    ("/search?query=robots&aggregation=popularity", 400, "unknown_aggregation"),
    ("/search?query=robots%FF&top_n=500", 400, "invalid_parameter"),
])
def test_errors_on_the_reference_route_carry_empty_results(client, url, status, code):
    response = client.get(url)
    assert response.status_code == status
    body = response.get_json()
    assert body["results"] == [] and body["error"]["code"] == code and body["error"]["message"]


def test_rate_limited_reference_route_carries_empty_results(tiny_recommender):
    limited = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT": "1 per minute"}).test_client()
    assert limited.get("/search?query=robots").status_code == 200
    refused = limited.get("/search?query=robots")
    assert refused.status_code == 429 and refused.get_json()["results"] == []


def test_other_routes_keep_the_plain_error_shape(client):
    assert set(client.get("/api/v1/search").get_json()) == {"error"}


# ---- 3. the query as the old frontend writes it ----------------------------------------------------------------
@pytest.fixture()
def received(tiny_recommender, monkeypatch):
    """The (query, top_n, limit, aggregation) of every search the reference route makes."""
    calls = []
    search = tiny_recommender.search

    def spy(query, **kwargs):
        calls.append((query, kwargs["top_n"], kwargs["limit"], kwargs.get("aggregation")))
        return search(query, **kwargs)

    monkeypatch.setattr(tiny_recommender, "search", spy)
    return calls


@pytest.mark.parametrize("raw, query, top_n, limit", [
    ("query=giant robots & teenage pilots&top_n=500", "giant robots & teenage pilots", 500, 18),
    ("query=giant%20robots%20&%20teenage%20pilots&top_n=500", "giant robots & teenage pilots", 500, 18),
    ("query=rock & roll&limit=3&top_n=90", "rock & roll", 90, 3),
    ("query=cats&dogs=friends&top_n=7", "cats&dogs=friends", 7, 18),
    ("query=tom & jerry", "tom & jerry", 500, 18),
    ("query=x%26y&top_n=5", "x&y", 5, 18),
    ("top_n=60&query=salt & pepper", "salt & pepper", 60, 18),
    ("query=fish+and+chips&top_n=40", "fish and chips", 40, 18),
    ("query=100% orange juice&top_n=40", "100% orange juice", 40, 18),
])
def test_unencoded_query_reaches_the_search_whole(client, received, raw, query, top_n, limit):
    response = client.get("/search?" + raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert received == [(query, top_n, limit, config.DEFAULT_AGGREGATION)]
