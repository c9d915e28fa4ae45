"""``similar``: anime → anime from review centroids, checked against a brute-force numpy reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recommender import config
from recommender.errors import InvalidParameterError, UnknownAnimeError
from recommender.filters import SearchFilters, matches


def test_anime_vectors_are_the_normalised_mean_of_their_chunks(tiny_recommender):
    rec = tiny_recommender
    for anime_id in sorted(rec.review_counts)[:3]:
        rows = np.flatnonzero(rec.data.row_anime == anime_id)
        centroid = rec.encoder.encode([rec.chunk_text(r) for r in rows]).mean(axis=0)
        centroid /= np.linalg.norm(centroid)
        stored = rec.data.anime_vectors[list(rec.data.anime_vector_ids).index(anime_id)]
        assert stored == pytest.approx(centroid, abs=1e-4)


def test_similar_scores_match_the_reference(tiny_recommender):
    rec = tiny_recommender
    source = 1
    ids = [int(a) for a in rec.data.anime_vector_ids]
    sims = np.array([float(np.dot(rec.data.anime_vectors[ids.index(a)], rec.data.anime_vectors[ids.index(source)]))
                     for a in ids])
    pairs = sorted(zip(ids, sims, strict=True), key=lambda p: (-p[1], p[0]))
    expected = [(a, s) for a, s in pairs if a != source]
    got = rec.similar_scores(source)
    assert [a for a, _ in got] == [a for a, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-5)


def test_similar_response(tiny_recommender):
    rec = tiny_recommender
    response = rec.similar(1, limit=4)
    assert response.query == rec.catalog[1]["title"]
    assert len(response.results) == 4
    assert 1 not in [r.anime_id for r in response.results]
    assert [r.anime_id for r in response.results] == [a for a, _ in rec.similar_scores(1)[:4]]
    assert response.total == len(rec.review_counts) - 1
    for result in response.results:
        assert result.count == rec.review_counts[result.anime_id]
        assert 1 <= len(result.evidence) <= config.EVIDENCE_PER_RESULT
        own = set(rec.data.reviews.review_ids()[rec.data.reviews.anime_ids == result.anime_id])
        assert all(e.review_id in own for e in result.evidence)
    assert response.to_dict()["results"][0]["score"] == pytest.approx(rec.similar_scores(1)[0][1], abs=1e-6)


def test_similar_evidence_is_the_results_closest_review_to_the_source_centroid(tiny_recommender):
    rec = tiny_recommender
    result = rec.similar(1, limit=1).results[0]
    source = rec.data.anime_vectors[list(rec.data.anime_vector_ids).index(1)]
    rows = np.flatnonzero(rec.data.row_anime == result.anime_id)
    sims = rec.encoder.encode([rec.chunk_text(r) for r in rows]) @ source
    best_row = rows[int(np.argmax(sims))]
    best_review = rec.data.reviews.review_ids()[rec.data.row_review[best_row]]
    assert result.evidence[0].review_id == best_review
    assert result.evidence[0].similarity == pytest.approx(float(sims.max()), abs=1e-3)


def test_similar_applies_filters_before_the_limit(tiny_recommender):
    rec = tiny_recommender
    filters = SearchFilters(types=("Movie",))
    allowed = [a for a, _ in rec.similar_scores(1) if matches(rec.catalog.get(a, {}), filters)]
    response = rec.similar(1, limit=3, filters=filters)
    assert [r.anime_id for r in response.results] == allowed[:3]
    assert response.total == len(allowed)


def test_similar_rejects_unknown_anime_and_bad_limits(tiny_recommender):
    with pytest.raises(UnknownAnimeError):
        tiny_recommender.similar(999_999_999)
    with pytest.raises(UnknownAnimeError):
        tiny_recommender.similar("not-a-number")
    with pytest.raises(InvalidParameterError):
        tiny_recommender.similar(1, limit=0)


def test_cli_similar(tiny_index_dir, tiny_model_dir, tiny_recommender, capsys):
    base = ("similar", "--index", tiny_index_dir, "--model", tiny_model_dir)
    code, out, err = run_cli(capsys, *base, "--json", "--limit", "3", "1")
    assert code == 0, err
    response = json.loads(out)
    assert response["query"] == tiny_recommender.catalog[1]["title"]
    assert [r["anime_id"] for r in response["results"]] == [a for a, _ in tiny_recommender.similar_scores(1)[:3]]
    assert set(response["results"][0]) >= {"anime_id", "title", "url", "image_url", "score", "count", "evidence"}
    code, out, err = run_cli(capsys, *base, "424242424")
    assert code == 2 and "not in this index" in err and not out
    code, out, err = run_cli(capsys, *base, "one-piece")
    assert code == 2 and err.startswith("error:")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``python -m recommender ARGS`` in-process (no interpreter start-up): exit code, stdout, stderr."""
    from recommender.__main__ import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
