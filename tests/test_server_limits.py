"""waitress as a slow or oversized client meets it: a real server on a loopback port, raw sockets.

The settings under test are the ones ``python api.py`` uses (``webapp.server.SERVER_LIMITS``).
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from webapp import create_app
from webapp.app import DEFAULTS
from webapp.server import make_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def address(tiny_recommender):
    app = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT_ENABLED": False})
    server = make_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield "127.0.0.1", server.effective_port
    server.close()
    thread.join(timeout=5)


def exchange(address, head: bytes, body: bytes = b"", timeout: float = 5.0) -> tuple[int, dict, bytes, float]:
    """Send raw bytes, read the whole response: status, headers, body and seconds until the first byte."""
    with socket.create_connection(address, timeout=timeout) as sock:
        started = time.perf_counter()
        sock.sendall(head + body)
        chunks = [sock.recv(65536)]
        first_byte = time.perf_counter() - started
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head_part, _, payload = raw.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    return int(lines[0].split()[1]), headers, payload, first_byte


def post_head(length: int) -> bytes:
    return (f"POST /api/v1/search HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def json_error(headers: dict, payload: bytes) -> dict:
    assert headers["content-type"].startswith("application/json"), (headers, payload[:200])
    return json.loads(payload)["error"]


def test_declared_huge_body_is_refused_before_it_is_read(address):
    status, headers, payload, seconds = exchange(address, post_head(209_715_200))  # 200 MB declared, none sent
    assert status == 413 and seconds < 2
    assert json_error(headers, payload)["code"] == "payload_too_large"


def test_declared_100_mb_with_9_bytes_sent_is_answered_at_once(address):
    status, headers, payload, seconds = exchange(address, post_head(100 * 2**20), b'{"q": "x"')
    assert status == 413 and seconds < 2
    assert json_error(headers, payload)["code"] == "payload_too_large"


def test_server_body_limit_equals_the_app_limit(address):
    limit = DEFAULTS["MAX_CONTENT_LENGTH"]
    at_limit = b'{"q": "' + b"x" * (limit - 9) + b'"}'
    assert len(at_limit) == limit
    status, headers, payload, _ = exchange(address, post_head(limit), at_limit)
    assert status == 400 and json_error(headers, payload)["code"] == "invalid_query"  # read and judged by the app
    status, headers, payload, _ = exchange(address, post_head(limit + 1), at_limit + b" ")
    assert status == 413 and json_error(headers, payload)["code"] == "payload_too_large"


def test_huge_header_is_a_json_431(address):
    head = b"GET /api/v1/health HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"a" * 300_000 + b"\r\n\r\n"
    status, headers, payload, _ = exchange(address, head)
    assert status == 431
    assert json_error(headers, payload)["code"] == "headers_too_large"


def test_200_idle_connections_do_not_block_health(address):
    idle = []
    try:
        for _ in range(200):
            sock = socket.create_connection(address, timeout=5)
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: test\r\n")  # headers never finished
            idle.append(sock)
        time.sleep(0.3)  # let the server accept them all
        started = time.perf_counter()
        status, _, payload, _ = exchange(address, b"GET /api/v1/health HTTP/1.1\r\nHost: test\r\n"
                                                  b"Connection: close\r\n\r\n", timeout=5)
        assert status == 200 and json.loads(payload)["status"] == "ok"
        assert time.perf_counter() - started < 1.0
    finally:
        for sock in idle:
            sock.close()
