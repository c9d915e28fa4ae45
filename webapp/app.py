"""The Flask application factory: one recommender, JSON everywhere, limits, CORS, security headers, logging, gzip."""

from __future__ import annotations

import gzip
import logging
import math
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from flask import Flask, current_app, g, request
from flask_cors import CORS
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from recommender import config as rconfig
from recommender.errors import IndexNotFoundError
from webapp.api_v1 import api_v1
from webapp.errors import register_error_handlers
from webapp.headers import SECURITY_HEADERS
from webapp.page import page
from webapp.reference import reference
from webapp.service import SearchService

log = logging.getLogger("webapp")

DEFAULTS: dict[str, object] = {
    #: An already loaded Recommender (tests, benchmarks); otherwise INDEX_DIR is loaded.
    "RECOMMENDER": None,
    "INDEX_DIR": None,
    "MODEL": None,
    "DEVICE": None,
    #: flask-limiter syntax, per client address; "10 per second" keeps one client from starving the others.
    "RATE_LIMIT": "10 per second",
    "RATE_LIMIT_ENABLED": True,
    "RATE_LIMIT_STORAGE": "memory://",
    #: Origins browsers may call the API and the reference route from: a list, or "*" for any (never "null").
    #: The default is where the reference frontend's development server runs (``npm start``).
    "CORS_ORIGINS": ["http://localhost:3000", "http://127.0.0.1:3000"],
    "GZIP": True,
    "GZIP_MIN_BYTES": 1024,
    #: Search bodies are a few hundred bytes; anything near this is abuse.
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "WEB_DIR": str(rconfig.PROJECT_ROOT / "web"),
    "LOG_REQUESTS": True,
    #: Seconds between checks for a rebuilt index (its manifest changed), which is then loaded and swapped in;
    #: 0 turns the watcher off. ``python api.py`` checks every 5 s.
    "RELOAD_INTERVAL_S": 0.0,
}

#: Endpoints that are never rate limited: the page and its assets, the health probe and the API description.
UNLIMITED_ENDPOINTS = frozenset({"page.index", "page.asset", "api_v1.health", "api_v1.openapi"})
#: Methods any route has; CORS advertises these and no others.
CORS_METHODS = ["GET", "POST"]
#: What "*" allows: any http(s) origin, echoed back, but never "null".
ANY_WEB_ORIGIN = re.compile(r"https?://[^/\s]+", re.IGNORECASE)
#: Characters of a request's query string kept in the access log.
LOGGED_QUERY_CHARS = 200
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_COMPRESSIBLE = ("application/json", "text/html", "text/css", "text/javascript", "application/javascript")


def _load_recommender(settings: Mapping[str, object]):
    from recommender.search import Recommender

    if settings.get("RECOMMENDER") is not None:
        return settings["RECOMMENDER"]
    index_dir = settings.get("INDEX_DIR")
    if not index_dir:
        raise IndexNotFoundError("no index given: set INDEX_DIR (python api.py --index DIR)")
    return Recommender.load(Path(str(index_dir)), model=settings.get("MODEL"), device=settings.get("DEVICE"))


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]
    g.started = time.perf_counter()


def _gzip(response):
    """Compress text responses for clients that accept gzip (the JSON of a full page is ~10 KB)."""
    if (response.status_code < 200 or response.status_code >= 300 or response.direct_passthrough
            or "Content-Encoding" in response.headers or response.mimetype not in _COMPRESSIBLE
            or "gzip" not in request.headers.get("Accept-Encoding", "").lower()):
        return response
    data = response.get_data()
    if len(data) < int(current_app.config["GZIP_MIN_BYTES"]):
        return response
    response.set_data(gzip.compress(data, compresslevel=5))
    response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    return response


def _finish_request(response):
    response.headers["X-Request-ID"] = g.get("request_id", "-")
    elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1e3
    response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.1f}"
    return response


