"""The OpenAPI 3.0 description of every route, served at ``/api/v1/openapi.json``. Pure data."""

from __future__ import annotations

from recommender import __version__, config
from webapp.validation import MAX_LIST_ITEMS, REFERENCE_DEFAULT_TOP_N, SCORE_RANGE, YEAR_RANGE


def _param(name: str, schema: dict, description: str, *, where: str = "query", required: bool = False,
           explode: bool | None = None) -> dict:
    param = {"name": name, "in": where, "required": required, "description": description, "schema": schema}
    if explode is not None:
        param["explode"] = explode
    return param


def _json(schema_ref: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def _errors(*statuses: int) -> dict:
    reasons = {400: "invalid input", 404: "unknown anime or route", 405: "method not allowed",
               413: "body too large", 415: "body is not JSON", 429: "rate limited (see Retry-After)",
               500: "unexpected server error"}
    return {str(s): _json("#/components/schemas/Error", reasons[s]) for s in statuses}


def _filter_params() -> list[dict]:
    labels = {"type": "array", "items": {"type": "string"}, "maxItems": MAX_LIST_ITEMS}
    return [
        _param("genre", labels, "required genres/themes/demographics (all must match); repeat or comma-separate"),
        _param("exclude_genre", labels, "genres/themes/demographics to exclude; repeat or comma-separate"),
        _param("type", labels, "allowed MAL types (TV, Movie, OVA…); repeat or comma-separate"),
        _param("year_min", {"type": "integer", "minimum": YEAR_RANGE[0], "maximum": YEAR_RANGE[1]}, "first year"),
        _param("year_max", {"type": "integer", "minimum": YEAR_RANGE[0], "maximum": YEAR_RANGE[1]}, "last year"),
        _param("min_score", {"type": "number", "minimum": SCORE_RANGE[0], "maximum": SCORE_RANGE[1]},
               "lowest MAL score"),
        _param("nsfw", {"type": "boolean", "default": False}, "include adult titles"),
    ]


def _search_params(aggregations: list[str], default_aggregation: str) -> list[dict]:
    return [
        _param("q", {"type": "string", "minLength": 1, "maxLength": config.MAX_QUERY_CHARS},
               "what you want to watch, in your own words", required=True),
        _param("limit", {"type": "integer", "minimum": 1, "maximum": config.MAX_LIMIT,
                         "default": config.DEFAULT_LIMIT}, "anime per page"),
        _param("page", {"type": "integer", "minimum": 1, "default": 1}, "1-based page number"),
        _param("top_n", {"type": "integer", "minimum": 1, "maximum": config.MAX_TOP_N,
                         "default": config.DEFAULT_TOP_N}, "review passages retrieved before aggregation"),
        _param("aggregation", {"type": "string", "enum": aggregations, "default": default_aggregation},
               "how matching review passages become ranked anime"),
        *_filter_params(),
    ]


def _schemas(aggregations: list[str]) -> dict:
    nullable_str = {"type": "string", "nullable": True}
    evidence = {"type": "object", "required": ["review_id", "similarity", "snippet"], "properties": {
        "review_id": {"type": "string"}, "similarity": {"type": "number"}, "snippet": {"type": "string"},
        "url": nullable_str}}
    result = {"type": "object", "required": ["anime_id", "title", "url", "score", "count", "evidence"], "properties": {
        "anime_id": {"type": "integer"}, "title": {"type": "string"}, "url": {"type": "string"},
        "image_url": nullable_str, "score": {"type": "number"}, "count": {"type": "integer"},
        "evidence": {"type": "array", "items": {"$ref": "#/components/schemas/Evidence"}},
        "mal_score": {"type": "number", "nullable": True}, "type": nullable_str,
        "year": {"type": "integer", "nullable": True}, "genres": {"type": "array", "items": {"type": "string"}}}}
    results = {"type": "array", "items": {"$ref": "#/components/schemas/AnimeResult"}}
    timing = {"type": "object", "additionalProperties": {"type": "number"}}
    filters = {"type": "object", "description": "the filters applied (empty when none)"}
    search_request = {"type": "object", "required": ["q"], "additionalProperties": False, "properties": {
        "q": {"type": "string", "maxLength": config.MAX_QUERY_CHARS},
        "limit": {"type": "integer", "minimum": 1, "maximum": config.MAX_LIMIT},
        "page": {"type": "integer", "minimum": 1},
        "top_n": {"type": "integer", "minimum": 1, "maximum": config.MAX_TOP_N},
        "aggregation": {"type": "string", "enum": aggregations},
        "genre": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "exclude_genre": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "type": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "year_min": {"type": "integer"}, "year_max": {"type": "integer"},
        "min_score": {"type": "number"}, "nsfw": {"type": "boolean"}}}
    reference_row = {"type": "object", "required": ["Anime Title", "MAL Link", "Image URL", "count"], "properties": {
        "Anime Title": {"type": "string"}, "MAL Link": {"type": "string"}, "Image URL": {"type": "string"},
        "count": {"type": "integer"}}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}}}},
        "Evidence": evidence,
        "AnimeResult": result,
        "SearchRequest": search_request,
        "SearchResponse": {"type": "object", "required": ["query", "results", "page", "limit", "total"], "properties": {
            "query": {"type": "string"}, "results": results, "timing_ms": timing,
            "page": {"type": "integer"}, "limit": {"type": "integer"}, "total": {"type": "integer"},
            "pages": {"type": "integer"}, "top_n": {"type": "integer"}, "aggregation": {"type": "string"},
            "filters": filters, "terms": {"type": "array", "items": {"type": "string"},
                                          "description": "query words to highlight in snippets"}}},
        "SimilarResponse": {"type": "object", "required": ["query", "results", "anime"], "properties": {
            "query": {"type": "string"}, "results": results, "timing_ms": timing,
            "anime": {"type": "object"}, "limit": {"type": "integer"}, "filters": filters}},
        "Anime": {"type": "object", "required": ["anime_id", "title", "review_count"], "properties": {
            "anime_id": {"type": "integer"}, "title": {"type": "string"}, "url": {"type": "string"},
            "review_count": {"type": "integer"}}, "additionalProperties": True},
        "ReferenceResponse": {"type": "object", "required": ["results"], "properties": {"results": {
            "type": "array", "items": reference_row}}},
        "Health": {"type": "object", "required": ["status", "index_loaded"], "additionalProperties": True},
        "Meta": {"type": "object", "required": ["aggregations", "genres", "types"], "additionalProperties": True},
    }


