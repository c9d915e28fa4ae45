"""The reference frontend's route: ``GET /search?query=...&top_n=...``, same response shape, today's ranking."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from recommender.validation import parse_reference, reference_fields

reference = Blueprint("reference", __name__)


@reference.get("/search")
def search():
    """``{"results": [{"Anime Title", "MAL Link", "Image URL", "count"}, ...]}``, best first.

    Ranked by the default aggregation unless ``aggregation`` is given (``count`` is the reference
    system's vote); 18 rows unless ``limit`` is given. The query is read from the raw query string
    the way the reference frontend writes it, unencoded ``&`` included (see
    :func:`recommender.validation.reference_fields`); errors also carry ``"results": []``.
    """
    service = current_app.extensions["anime_search"]
    params = parse_reference(reference_fields(request.query_string), service.aggregations,
                             service.default_aggregation)
    return jsonify({"results": service.reference(params)})