def _final_headers(response):
    """Security headers on every response; ``Retry-After`` on a 429 only, as a whole number of seconds ≥ 1.

    Registered before the rate limiter so that it runs after the limiter has added its headers.
    """
    response.headers.update(SECURITY_HEADERS)
    retry_after = response.headers.get("Retry-After")
    if response.status_code != 429:
        response.headers.pop("Retry-After", None)
    else:
        try:
            seconds = math.ceil(float(retry_after))
        except (TypeError, ValueError):
            seconds = 1
        response.headers["Retry-After"] = str(max(1, seconds))
    return response


def cors_origins(origins: object) -> list[str | re.Pattern]:
    """The allowed CORS origins: ``scheme://host[:port]`` strings, or for "*" any http(s) origin.

    Raises:
        ValueError: ``null`` (sandboxed pages and files send it; allowing it allows everyone), or a malformed origin.
    """
    if origins == "*" or origins == ["*"]:
        return [ANY_WEB_ORIGIN]
    listed = [origins] if isinstance(origins, str) else list(origins or [])
    for origin in listed:
        if origin.strip().lower() == "null":
            raise ValueError("CORS origin 'null' is refused: any sandboxed page or local file would be allowed")
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
            raise ValueError(f"CORS origin {origin!r} is not of the form scheme://host[:port]")
    return listed


def _log_line(response):
    elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1e3
    query = request.query_string.decode("latin-1")
    if len(query) > LOGGED_QUERY_CHARS:  # a 5,000-character query must not flood the log
        query = f"{query[:LOGGED_QUERY_CHARS]}…(+{len(query) - LOGGED_QUERY_CHARS} chars)"
    path = request.path[:LOGGED_QUERY_CHARS] + (f"?{query}" if query else "")
    log.info("%s %s %s %d %.1fms %s", g.get("request_id", "-"), request.method, path, response.status_code,
             elapsed_ms, request.remote_addr)
    return response


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the application around one loaded recommender.

    Args:
        config: overrides of :data:`DEFAULTS`, e.g. ``{"RECOMMENDER": rec}`` or
            ``{"INDEX_DIR": "data/index/all-MiniLM-L6-v2", "RATE_LIMIT": "50 per second"}``.

    Raises:
        IndexNotFoundError, IndexMismatchError, ModelNotFoundError: the index cannot be loaded.
    """
    settings = {**DEFAULTS, **(config or {})}
    origins = cors_origins(settings["CORS_ORIGINS"])
    recommender = _load_recommender(settings)

    app = Flask(__name__, static_folder=None)
    app.config.update({k: v for k, v in settings.items() if k != "RECOMMENDER"})
    service = SearchService(recommender, index_dir=settings.get("INDEX_DIR"), model=settings.get("MODEL"),
                            device=settings.get("DEVICE"))
    app.extensions["anime_search"] = service
    service.watch(float(settings["RELOAD_INTERVAL_S"]))

    # Before the limiter's own hooks, so a refused request still gets an id and a timing, and so that
    # _final_headers (after_request functions run last-registered first) sees the limiter's headers.
    app.before_request(_start_request)
    app.after_request(_final_headers)
    Limiter(
        get_remote_address, app=app,
        # One budget per client across all routes (default_limits would give every route its own).
        application_limits=[str(settings["RATE_LIMIT"])],
        application_limits_exempt_when=lambda: request.endpoint in UNLIMITED_ENDPOINTS or request.method == "OPTIONS",
        storage_uri=str(settings["RATE_LIMIT_STORAGE"]),
        headers_enabled=True,
        enabled=bool(settings["RATE_LIMIT_ENABLED"]),
    )
    CORS(app, resources={r"/api/*": {"origins": origins}, r"/search": {"origins": origins}},
         methods=CORS_METHODS, vary_header=True,
         expose_headers=["Retry-After", "X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                         "X-RateLimit-Reset"])

    register_error_handlers(app)
    app.register_blueprint(reference)
    app.register_blueprint(api_v1)
    app.register_blueprint(page)

    if settings["GZIP"]:
        app.after_request(_gzip)
    app.after_request(_finish_request)
    if settings["LOG_REQUESTS"]:
        app.after_request(_log_line)
    return app
