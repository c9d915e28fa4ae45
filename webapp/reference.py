"""The reference frontend's route, kept byte-compatible: ``GET /search?query=...&top_n=...``."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from webapp.validation import Fields, parse_reference

reference = Blueprint("reference", __name__)


@reference.get("/search")
def search():
    """``{"results": [{"Anime Title", "MAL Link", "Image URL", "count"}, ...]}``, most-voted first."""
    query, top_n = parse_reference(Fields.from_query_string(request.args.items(multi=True)))
    return jsonify({"results": current_app.extensions["anime_search"].reference(query, top_n)})
