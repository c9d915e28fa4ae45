"""JSON errors for the HTTP edge: one shape, ``{"error": {"code", "message"}}``, for every failure."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from recommender.errors import RecommenderError

log = logging.getLogger("webapp")

#: HTTP status of each domain error code; codes not listed are server-side problems.
STATUS_OF_CODE = {
    "invalid_query": 400,
    "invalid_parameter": 400,
    "unknown_aggregation": 400,
    "unknown_anime": 404,
    "index_not_found": 503,
    "index_mismatch": 503,
    "model_not_found": 503,
}

#: Stable machine-readable codes for the HTTP-level errors Werkzeug raises.
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


class ApiError(Exception):
    """A request the API refuses, with its HTTP status and a stable ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


#: The reference frontend's route: its errors also carry an empty result list (see :func:`_respond`).
REFERENCE_PATH = "/search"


def error_body(code: str, message: str, request_id: str | None = None) -> dict:
    """The JSON document of an error response."""
    error = {"code": code, "message": message}
    if request_id:
        error["request_id"] = request_id
    return {"error": error}


def _respond(status: int, code: str, message: str, headers: dict | None = None):
    body = error_body(code, message, g.get("request_id"))
    if request.path == REFERENCE_PATH:
        # The reference frontend calls results.map() on whatever comes back; without a list the page goes blank.
        body["results"] = []
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_message(exc: HTTPException) -> str:
    if exc.code == 404:
        return "no such route; see /api/v1/openapi.json for the API"
    if exc.code == 429:
        return f"too many requests ({exc.description}); slow down and retry after the Retry-After seconds"
    return exc.description or exc.name


def register_error_handlers(app: Flask) -> None:
    """Answer every error, including unknown routes, wrong methods and crashes, as JSON."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return _respond(exc.status, exc.code, exc.message)

    @app.errorhandler(RecommenderError)
    def _domain_error(exc: RecommenderError):
        status = STATUS_OF_CODE.get(exc.code)
        if status is None:
            log.error("request %s: %s: %s", g.get("request_id"), type(exc).__name__, exc)
            return _respond(500, "internal_error", "the server could not answer this request")
        return _respond(status, exc.code, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        headers = {}
        if exc.response is not None:  # e.g. flask-limiter's own response; keep its Retry-After
            headers = {k: v for k, v in exc.response.headers.items() if k.lower().startswith(("retry-", "x-rate"))}
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return _respond(status, HTTP_CODES.get(status, "http_error"), _http_message(exc), headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # The traceback goes to the log only; the client gets the request id to quote.
        log.exception("request %s failed", g.get("request_id"))
        return _respond(500, "internal_error", "unexpected server error; quote the request id when reporting it")
