"""Polite HTTP fetching: the only module that imports httpx.

Politeness rules, all enforced here so no caller can forget them:

* one ``httpx.Client`` with an honest User-Agent that names the project;
* robots.txt is read once per host and obeyed (including a ``Crawl-delay`` longer than ours);
* at most one request in flight per host, and a pause of ``delay`` seconds plus random jitter
  between the end of one request and the start of the next (``delay`` is never below 1 s);
* 429, 5xx, timeouts and connection errors are retried with exponential backoff, waiting at least
  as long as the server's ``Retry-After``; after ``max_tries`` the URL is given up (:class:`FetchError`);
* every successful page goes into the raw-page cache first, and a cached URL is never requested again.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from scraping.cache import CachedPage, PageCache
from scraping.urls import robots_url

log = logging.getLogger(__name__)

PROJECT = "anime-review-search"
VERSION = "0.1"
USER_AGENT = (
    f"{PROJECT}/{VERSION} (hobby research crawler for a MyAnimeList review search demo; "
    "one request at a time, >= 2 s apart, honours robots.txt) python-httpx"
)
MIN_DELAY_S = 1.0

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


class FetchError(Exception):
    """A URL was given up: robots.txt forbids it, it answered a non-retryable status, or every try failed."""

    def __init__(self, url: str, reason: str, *, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(f"{reason} ({url})")
        self.url = url
        self.reason = reason
        self.status = status
        self.attempts = attempts


class RobotsDisallowed(FetchError):
    """robots.txt does not allow this crawler to fetch the URL."""


@dataclass
class FetchConfig:
    """Knobs of the fetcher. Defaults are the polite ones; ``delay`` below 1 s is refused.

    Attributes:
        delay: Minimum seconds between two requests to one host.
        jitter: Extra random pause, as a fraction of ``delay`` (uniform in ``[0, jitter * delay]``).
        max_tries: HTTP attempts per URL before it is recorded as failed.
        backoff_base: First retry waits this long; each further retry doubles it.
        backoff_max: Upper bound of one exponential backoff wait.
        retry_after_max: Longest ``Retry-After`` obeyed as given; longer (or absurd) values are cut to this.
        timeout: Seconds before one request counts as timed out.
        respect_robots: Read and obey robots.txt (tests against a fake site may switch it off).
        user_agent: The User-Agent header.
    """

    delay: float = 2.0
    jitter: float = 0.5
    max_tries: int = 5
    backoff_base: float = 5.0
    backoff_max: float = 600.0
    retry_after_max: float = 3600.0
    timeout: float = 30.0
    respect_robots: bool = True
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        if self.delay < MIN_DELAY_S:
            raise ValueError(f"delay must be at least {MIN_DELAY_S:g} s (got {self.delay:g}); MAL is a shared site")
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0 (got {self.jitter:g})")
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be >= 1 (got {self.max_tries})")

    @property
    def mean_interval(self) -> float:
        """Average seconds between request starts when the server answers instantly."""
        return self.delay * (1 + self.jitter / 2)


@dataclass(frozen=True)
class Page:
    """A fetched (or cached) page."""

    url: str
    status: int
    text: str
    fetched_at: float
    from_cache: bool = False
    final_url: str | None = None


@dataclass
class FetchStats:
    """Counters for progress output and tests."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    slept_s: float = 0.0


# Seams so the command-line path can be driven against a fake site with a fake clock in tests.
def _default_transport() -> httpx.BaseTransport | None:
    return None


def _default_clock_and_sleep() -> tuple[Callable[[], float], Callable[[float], None]]:
    return time.monotonic, time.sleep


