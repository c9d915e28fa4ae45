"""``/api/v1``: search (GET and POST), anime, similar, health, meta and the OpenAPI document."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, jsonify, request

from recommender import config
from recommender.validation import SEARCH_FIELDS, Fields, check_int, parse_filters, parse_search
from scraping.models import MAX_ANIME_ID
from webapp.errors import ApiError
from webapp.openapi import openapi_spec
from webapp.service import SearchService

api_v1 = Blueprint("api_v1", __name__, url_prefix="/api/v1")


def service() -> SearchService:
    return current_app.extensions["anime_search"]


def json_fields(allowed: frozenset[str]) -> Fields:
    """The request's JSON object body as :class:`Fields`.

    Raises:
        ApiError: 415 when the body is not declared as JSON, 400 when it is not valid UTF-8 JSON.
        InvalidParameterError: valid JSON but not an object of known fields.
    """
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"send the fields as a JSON object with Content-Type: application/json"
                       f" (got {request.mimetype or 'no content type'})")
    raw = request.get_data(cache=False)  # MAX_CONTENT_LENGTH is enforced here (413)
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not UTF-8 text") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    return Fields.from_json_object(document, allowed)


def parse_anime_id(raw: str) -> int:
    """Path segment → anime id (1 to 2³¹−1, ASCII digits only).

    Raises:
        InvalidParameterError: anything else (a 400).
    """
    return check_int("anime id", raw, 1, MAX_ANIME_ID)


def query_fields() -> Fields:
    """The request's query string as :class:`Fields`, decoded strictly (invalid UTF-8 is a 400)."""
    return Fields.from_query_string(request.query_string)


@api_v1.get("/search")
def search_get():
    svc = service()
    params = parse_search(query_fields(), svc.aggregations, svc.default_aggregation, svc.genres, svc.types)
    return jsonify(svc.search(params))


@api_v1.post("/search")
def search_post():
    svc = service()
    params = parse_search(json_fields(SEARCH_FIELDS), svc.aggregations, svc.default_aggregation,
                          svc.genres, svc.types)
    return jsonify(svc.search(params))


@api_v1.get("/anime/<raw_id>")
def anime(raw_id: str):
    return jsonify(service().anime(parse_anime_id(raw_id)))


@api_v1.get("/anime/<raw_id>/similar")
def similar(raw_id: str):
    svc = service()
    anime_id = parse_anime_id(raw_id)
    fields = query_fields()
    limit = fields.integer("limit", config.DEFAULT_LIMIT, 1, config.MAX_LIMIT)
    filters = parse_filters(fields, svc.genres, svc.types)
    return jsonify(svc.similar(anime_id, limit, filters))


@api_v1.get("/health")
def health():
    return jsonify(service().health())


@api_v1.get("/meta")
def meta():
    return jsonify(service().meta())


@api_v1.get("/openapi.json")
def openapi():
    svc = service()
    rate_limit = current_app.config["RATE_LIMIT"] if current_app.config["RATE_LIMIT_ENABLED"] else None
    return jsonify(openapi_spec(svc.aggregations, svc.default_aggregation, rate_limit, genres=svc.genres,
                                types=svc.types, max_body_bytes=int(current_app.config["MAX_CONTENT_LENGTH"])))