def openapi_spec(aggregations: list[str], default_aggregation: str, rate_limit: str | None) -> dict:
    """The API description for the aggregations this server offers."""
    search_params = _search_params(aggregations, default_aggregation)
    anime_id = _param("anime_id", {"type": "integer", "minimum": 1}, "MyAnimeList anime id", where="path",
                      required=True)
    limited = f" Rate limit per client: {rate_limit}." if rate_limit else ""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Anime review search",
            "version": __version__,
            "description": "Describe what you want to watch; the API finds the MyAnimeList reviews closest in"
                           " meaning and recommends the anime they belong to. Every error is"
                           ' {"error": {"code", "message"}} with a 4xx status (5xx only for server faults).'
                           + limited,
        },
        "paths": {
            "/search": {"get": {
                "summary": "Reference frontend route: anime among the top-N reviews, by review count",
                "parameters": [
                    _param("query", {"type": "string", "maxLength": config.MAX_QUERY_CHARS}, "description",
                           required=True),
                    _param("top_n", {"type": "integer", "minimum": 1, "maximum": config.MAX_TOP_N,
                                     "default": REFERENCE_DEFAULT_TOP_N}, "reviews voted over"),
                ],
                "responses": {"200": _json("#/components/schemas/ReferenceResponse", "every anime voted for"),
                              **_errors(400, 429)},
            }},
            "/api/v1/search": {
                "get": {"summary": "Recommend anime for a description", "parameters": search_params,
                        "responses": {"200": _json("#/components/schemas/SearchResponse", "one page of results"),
                                      **_errors(400, 429)}},
                "post": {"summary": "Same as GET, fields in a JSON object",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/SearchRequest"}}}},
                         "responses": {"200": _json("#/components/schemas/SearchResponse", "one page of results"),
                                       **_errors(400, 413, 415, 429)}},
            },
            "/api/v1/anime/{anime_id}": {"get": {
                "summary": "Metadata and review count of one anime", "parameters": [anime_id],
                "responses": {"200": _json("#/components/schemas/Anime", "the anime"), **_errors(400, 404, 429)},
            }},
            "/api/v1/anime/{anime_id}/similar": {"get": {
                "summary": "More like this: anime whose reviews read like this one's",
                "parameters": [anime_id, search_params[1], *_filter_params()],
                "responses": {"200": _json("#/components/schemas/SimilarResponse", "similar anime"),
                              **_errors(400, 404, 429)},
            }},
            "/api/v1/health": {"get": {
                "summary": "Index loaded, counts and model (not rate limited)",
                "responses": {"200": _json("#/components/schemas/Health", "the server is up")},
            }},
            "/api/v1/meta": {"get": {
                "summary": "Aggregations, genres, types and year range available for filters",
                "responses": {"200": _json("#/components/schemas/Meta", "filter choices"), **_errors(429)},
            }},
            "/api/v1/openapi.json": {"get": {
                "summary": "This document", "responses": {"200": {"description": "OpenAPI 3.0 description"}},
            }},
            "/": {"get": {"summary": "The web page (HTML; app.js and style.css beside it)",
                          "responses": {"200": {"description": "HTML page"}}}},
        },
        "components": {"schemas": _schemas(aggregations)},
    }