def mock_transport(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.BaseTransport:
    """An in-memory transport answering every request with ``handler(request)`` (for tests and dry runs)."""
    return httpx.MockTransport(handler)


class Fetcher:
    """Fetches pages politely through one shared client; see the module docstring for the rules.

    Args:
        config: Politeness and retry settings.
        cache: Raw-page cache; None disables caching (every get is a request).
        transport: httpx transport to use instead of the network (tests pass a mock one).
        clock: Monotonic seconds; injected so tests can run a fake clock.
        sleep: Sleeps for the given seconds; injected so tests never really sleep.
        rng: Source of the jitter.
        wall_clock: Epoch seconds, for fetch times and HTTP-date ``Retry-After`` values.
    """

    def __init__(
        self,
        config: FetchConfig | None = None,
        *,
        cache: PageCache | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config or FetchConfig()
        self.cache = cache
        default_clock, default_sleep = _default_clock_and_sleep()
        self._clock = clock or default_clock
        self._sleep = sleep or default_sleep
        self._wall = wall_clock or time.time
        self._rng = rng or random.Random()
        self._transport = transport if transport is not None else _default_transport()
        self._client: httpx.Client | None = None
        self._robots: dict[str, RobotFileParser] = {}
        self._next_allowed: dict[str, float] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.stats = FetchStats()

    # ---- lifecycle -----------------------------------------------------------------------
    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock the fetcher paces itself by (a fake one in tests)."""
        return self._clock

    @property
    def client(self) -> httpx.Client:
        """The shared client, created on first use (so constructing a Fetcher does no I/O)."""
        if self._client is None:
            self._client = httpx.Client(
                headers={"User-Agent": self.config.user_agent, "Accept-Language": "en"},
                timeout=self.config.timeout,
                follow_redirects=True,
                transport=self._transport,
            )
        return self._client

    def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- public --------------------------------------------------------------------------
    def get(self, url: str) -> Page:
        """Return the page at ``url``: from the cache if present, else fetched politely and cached.

        Raises:
            FetchError: robots.txt forbids the URL, the server answered a non-retryable error status
                (e.g. 404), or all ``max_tries`` attempts failed. The failure is also kept in
                ``stats.failures``.
        """
        if self.cache is not None:
            cached = self.cache.get(url)
            if cached is not None:
                self.stats.cache_hits += 1
                return Page(cached.url, cached.status, cached.text, cached.fetched_at, True, cached.final_url)
        host = urlsplit(url).netloc
        try:
            with self._host_lock(host):
                self._check_robots(url)
                response = self._request(url)
        except FetchError as exc:
            self.stats.failures[url] = exc.reason
            raise
        page = Page(url, response.status_code, response.text, self._wall(), False, str(response.url))
        if self.cache is not None:
            self.cache.put(CachedPage(url, page.status, page.fetched_at, page.text, page.final_url))
        return page

    def forget(self, url: str) -> None:
        """Drop ``url`` from the cache, e.g. because it turned out to be a login wall served as 200."""
        if self.cache is not None:
            self.cache.delete(url)

    # ---- politeness ----------------------------------------------------------------------
    def _host_lock(self, host: str) -> threading.Lock:
        # One lock per host held for the whole fetch (robots + retries) = at most one request in flight.
        with self._locks_guard:
            return self._host_locks.setdefault(host, threading.Lock())

    def _wait_turn(self, host: str) -> None:
        wait = self._next_allowed.get(host, float("-inf")) - self._clock()
        if wait > 0:
            self.stats.slept_s += wait
            self._sleep(wait)

    def _pause_after_request(self, host: str) -> None:
        delay = max(self.config.delay, self._crawl_delay(host))
        pause = delay + self._rng.uniform(0, self.config.jitter * delay)
        self._defer(host, pause)

    def _defer(self, host: str, seconds: float) -> None:
        """Allow the next request to ``host`` no sooner than ``seconds`` from now."""
        until = self._clock() + seconds
        self._next_allowed[host] = max(self._next_allowed.get(host, float("-inf")), until)

    def _crawl_delay(self, host: str) -> float:
        robots = self._robots.get(host)
        if robots is None:
            return 0.0
        value = robots.crawl_delay(self.config.user_agent)
        try:
            return float(value) if value is not None else 0.0
        except (TypeError, ValueError):
            return 0.0

    def _check_robots(self, url: str) -> None:
        if not self.config.respect_robots:
            return
        host = urlsplit(url).netloc
        robots = self._robots.get(host)
        if robots is None:
            robots = self._load_robots(url)
            self._robots[host] = robots
        if not robots.can_fetch(self.config.user_agent, url):
            raise RobotsDisallowed(url, "disallowed by robots.txt")

    def _load_robots(self, url: str) -> RobotFileParser:
        parser = RobotFileParser(robots_url(url))
        try:
            response = self._request(robots_url(url))
        except FetchError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status not in RETRY_STATUSES:
                # RFC 9309: an unavailable (4xx) robots.txt means no restrictions.
                parser.parse([])
                return parser
            # Unreachable robots.txt: RFC 9309 says assume everything is disallowed. Not memoised,
            # so the next URL asks again (through the same backoff) instead of failing the crawl forever.
            raise FetchError(url, f"robots.txt unavailable: {exc.reason}", attempts=exc.attempts) from exc
        parser.parse(response.text.splitlines())
        return parser

    # ---- requests ------------------------------------------------------------------------
    def _request(self, url: str) -> httpx.Response:
        """GET ``url`` with the delay, retries and backoff; caller holds the host lock."""
        host = urlsplit(url).netloc
        error = "no attempt made"
        last_status: int | None = None
        for attempt in range(1, self.config.max_tries + 1):
            self._wait_turn(host)
            retry_after: float | None = None
            self.stats.requests += 1
            try:
                response = self.client.get(url)
            except httpx.TimeoutException as exc:
                error = f"timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:
                error = f"connection error ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response
                if status not in RETRY_STATUSES:
                    raise FetchError(url, f"HTTP {status}", status=status, attempts=attempt)
                error, last_status = f"HTTP {status}", status
                retry_after = self._retry_after(response)
            finally:
                # Whatever happened, the host gets its normal pause before anything else is sent.
                self._pause_after_request(host)
            if attempt < self.config.max_tries:
                backoff = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
                # Retry-After is the server's own word: wait at least that long (within reason).
                wait = max(backoff, min(retry_after or 0.0, self.config.retry_after_max))
                log.info("retrying %s in %.0f s after %s (try %d of %d)", url, wait, error, attempt,
                         self.config.max_tries)
                self.stats.retries += 1
                self._defer(host, wait)
        raise FetchError(url, f"gave up after {self.config.max_tries} tries: {error}",
                         status=last_status, attempts=self.config.max_tries)

    def _retry_after(self, response: httpx.Response) -> float | None:
        """Seconds the server asked us to wait (``Retry-After`` as seconds or an HTTP date), or None."""
        value = response.headers.get("Retry-After")
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - self._wall())
