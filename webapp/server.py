"""waitress, with every limit on what one client may cost the server set here, in one place.

``python api.py`` serves through :func:`make_server`; README "Server limits" explains each value and
what belongs to a reverse proxy instead (TLS, per-address connection caps).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from flask import Flask
from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from webapp.errors import HTTP_CODES, error_body
from webapp.headers import SECURITY_HEADERS

#: waitress settings; ``max_request_body_size`` is derived from the app's own body limit in :func:`server_limits`.
SERVER_LIMITS: dict[str, object] = {
    # Request line plus headers; a search URL is a few KB, so 64 KiB leaves room and refuses a 300 KB header (431).
    "max_request_header_size": 64 * 1024,
    # Seconds a connection may be idle (between or inside requests) before it is closed ...
    "channel_timeout": 15,
    # ... checked this often; together they bound how long a slow or silent client holds a slot.
    "cleanup_interval": 2,
    # Open connections before waitress stops accepting. 1,000 idle or slow sockets (each costs a file
    # descriptor and a few KB) leave the health probe and real clients room; per-address caps belong to the proxy.
    "connection_limit": 1000,
    # poll(), not select(): select() cannot watch file descriptors above 1023, which 1,000 connections exceed.
    "asyncore_use_poll": True,
    # Queue of connections the kernel holds before waitress accepts them.
    "backlog": 1024,
}


def server_limits(app: Flask) -> dict[str, object]:
    """The waitress settings for ``app``: :data:`SERVER_LIMITS` plus a body limit equal to the app's.

    waitress refuses a declared ``Content-Length`` at or above ``max_request_body_size`` as soon as
    the headers are in (without reading the body), while Flask refuses bodies above
    ``MAX_CONTENT_LENGTH``; one more byte makes the two limits the same.
    """
    return {**SERVER_LIMITS, "max_request_body_size": int(app.config["MAX_CONTENT_LENGTH"]) + 1}


class JsonErrorTask(ErrorTask):
    """waitress's own error responses (400, 413, 431, 501 before the app is reached) in the API's JSON shape."""

    _MESSAGES: Mapping[int, str] = {
        413: "the request body is larger than this server accepts",
        431: "the request headers are larger than this server accepts",
    }

    def execute(self) -> None:
        error = self.request.error
        message = self._MESSAGES.get(error.code, f"{error.reason}: {error.body}")
        body = json.dumps(error_body(HTTP_CODES.get(error.code, "http_error"), message)).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), *SECURITY_HEADERS.items()])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    """An HTTP channel whose protocol-level errors are JSON."""

    error_task_class = JsonErrorTask


def make_server(app: Flask, host: str, port: int, threads: int, **overrides: object):
    """A waitress server for ``app`` with :func:`server_limits` (``overrides`` replace single settings).

    Returns:
        The server; ``.run()`` serves, ``.close()`` stops, ``.effective_port`` is the bound port.
    """
    server = create_server(app, host=host, port=port, threads=threads, **{**server_limits(app), **overrides})
    # One listening socket per address family when a host name resolves to several: each gets the JSON channel.
    listeners = [server] if hasattr(server, "channel_class") else [
        s for s in server.map.values() if hasattr(s, "channel_class")]
    for listener in listeners:
        listener.channel_class = JsonErrorChannel
    return server
