"""Filters: the pure predicate, input validation, and server-side filtering before the limit (with over-fetch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recommender import config
from recommender.aggregate import best_hit_per_review
from recommender.errors import InvalidParameterError
from recommender.filters import SearchFilters, is_adult, matches
from recommender.validation import Fields, parse_filters

FANTASY_TV = {"genres": ["Action", "Fantasy"], "themes": ["Isekai"], "demographics": ["Shounen"], "type": "TV",
              "year": 2019, "score": 7.9, "nsfw": False}


def test_matches_each_filter():
    assert matches(FANTASY_TV, SearchFilters())
    assert matches(FANTASY_TV, SearchFilters(genres=("fantasy", "ISEKAI", "Shounen")))  # any label kind, any case
    assert not matches(FANTASY_TV, SearchFilters(genres=("Fantasy", "Romance")))  # all must be present
    assert not matches(FANTASY_TV, SearchFilters(exclude_genres=("Romance", "isekai")))
    assert matches(FANTASY_TV, SearchFilters(exclude_genres=("Romance",)))
    assert matches(FANTASY_TV, SearchFilters(types=("Movie", "tv")))
    assert not matches(FANTASY_TV, SearchFilters(types=("Movie",)))
    assert matches(FANTASY_TV, SearchFilters(year_min=2019, year_max=2019))
    assert not matches(FANTASY_TV, SearchFilters(year_min=2020))
    assert not matches(FANTASY_TV, SearchFilters(year_max=2018))
    assert matches(FANTASY_TV, SearchFilters(min_score=7.9))
    assert not matches(FANTASY_TV, SearchFilters(min_score=8.0))


def test_unknown_metadata_fails_only_the_filters_that_need_it():
    stub = {"title": "Only a title"}
    assert matches(stub, SearchFilters())
    assert matches(stub, SearchFilters(exclude_genres=("Horror",)))
    for filters in (SearchFilters(genres=("Drama",)), SearchFilters(types=("TV",)), SearchFilters(year_min=1990),
                    SearchFilters(year_max=2030), SearchFilters(min_score=1.0)):
        assert not matches(stub, filters)


@pytest.mark.parametrize("meta", [{"nsfw": True}, {"rating": "Rx - Hentai"}, {"genres": ["Hentai"]},
                                  {"genres": ["Drama"], "themes": ["Erotica"]}])
def test_adult_titles_are_hidden_unless_asked_for(meta):
    assert is_adult(meta)
    assert not matches(meta, SearchFilters())
    assert matches(meta, SearchFilters(nsfw=True))


def cli_filters(**values):
    return parse_filters(Fields.from_values(values))


def test_command_line_values_parse_by_the_api_rules():
    filters = cli_filters(genre=["Action,Drama", " Comedy "], exclude_genre="Horror", type=None, year_min="1999",
                          year_max=2005, min_score="7.5", nsfw=True)
    assert filters == SearchFilters(genres=("Action", "Drama", "Comedy"), exclude_genres=("Horror",), types=(),
                                    year_min=1999, year_max=2005, min_score=7.5, nsfw=True)
    assert cli_filters(year_min=None, min_score=None, nsfw=None) is None
    assert SearchFilters().is_default and not filters.is_default


@pytest.mark.parametrize("values", [dict(year_min="soon"), dict(year_min="1999.5"), dict(min_score="high"),
                                    dict(min_score=11), dict(year_min=2010, year_max=2000), dict(nsfw="maybe"),
                                    dict(year_max=True), dict(year_min=""), dict(year_min="5_0"),
                                    dict(year_min="\u0662\u0660\u0661\u0660")])
def test_command_line_values_are_refused_like_the_api_refuses_them(values):
    with pytest.raises(InvalidParameterError):
        cli_filters(**values)


def test_unknown_names_are_refused_with_close_matches():
    with pytest.raises(InvalidParameterError, match="unknown genre 'Comdy'; did you mean 'Comedy'"):
        parse_filters(Fields.from_values({"genre": ["Comdy"]}), genres=["Comedy", "Drama"], types=["TV"])
    with pytest.raises(InvalidParameterError, match="unknown type 'Podcast'; none of the 2 known values is close"):
        parse_filters(Fields.from_values({"type": ["Podcast"]}), genres=["Comedy"], types=["TV", "Movie"])
    filters = parse_filters(Fields.from_values({"genre": ["comedy"], "type": ["movie"]}), ["Comedy"], ["Movie"])
    assert filters.genres == ("Comedy",) and filters.types == ("Movie",)  # spelled as the index spells them


# ---- on a real (tiny) index ------------------------------------------------------------------------------------
def test_filtered_search_applies_the_filter_before_retrieval(tiny_recommender):
    rec = tiny_recommender
    filters = SearchFilters(genres=("Comedy",), exclude_genres=("Romance",), year_min=2005)
    allowed = {a for a in rec.review_counts if matches(rec.catalog.get(a, {}), filters)}
    assert 5 <= len(allowed) < len(rec.review_counts)
    # Every one of the top 3 passages belongs to an allowed anime: the filter acts inside the one index search.
    plain = rec.with_settings(synopsis_weight=0.0, lexical_weight=0.0, lexical_depth=0)
    vector = rec.encoder.encode_query("friends laughing together")
    hits = plain.hits(["friends laughing together"], vector[None, :], 3, rec.allowed(filters))[0]
    assert len(hits) == 3 and all(h.anime_id in allowed for h in hits)
    response = rec.search("friends laughing together", top_n=3, limit=5, filters=filters)
    assert response.results and all(r.anime_id in allowed for r in response.results)
    everything = rec.search("friends laughing together", top_n=rec.index.ntotal, limit=100, filters=filters)
    assert everything.total == len(allowed)  # every allowed passage retrieved: every allowed anime ranked
    assert {r.anime_id for r in everything.results} == allowed


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "sq8", "ivfpq"])
@pytest.mark.parametrize("share", [0.5, 0.02])
def test_selector_search_equals_a_numpy_search_of_the_allowed_rows(index_type, share):
    from recommender.index import AllowedRows, VectorIndex

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    mask = rng.random(len(vectors)) < share
    index = VectorIndex.build(vectors, index_type, calibrate=False, **({"nlist": 16} if index_type != "flat"
                                                                      and index_type != "hnsw" else {}))
    queries = vectors[:8]
    sims = queries @ vectors[mask].T
    expected = np.flatnonzero(mask)[np.argsort(-sims, axis=1)[:, :20]]
    scores, rows = index.search(queries, 20, allowed=AllowedRows(mask))
    assert mask[rows[rows >= 0]].all()  # never a row outside the filter
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(rows, expected, strict=True)])
    if index_type == "flat":
        assert np.array_equal(rows, expected)
        assert scores == pytest.approx(np.sort(sims, axis=1)[:, ::-1][:, :20], abs=1e-5)
    else:
        assert recall >= 0.9, recall


def test_filtered_retrieval_equals_a_search_of_only_the_allowed_rows(tiny_recommender):
    rec = tiny_recommender
    filters = SearchFilters(types=("Movie",))
    allowed = rec.allowed(filters)
    assert allowed.rows is not None and 0 < allowed.rows.count < rec.index.ntotal
    vector = rec.encoder.encode_query("a magical journey through a spirit world")
    got = rec.hits(["a magical journey"], vector[None, :], 25, allowed, aggregation="count")[0]
    allowed_rows = np.flatnonzero(allowed.rows.mask)
    chunk_vectors = rec.encoder.encode([rec.chunk_text(r) for r in allowed_rows])
    sims = chunk_vectors @ vector
    expected = allowed_rows[np.argsort(-sims, kind="stable")[:25]]
    assert [h.row for h in got] == [int(r) for r in expected]
    assert [h.similarity for h in got] == pytest.approx(np.sort(sims)[::-1][:25], abs=1e-5)
    assert all(rec.catalog[h.anime_id].get("type") == "Movie" for h in got)


def test_adult_anime_hidden_by_default(tiny_recommender):
    rec = tiny_recommender
    query = "space cowboys, jazz and bounties"
    top = rec.search(query, limit=3).results[0].anime_id
    saved = dict(rec.catalog[top])
    try:
        rec.catalog[top]["nsfw"] = True  # pretend the best match is an adult title
        rec.data._filter_cache.clear()
        shown = {r.anime_id for r in rec.search(query, limit=100).results}
        assert top not in shown and shown
        with_nsfw = rec.search(query, limit=3, filters=SearchFilters(nsfw=True)).results
        assert with_nsfw[0].anime_id == top
    finally:
        rec.catalog[top] = saved
        rec.data._filter_cache.clear()


def test_filters_apply_to_synopsis_documents_too(tiny_recommender):
    rec = tiny_recommender
    filters = SearchFilters(genres=("Sports",))
    response = rec.search("a team training hard for the tournament", limit=100, filters=filters)
    assert response.results and all("sports" in rec.genre_labels(r.anime_id) for r in response.results)
    hits = rec.hits(["a team training"], rec.encoder.encode(["a team training"]), 50, rec.allowed(filters))[0]
    assert any(not h.is_review for h in hits)  # synopses take part, but only the allowed anime's
    assert all("sports" in rec.genre_labels(h.anime_id) for h in best_hit_per_review(hits))


def test_meta_lists_the_catalogue_choices(tiny_recommender):
    meta = tiny_recommender.meta()
    assert meta["default_aggregation"] == config.DEFAULT_AGGREGATION
    assert "count" in meta["aggregations"] and config.DEFAULT_AGGREGATION in meta["aggregations"]
    expected = sorted({label for a in tiny_recommender.review_counts for key in ("genres", "themes", "demographics")
                       for label in tiny_recommender.catalog.get(a, {}).get(key) or []},
                      key=lambda name: (name.casefold(), name))
    assert meta["genres"] == expected and "Comedy" in meta["genres"]
    assert meta["types"] == sorted(meta["types"]) and "TV" in meta["types"]
    years = [m["year"] for m in tiny_recommender.catalog.values() if m.get("year")]
    assert meta["year_range"] == [min(years), max(years)]


def test_cli_filters(tiny_index_dir, tiny_model_dir, capsys):
    code, out, err = run_cli(capsys, "search", "--index", tiny_index_dir, "--model", tiny_model_dir, "--json",
                             "--limit", "4", "--type", "Movie", "--year-min", "1990", "--genre", "Drama",
                             "magic and spirits")
    assert code == 0, err
    response = json.loads(out)
    assert response["results"]
    for result in response["results"]:
        assert result["type"] == "Movie" and result["year"] >= 1990 and "Drama" in result["genres"]
    code, out, err = run_cli(capsys, "search", "--index", tiny_index_dir, "--model", tiny_model_dir,
                             "--year-min", "2020", "--year-max", "2000", "anything")
    assert code == 2 and err.startswith("error:") and "year_min" in err


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``python -m recommender ARGS`` in-process (no interpreter start-up): exit code, stdout, stderr."""
    from recommender.__main__ import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
