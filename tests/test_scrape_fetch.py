"""Fetcher tests against httpx.MockTransport with a fake clock: no network, no real sleeping."""

from __future__ import annotations

import email.utils
import gzip
import itertools
import random
import threading
import time

import httpx
import pytest

from scraping.cache import CachedPage, PageCache
from scraping.fetch import USER_AGENT, FetchConfig, Fetcher, FetchError, RobotsDisallowed, mock_transport

PAGE = "https://myanimelist.net/anime/1"
ROBOTS = "https://myanimelist.net/robots.txt"


class FakeClock:
    """Monotonic time that only moves when someone sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Site:
    """A fake host: ``routes`` maps a URL to a list of responses served in turn (the last one repeats)."""

    def __init__(self, clock: FakeClock, routes: dict, robots: str | int | None = 404) -> None:
        self.clock = clock
        self.routes = {url: list(answers) for url, answers in routes.items()}
        if robots is not None:
            self.routes.setdefault(ROBOTS, [robots])
        self.log: list[tuple[float, str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.log.append((self.clock.now, url, request.headers.get("user-agent", "")))
        answers = self.routes.get(url, [404])
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return httpx.Response(answer, text=f"status {answer}")
        if isinstance(answer, tuple):
            status, headers = answer
            return httpx.Response(status, headers=headers, text="busy")
        return httpx.Response(200, text=answer)

    def times(self, url: str) -> list[float]:
        return [t for t, u, _ in self.log if u == url]


def make_fetcher(site: Site, clock: FakeClock, cache: PageCache | None = None, **config) -> Fetcher:
    return Fetcher(FetchConfig(**config), cache=cache, transport=mock_transport(site), clock=clock.clock,
                   sleep=clock.sleep, rng=random.Random(7), wall_clock=lambda: 1_700_000_000.0 + clock.now)


def test_success_is_cached_and_sends_honest_user_agent(tmp_path):
    clock = FakeClock()
    site = Site(clock, {PAGE: ["<html>one</html>"]})
    cache = PageCache(tmp_path)
    with make_fetcher(site, clock, cache) as fetcher:
        page = fetcher.get(PAGE)
    assert (page.status, page.text, page.from_cache) == (200, "<html>one</html>", False)
    assert cache.get(PAGE).text == "<html>one</html>"
    assert all(ua == USER_AGENT for _, _, ua in site.log)
    assert "anime-review-search" in USER_AGENT


def test_cache_hit_makes_no_request(tmp_path):
    cache = PageCache(tmp_path)
    cache.put(CachedPage(PAGE, 200, 123.0, "<html>cached</html>"))

    def no_network(request):
        raise AssertionError(f"unexpected request to {request.url}")

    clock = FakeClock()
    fetcher = Fetcher(FetchConfig(), cache=cache, transport=mock_transport(no_network), clock=clock.clock,
                      sleep=clock.sleep)
    page = fetcher.get(PAGE)
    assert page.from_cache and page.text == "<html>cached</html>" and page.fetched_at == 123.0
    assert fetcher.stats.requests == 0 and fetcher.stats.cache_hits == 1 and clock.sleeps == []


def test_second_get_of_same_url_comes_from_cache(tmp_path):
    clock = FakeClock()
    site = Site(clock, {PAGE: ["<html>x</html>"]})
    fetcher = make_fetcher(site, clock, PageCache(tmp_path))
    fetcher.get(PAGE)
    requests = len(site.log)
    assert fetcher.get(PAGE).from_cache
    assert len(site.log) == requests


def test_429_with_retry_after_is_waited_out():
    clock = FakeClock()
    site = Site(clock, {PAGE: [(429, {"Retry-After": "120"}), "<html>ok</html>"]})
    page = make_fetcher(site, clock).get(PAGE)
    assert page.text == "<html>ok</html>"
    first, second = site.times(PAGE)
    assert second - first >= 120


def test_long_retry_after_beyond_backoff_cap_is_still_honoured():
    clock = FakeClock()
    site = Site(clock, {PAGE: [(429, {"Retry-After": "900"}), "<html>ok</html>"]})
    make_fetcher(site, clock, backoff_max=60).get(PAGE)
    first, second = site.times(PAGE)
    assert second - first >= 900


def test_retry_after_as_http_date():
    clock = FakeClock()
    wall_now = 1_700_000_000.0 + clock.now
    when = email.utils.formatdate(wall_now + 300, usegmt=True)
    site = Site(clock, {PAGE: [(503, {"Retry-After": when}), "<html>ok</html>"]})
    make_fetcher(site, clock).get(PAGE)
    _, second = site.times(PAGE)
    assert 1300 - 1 <= second <= 1300 + 1  # retried when the date said, not before


def test_503_is_retried_with_backoff_then_recorded_failed(tmp_path):
    clock = FakeClock()
    site = Site(clock, {PAGE: [503]})
    cache = PageCache(tmp_path)
    fetcher = make_fetcher(site, clock, cache, max_tries=4, backoff_base=5)
    with pytest.raises(FetchError) as info:
        fetcher.get(PAGE)
    assert "gave up after 4 tries: HTTP 503" in str(info.value)
    assert info.value.attempts == 4
    times = site.times(PAGE)
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 5 and gaps[1] >= 10 and gaps[2] >= 20  # exponential backoff
    assert fetcher.stats.failures[PAGE].startswith("gave up")
    assert PAGE not in cache  # an error is never cached


def test_timeouts_and_connection_errors_are_retried():
    clock = FakeClock()
    request = httpx.Request("GET", PAGE)
    site = Site(clock, {PAGE: [httpx.ReadTimeout("slow", request=request),
                               httpx.ConnectError("refused", request=request), "<html>ok</html>"]})
    fetcher = make_fetcher(site, clock)
    assert fetcher.get(PAGE).text == "<html>ok</html>"
    assert len(site.times(PAGE)) == 3 and fetcher.stats.retries == 2


def test_404_is_not_retried():
    clock = FakeClock()
    site = Site(clock, {PAGE: [404]})
    with pytest.raises(FetchError) as info:
        make_fetcher(site, clock).get(PAGE)
    assert info.value.status == 404 and len(site.times(PAGE)) == 1


def test_robots_disallow_is_respected():
    clock = FakeClock()
    robots = "User-agent: *\nDisallow: /anime/\n"
    site = Site(clock, {PAGE: ["<html>secret</html>"], "https://myanimelist.net/topanime.php?limit=0": ["<html/>"]},
                robots=robots)
    fetcher = make_fetcher(site, clock)
    with pytest.raises(RobotsDisallowed):
        fetcher.get(PAGE)
    assert site.times(PAGE) == []  # never requested
    fetcher.get("https://myanimelist.net/topanime.php?limit=0")
    assert len(site.times(ROBOTS)) == 1  # robots.txt read once per host


def test_robots_rules_for_our_user_agent():
    clock = FakeClock()
    site = Site(clock, {PAGE: ["<html/>"]}, robots="User-agent: anime-review-search\nDisallow: /\n")
    with pytest.raises(RobotsDisallowed):
        make_fetcher(site, clock).get(PAGE)


def test_robots_crawl_delay_longer_than_ours_is_used():
    clock = FakeClock()
    urls = [f"https://myanimelist.net/anime/{i}" for i in range(1, 4)]
    site = Site(clock, {u: ["<html/>"] for u in urls}, robots="User-agent: *\nCrawl-delay: 10\n")
    fetcher = make_fetcher(site, clock)
    for url in urls:
        fetcher.get(url)
    starts = [site.times(u)[0] for u in urls]
    assert all(b - a >= 10 for a, b in itertools.pairwise(starts))


def test_unreachable_robots_fails_the_url_without_requesting_it():
    clock = FakeClock()
    site = Site(clock, {PAGE: ["<html/>"]}, robots=503)
    with pytest.raises(FetchError, match="robots.txt unavailable"):
        make_fetcher(site, clock, max_tries=2).get(PAGE)
    assert site.times(PAGE) == []


def test_delay_between_requests_is_enforced():
    clock = FakeClock()
    urls = [f"https://myanimelist.net/anime/{i}" for i in range(1, 30)]
    site = Site(clock, {u: ["<html/>"] for u in urls})
    fetcher = make_fetcher(site, clock)  # default: 2 s + up to 50 % jitter
    for url in urls:
        fetcher.get(url)
    starts = [t for t, _, _ in site.log]  # robots.txt first, then the pages
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 2.0 and max(gaps) <= 3.0
    assert 2.2 < sum(gaps) / len(gaps) < 2.8  # jitter really varies
    assert len({round(g, 6) for g in gaps}) > 1


@pytest.mark.parametrize("delay", [0, 0.5, 0.99])
def test_delay_below_one_second_is_refused(delay):
    with pytest.raises(ValueError, match="at least 1 s"):
        FetchConfig(delay=delay)


def test_at_most_one_request_in_flight_per_host():
    in_flight = 0
    most = 0
    guard = threading.Lock()

    def handler(request):
        nonlocal in_flight, most
        with guard:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.01)  # a real (short) pause so overlapping requests would show
        with guard:
            in_flight -= 1
        return httpx.Response(200 if "robots" not in str(request.url) else 404, text="<html/>")

    clock = FakeClock()
    fetcher = Fetcher(FetchConfig(), transport=mock_transport(handler), clock=clock.clock, sleep=clock.sleep)
    threads = [threading.Thread(target=lambda k=k: [fetcher.get(f"https://myanimelist.net/anime/{k}{i}")
                                                    for i in range(3)]) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1
    assert fetcher.stats.requests == 13  # robots.txt + 12 pages


# ---- cache ------------------------------------------------------------------------------------------
def test_cache_round_trip_is_gzip_with_status_and_time(tmp_path):
    cache = PageCache(tmp_path)
    path = cache.put(CachedPage(PAGE, 200, 42.5, "caf\u00e9 <b>x</b>", final_url=PAGE + "/Cowboy_Bebop"))
    assert path.suffix == ".gz" and gzip.decompress(path.read_bytes())
    assert cache.get(PAGE) == CachedPage(PAGE, 200, 42.5, "caf\u00e9 <b>x</b>", PAGE + "/Cowboy_Bebop")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind
    assert cache.delete(PAGE) and cache.get(PAGE) is None and not cache.delete(PAGE)


def test_damaged_cache_entry_is_a_miss(tmp_path):
    cache = PageCache(tmp_path)
    path = cache.path_for(PAGE)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not gzip at all")
    assert cache.get(PAGE) is None
