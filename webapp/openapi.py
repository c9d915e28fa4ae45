"""The OpenAPI 3.0 description of every route, served at ``/api/v1/openapi.json``. Pure data.

Every bound the server enforces is stated here (and every value the document allows is accepted;
``tests/test_openapi_fuzz.py`` checks both with schemathesis). The one rule JSON Schema cannot say,
``year_min ≤ year_max``, is in the parameters' descriptions.
"""

from __future__ import annotations

from recommender import __version__, config
from recommender.validation import (
    MAX_LABEL_CHARS,
    MAX_LIST_ITEMS,
    MAX_PAGE,
    QUERY_NOISE,
    REFERENCE_DEFAULT_LIMIT,
    REFERENCE_DEFAULT_TOP_N,
    SCORE_RANGE,
    YEAR_RANGE,
)
from scraping.models import MAX_ANIME_ID

#: A query must hold at least one character that is neither whitespace nor noise the server removes.
QUERY_PATTERN = f"[^\\s{QUERY_NOISE}]"
YEAR_RULE = "year_min must not be after year_max (a 400 otherwise)"


def _param(name: str, schema: dict, description: str, *, where: str = "query", required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "description": description, "schema": schema}


def _json(schema_ref: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


_REASONS = {400: "invalid input", 404: "unknown anime or route", 405: "method not allowed",
            413: "body too large", 415: "body is not JSON", 429: "rate limited (see Retry-After)",
            431: "request headers too large", 500: "unexpected server error"}


def _errors(*statuses: int, schema: str = "Error") -> dict:
    return {str(s): _json(f"#/components/schemas/{schema}", _REASONS[s]) for s in statuses}


def _query_text(max_chars: int) -> dict:
    return {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": QUERY_PATTERN}


def _labels(known: list[str]) -> dict:
    """An array of catalogue labels; an index without any accepts none."""
    if not known:
        return {"type": "array", "items": {"type": "string"}, "maxItems": 0}
    return {"type": "array", "items": {"type": "string", "enum": known, "maxLength": MAX_LABEL_CHARS},
            "maxItems": MAX_LIST_ITEMS}


def _integer(low: int, high: int, default: int | None = None) -> dict:
    schema = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return schema


def _filter_fields(genres: list[str], types: list[str]) -> dict[str, tuple[dict, str]]:
    """Name → (schema, description) of the filter fields, shared by query strings and the JSON body."""
    return {
        "genre": (_labels(genres), "required genres/themes/demographics (all must match; any case);"
                                   " repeat the field or separate with commas; the values are in /api/v1/meta"),
        "exclude_genre": (_labels(genres), "genres/themes/demographics to exclude; repeat or comma-separate"),
        "type": (_labels(types), "allowed MAL types (TV, Movie, OVA…; any case); repeat or comma-separate"),
        "year_min": (_integer(*YEAR_RANGE), f"first year aired, at the earliest; {YEAR_RULE}"),
        "year_max": (_integer(*YEAR_RANGE), f"first year aired, at the latest; {YEAR_RULE}"),
        "min_score": ({"type": "number", "minimum": SCORE_RANGE[0], "maximum": SCORE_RANGE[1]}, "lowest MAL score"),
        "nsfw": ({"type": "boolean", "default": False}, "include adult titles (true or false)"),
    }


def _search_fields(aggregations: list[str], default_aggregation: str, genres: list[str],
                   types: list[str]) -> dict[str, tuple[dict, str]]:
    return {
        "q": (_query_text(config.MAX_QUERY_CHARS), "what you want to watch, in your own words"),
        "limit": (_integer(1, config.MAX_LIMIT, config.DEFAULT_LIMIT), "anime per page"),
        "page": (_integer(1, MAX_PAGE, 1), "1-based page number; a page past the last ranked anime is empty"),
        "top_n": (_integer(1, config.MAX_TOP_N, config.DEFAULT_TOP_N),
                  "review passages retrieved before aggregation"),
        "aggregation": ({"type": "string", "enum": aggregations, "default": default_aggregation},
                        "how matching review passages become ranked anime"),
        **_filter_fields(genres, types),
    }


def _schemas(aggregations: list[str], search_fields: dict[str, tuple[dict, str]]) -> dict:
    nullable_str = {"type": "string", "nullable": True}
    evidence = {"type": "object", "required": ["review_id", "similarity", "snippet"], "properties": {
        "review_id": {"type": "string"}, "similarity": {"type": "number"}, "snippet": {"type": "string"},
        "url": nullable_str,
        "review_score": {"type": "integer", "minimum": 1, "maximum": 10, "nullable": True,
                         "description": "the reviewer's score (1-10), null when unknown"},
        "verdict": {"type": "string", "enum": ["Recommended", "Mixed Feelings", "Not Recommended", None],
                    "nullable": True,
                    "description": "MyAnimeList's verdict tag of the review, null when untagged"},
        "negative": {"type": "boolean",
                     "description": "the review is negative: a score of 4 or less, or tagged Not Recommended"}}}
    result = {"type": "object", "required": ["anime_id", "title", "url", "score", "count", "evidence"], "properties": {
        "anime_id": {"type": "integer"}, "title": {"type": "string"}, "url": {"type": "string"},
        "image_url": nullable_str, "score": {"type": "number"}, "count": {"type": "integer"},
        "evidence": {"type": "array", "items": {"$ref": "#/components/schemas/Evidence"}},
        "mal_score": {"type": "number", "nullable": True}, "type": nullable_str,
        "year": {"type": "integer", "nullable": True}, "genres": {"type": "array", "items": {"type": "string"}}}}
    results = {"type": "array", "items": {"$ref": "#/components/schemas/AnimeResult"}}
    timing = {"type": "object", "additionalProperties": {"type": "number"}}
    filters = {"type": "object", "description": "the filters applied (empty when none)"}
    body_fields = {}
    for name, (schema, description) in search_fields.items():
        if schema.get("type") == "array":  # a JSON body may also give one label (or comma-separated labels) as text
            schema = {"oneOf": [schema["items"], schema]} if schema.get("maxItems") else schema
        body_fields[name] = {**{k: v for k, v in schema.items() if k != "default"}, "description": description}
    search_request = {"type": "object", "required": ["q"], "additionalProperties": False, "properties": body_fields}
    reference_row = {"type": "object", "required": ["Anime Title", "MAL Link", "Image URL", "count"], "properties": {
        "Anime Title": {"type": "string"}, "MAL Link": {"type": "string"}, "Image URL": {"type": "string"},
        "count": {"type": "integer"}}}
    error = {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}}
    return {
        "Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                  "properties": {"error": error}},
        "ReferenceError": {"type": "object", "required": ["error", "results"], "additionalProperties": False,
                           "description": "an error on the reference route: also an empty result list, so the"
                                          " reference frontend renders nothing instead of crashing",
                           "properties": {"error": error, "results": {"type": "array", "maxItems": 0}}},
        "Evidence": evidence,
        "AnimeResult": result,
        "SearchRequest": search_request,
        "SearchResponse": {"type": "object", "required": ["query", "results", "page", "limit", "total"], "properties": {
            "query": {"type": "string"}, "results": results, "timing_ms": timing,
            "page": {"type": "integer"}, "limit": {"type": "integer"}, "total": {"type": "integer"},
            "pages": {"type": "integer"}, "top_n": {"type": "integer"},
            "aggregation": {"type": "string", "enum": aggregations},
            "filters": filters, "terms": {"type": "array", "items": {"type": "string"},
                                          "description": "query words to highlight in snippets"}}},
        "SimilarResponse": {"type": "object", "required": ["query", "results", "anime"], "properties": {
            "query": {"type": "string"}, "results": results, "timing_ms": timing,
            "anime": {"type": "object"}, "limit": {"type": "integer"}, "filters": filters}},
        "Anime": {"type": "object", "required": ["anime_id", "title", "review_count"], "properties": {
            "anime_id": {"type": "integer"}, "title": {"type": "string"}, "url": {"type": "string"},
            "review_count": {"type": "integer"}}, "additionalProperties": True},
        "ReferenceResponse": {"type": "object", "required": ["results"], "additionalProperties": False,
                              "properties": {"results": {"type": "array", "items": reference_row}}},
        "Health": {"type": "object", "required": ["status", "index_loaded", "index"], "additionalProperties": True,
                   "properties": {"status": {"type": "string", "enum": ["ok"]}, "index_loaded": {"type": "boolean"},
                                  "index": {"type": "string", "nullable": True,
                                            "description": "the index directory's name (not its path)"}}},
        "Meta": {"type": "object", "required": ["aggregations", "genres", "types"], "additionalProperties": True},
    }


def openapi_spec(aggregations: list[str], default_aggregation: str, rate_limit: str | None,
                 genres: list[str] | None = None, types: list[str] | None = None,
                 max_body_bytes: int = 64 * 1024) -> dict:
    """The API description for what this server offers: its aggregations, and its index's genres and types."""
    fields = _search_fields(aggregations, default_aggregation, list(genres or []), list(types or []))
    search_params = [_param(name, schema, description, required=name == "q")
                     for name, (schema, description) in fields.items()]
    similar_params = [_param(name, schema, description) for name, (schema, description) in fields.items()
                      if name == "limit" or name in _filter_fields([], [])]
    anime_id = _param("anime_id", _integer(1, MAX_ANIME_ID), "MyAnimeList anime id", where="path", required=True)
    reference_params = [
        _param("query", _query_text(config.MAX_QUERY_CHARS),
               "what you want to watch. May be sent unencoded, as the reference frontend does: everything from"
               " `query=` up to the trailing `&top_n=`/`&limit=`/`&aggregation=` fields is the query, `&` included"
               " (a `#` ends the URL in the browser and is lost)", required=True),
        _param("top_n", _integer(1, config.MAX_TOP_N, REFERENCE_DEFAULT_TOP_N), "review passages ranked over"),
        _param("limit", _integer(1, config.MAX_LIMIT, REFERENCE_DEFAULT_LIMIT),
               "rows returned (the reference frontend showed 18)"),
        _param("aggregation", {"type": "string", "enum": aggregations, "default": default_aggregation},
               "ranking; `count` reproduces the reference system's vote"),
    ]
    limited = f" Rate limit per client: {rate_limit}." if rate_limit else ""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Anime review search",
            "version": __version__,
            "description": "Describe what you want to watch; the API finds the MyAnimeList reviews closest in"
                           " meaning and recommends the anime they belong to. Every error is"
                           ' {"error": {"code", "message"}} with a 4xx status (5xx only for server faults).'
                           " A field given twice, or given empty (`top_n=`, JSON null), is a 400, as is a query"
                           f" string that is not UTF-8. Bodies over {max_body_bytes} bytes are refused with 413"
                           " before they are read." + limited,
        },
        "paths": {
            "/search": {"get": {
                "summary": "Reference frontend route: the reference response shape, ranked by the default"
                           " aggregation",
                "parameters": reference_params,
                "responses": {"200": _json("#/components/schemas/ReferenceResponse", "the best anime, best first"),
                              **_errors(400, 429, schema="ReferenceError")},
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
                "parameters": [anime_id, *similar_params],
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
                "summary": "This document (not rate limited)",
                "responses": {"200": {"description": "OpenAPI 3.0 description",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/": {"get": {"summary": "The web page (HTML; app.js and style.css beside it)",
                          "responses": {"200": {"description": "HTML page",
                                                "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": _schemas(aggregations, fields)},
    }
