"""Crawler tests against a small fake MyAnimeList (httpx.MockTransport) with a fake clock.

The fake site's pages follow MAL's markup closely enough for the real parser; all text in them is made up here.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from scraping import fetch
from scraping.__main__ import main
from scraping.cache import PageCache
from scraping.crawl import CrawlBlocked, CrawlConfig, Crawler, parse_ids
from scraping.fetch import FetchConfig, Fetcher, mock_transport
from scraping.store import Store

BASE = "https://myanimelist.net"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Killed(BaseException):
    """Stands in for the process being killed: nothing in the crawler catches it."""


# ---- the fake site ----------------------------------------------------------------------------------
def _review_html(review_id: int, anime_id: int, n: int) -> str:
    score = 1 + (review_id % 10)
    tag = ["recommended", "mixed-feelings", "not-recommended"][review_id % 3]
    label = {"recommended": "Recommended", "mixed-feelings": "Mixed Feelings", "not-recommended": "Not Recommended"}
    return f"""
<div class="review-element js-review-element"><div class="body">
  <div class="update_at">Jan {1 + n % 28}, 20{10 + n % 10}</div>
  <div class="username"><a href="{BASE}/profile/user{review_id}">user{review_id}</a></div>
  <div class="tags"><div class="tag {tag}">{label[tag]}</div></div>
  <div class="text">Made-up review {review_id} of show {anime_id}: the &amp;quot;quiet&amp;quot; episodes work.<br />
   Second line
   <span class="js-visible">...</span><span class="js-hidden">and the hidden half of review {review_id}.</span></div>
  <div class="rating js-hidden">Reviewer's Rating: <span class="num">{score}</span></div>
  <div class="open"><a href="{BASE}/reviews.php?id={review_id}">Open</a></div>
</div></div>"""


class MockMal:
    """Anime ``1..n`` (rank = id order), each with ``reviews[id]`` reviews, ``per_page`` to a reviews page."""

    def __init__(self, clock: FakeClock, reviews: dict[int, int], per_page: int = 3) -> None:
        self.clock = clock
        self.reviews = reviews
        self.per_page = per_page
        self.requests: list[str] = []
        self.overrides: dict[str, httpx.Response] = {}
        self.kill_after: int | None = None  # raise Killed on this many-th request (1-based)
        self.on_request = None

    def review_ids(self, anime_id: int) -> list[int]:
        return [anime_id * 1000 + i for i in range(self.reviews[anime_id])]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests.append(url)
        if self.kill_after is not None and len(self.requests) >= self.kill_after:
            raise Killed(url)
        if self.on_request is not None:
            self.on_request(url)
        if url in self.overrides:
            return self.overrides[url]
        parts = urlsplit(url)
        path, query = parts.path, parse_qs(parts.query)
        segments = path.strip("/").split("/")
        if path == "/robots.txt":
            return httpx.Response(200, text="User-agent: *\nDisallow: /login.php\n")
        if path == "/topanime.php":
            return httpx.Response(200, text=self.top_page(int(query.get("limit", ["0"])[0])))
        if segments[0] == "anime" and segments[1].isdigit() and int(segments[1]) in self.reviews:
            anime_id = int(segments[1])
            if len(segments) <= 3 and not path.endswith(("/reviews", "/userrecs")):
                return httpx.Response(200, text=self.anime_page(anime_id))
            if segments[-1] == "reviews":
                return httpx.Response(200, text=self.reviews_page(anime_id, int(query.get("p", ["1"])[0])))
            if segments[-1] == "userrecs":
                return httpx.Response(200, text=self.userrecs_page(anime_id))
        return httpx.Response(404, text="<html><head><title>404 Not Found - MyAnimeList.net</title></head></html>")

    def top_page(self, offset: int) -> str:
        ids = sorted(self.reviews)[offset:offset + 50]
        rows = "".join(f"""
<tr class="ranking-list"><td class="rank ac"><span class="top-anime-rank-text">{offset + i + 1}</span></td>
<td class="title"><div class="detail"><h3 class="anime_ranking_h3"><a href="{BASE}/anime/{a}/Show_{a}">Show {a}</a></h3>
<div class="information">TV (12 eps)<br>Apr 2015 - Jun 2015<br>{1000 * a:,} members</div></div></td>
<td class="score"><span class="score-label">{7 + a / 100:.2f}</span></td></tr>""" for i, a in enumerate(ids))
        more = f'<a href="?limit={offset + 50}" class="next">Next 50</a>' if offset + 50 < len(self.reviews) else ""
        return (f"<html><head><title>Top Anime - MyAnimeList.net</title></head><body><table>{rows}</table>"
                f"{more}</body></html>")

    def anime_page(self, anime_id: int) -> str:
        embedded = "".join(_review_html(r, anime_id, n) for n, r in enumerate(self.review_ids(anime_id)[:2]))
        return f"""<html><head><title>Show {anime_id} - MyAnimeList.net</title>
<link rel="canonical" href="{BASE}/anime/{anime_id}/Show_{anime_id}" />
<meta property="og:image" content="https://cdn.example.invalid/{anime_id}.jpg"></head><body>
<h1 class="title-name"><strong>Show {anime_id}</strong></h1>
<div class="leftside">
<div class="spaceit_pad"><span class="dark_text">English:</span> The Show {anime_id}</div>
<div class="spaceit_pad"><span class="dark_text">Type:</span> <a href="#">TV</a></div>
<div class="spaceit_pad"><span class="dark_text">Episodes:</span> 12</div>
<div class="spaceit_pad"><span class="dark_text">Premiered:</span> <a href="#">Spring 2015</a></div>
<div class="spaceit_pad"><span class="dark_text">Genres:</span> <a href="#">Drama</a>, <a href="#">Mystery</a></div>
<div class="spaceit_pad"><span class="dark_text">Rating:</span> PG-13 - Teens 13 or older</div>
<div class="spaceit_pad"><span class="dark_text">Score:</span> <span itemprop="ratingValue">7.{anime_id}</span></div>
<div class="spaceit_pad"><span class="dark_text">Members:</span> {1000 * anime_id:,}</div>
</div><p itemprop="description">A made-up synopsis of show {anime_id}.</p>
<h2>Reviews</h2>{embedded}</body></html>"""

    def reviews_page(self, anime_id: int, page: int) -> str:
        ids = self.review_ids(anime_id)
        chunk = ids[(page - 1) * self.per_page:page * self.per_page]
        body = "".join(_review_html(r, anime_id, n) for n, r in enumerate(chunk))
        more = ""
        if page * self.per_page < len(ids):
            more = (f'<a href="{BASE}/anime/{anime_id}/Show_{anime_id}/reviews?p={page + 1}" '
                    f'data-ga-click-type="review-more-reviews">More Reviews</a>')
        return f"""<html><head><title>Show {anime_id} - Reviews - MyAnimeList.net</title>
<link rel="canonical" href="{BASE}/anime/{anime_id}/Show_{anime_id}/reviews" /></head><body>
<h1 class="title-name"><strong>Show {anime_id}</strong></h1>{body}{more}</body></html>"""

    def userrecs_page(self, anime_id: int) -> str:
        others = [a for a in sorted(self.reviews) if a != anime_id][:2]
        blocks = "".join(f"""<div class="borderClass"><table><tr><td>
<div class="picSurround"><a href="{BASE}/anime/{o}/Show_{o}"><img alt="Anime: Show {o}"></a></div></td><td>
<a href="{BASE}/anime/{o}/Show_{o}"><strong>Show {o}</strong></a>
<div class="borderClass bgColor1"><div class="detail-user-recs-text">Made-up reason.</div></div>
<div class="spaceit"><a href="#">Read recommendations by <strong>{o + anime_id}</strong> more users</a></div>
</td></tr></table></div>""" for o in others)
        return f"""<html><head><title>Show {anime_id} - Recommendations - MyAnimeList.net</title>
<link rel="canonical" href="{BASE}/anime/{anime_id}/Show_{anime_id}/userrecs" /></head><body>{blocks}</body></html>"""


# ---- helpers -------------------------------------------------------------------------------------------
def make_crawler(store: Store, site: MockMal, clock: FakeClock, cache_dir: Path, config: CrawlConfig,
                 **fetch_config) -> Crawler:
    fetcher = Fetcher(FetchConfig(**fetch_config), cache=PageCache(cache_dir), transport=mock_transport(site),
                      clock=clock.clock, sleep=clock.sleep, rng=random.Random(3))
    return Crawler(store, fetcher, config)


def snapshot(db: Path) -> dict:
    """Everything in a store except write times."""
    with Store.open(db) as store:
        return {
            "anime": [a.to_dict() for a in store.iter_anime()],
            "reviews": [r.to_dict() for r in store.iter_reviews()],
            "user_recs": [vars(r) for r in store.user_recs()],
            "state": {s: store.urls_with_status(s) for s in ("pending", "done", "failed")},
            "failures": store.crawl_failures(),
        }


@pytest.fixture
def fake_cli(monkeypatch):
    """Route the command line's fetcher to a MockMal with a fake clock."""
    clock = FakeClock()
    site = MockMal(clock, {1: 5, 2: 2, 3: 0, 4: 7, 5: 1})
    monkeypatch.setattr(fetch, "_default_transport", lambda: mock_transport(site))
    monkeypatch.setattr(fetch, "_default_clock_and_sleep", lambda: (clock.clock, clock.sleep))
    return site


def cli(tmp_path: Path, *args: str) -> int:
    return main(["crawl", *args, "--db", str(tmp_path / "mal.sqlite"), "--cache", str(tmp_path / "raw"),
                 "--no-progress"])


# ---- command line end to end ------------------------------------------------------------------------
def test_cli_crawl_one_anime_one_review_page(fake_cli, tmp_path, capsys):
    assert cli(tmp_path, "--ids", "1", "--max-review-pages", "1") == 0
    assert fake_cli.requests == [
        f"{BASE}/robots.txt",
        f"{BASE}/anime/1",
        f"{BASE}/anime/1/x/reviews?p=1&preliminary=on",
        f"{BASE}/anime/1/x/userrecs",
    ]
    with Store.open(tmp_path / "mal.sqlite") as store:
        anime = store.get_anime(1)
        assert (anime.title, anime.title_english, anime.type, anime.episodes) == ("Show 1", "The Show 1", "TV", 12)
        assert (anime.year, anime.season, anime.score, anime.genres) == (2015, "spring", 7.1, ["Drama", "Mystery"])
        reviews = list(store.iter_reviews())
        assert [r.review_id for r in reviews] == ["1000", "1001", "1002"]  # page 1 only (3 per page)
        assert all(r.source == "mal_crawl" and r.anime_id == 1 for r in reviews)
        assert reviews[0].text == ('Made-up review 1000 of show 1: the "quiet" episodes work. Second line '
                                   "and the hidden half of review 1000.")
        assert sorted((r.rec_anime_id, r.user_count) for r in store.user_recs(1)) == [(2, 4), (3, 5)]
        assert store.crawl_counts() == {"done": 3}
    assert "crawl finished: 3 pages" in capsys.readouterr().out

    assert main(["stats", "--db", str(tmp_path / "mal.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "anime: 1" in out and "reviews: 3" in out and "mal_crawl: 3" in out
    assert "user recommendations: 2" in out and "done 3, pending 0, failed 0" in out


def test_cli_rerun_is_a_no_op_and_reparse_needs_no_network(fake_cli, tmp_path, capsys):
    assert cli(tmp_path, "--ids", "1,2") == 0
    before = len(fake_cli.requests)
    assert cli(tmp_path, "--ids", "1,2") == 0
    assert "nothing to crawl" in capsys.readouterr().out
    assert len(fake_cli.requests) == before
    # A fresh store over the same cache re-parses everything without a single request.
    (tmp_path / "mal.sqlite").unlink()
    assert cli(tmp_path, "--ids", "1,2") == 0
    assert len(fake_cli.requests) == before


def test_cli_top_n(fake_cli, tmp_path):
    assert cli(tmp_path, "--top", "2", "--max-review-pages", "0") == 0
    with Store.open(tmp_path / "mal.sqlite") as store:
        assert [a.anime_id for a in store.iter_anime()] == [1, 2]
        assert store.count_reviews() == 4  # the reviews embedded in the two anime pages
        assert store.urls_with_status("done", "top") == [f"{BASE}/topanime.php?limit=0"]


def test_top_list_spanning_two_pages(tmp_path):
    clock = FakeClock()
    site = MockMal(clock, dict.fromkeys(range(1, 56), 0))
    with Store.open(tmp_path / "db.sqlite") as store:
        crawler = make_crawler(store, site, clock, tmp_path / "raw", CrawlConfig(top=52, max_review_pages=0))
        crawler.seed()
        report = crawler.run()
        assert [a.anime_id for a in store.iter_anime()] == list(range(1, 53))
        assert store.urls_with_status("done", "top") == [
            f"{BASE}/topanime.php?limit=0", f"{BASE}/topanime.php?limit=50"]
        assert report.pages == 2 + 52 * 2 and report.failed == 0
    # The second top page is read only after the first page's 50 anime are done (depth first).
    assert site.requests.index(f"{BASE}/topanime.php?limit=50") > site.requests.index(f"{BASE}/anime/50/x/userrecs")


def test_cli_bad_arguments_are_one_line_errors(fake_cli, tmp_path, capsys):
    assert cli(tmp_path, "--ids", "1,x") == 2
    assert capsys.readouterr().err.strip() == "error: --ids: 'x' is not a MAL anime id"
    assert cli(tmp_path, "--ids", "1", "--delay", "0.2") == 2
    assert "at least 1 s" in capsys.readouterr().err
    assert main(["stats", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert capsys.readouterr().err.startswith("error: store not found")
    assert fake_cli.requests == []


def test_cli_captcha_stops_with_exit_code_and_keeps_url_pending(fake_cli, tmp_path, capsys):
    captcha = '<html><head><title>Verify</title></head><body><div class="g-recaptcha"></div></body></html>'
    fake_cli.overrides[f"{BASE}/anime/2"] = httpx.Response(200, text=captcha)
    assert cli(tmp_path, "--ids", "2,1") == 3
    assert "captcha" in capsys.readouterr().err
    with Store.open(tmp_path / "mal.sqlite") as store:
        assert store.url_status(f"{BASE}/anime/2") == "pending"
        assert store.url_status(f"{BASE}/anime/1") == "pending"  # nothing after the captcha was tried
    assert PageCache(tmp_path / "raw").get(f"{BASE}/anime/2") is None


# ---- crawl behaviour ----------------------------------------------------------------------------------
def test_reviews_pages_until_exhausted_and_depth_first_order(tmp_path):
    clock = FakeClock()
    site = MockMal(clock, {1: 7, 2: 0})
    with Store.open(tmp_path / "db.sqlite") as store:
        crawler = make_crawler(store, site, clock, tmp_path / "raw", CrawlConfig(ids=[1, 2]))
        crawler.seed()
        report = crawler.run()
        assert store.count_reviews() == 7
        assert report.pages == 8 and report.failed == 0 and not report.stopped
    assert [urlsplit(u).path + ("?" + urlsplit(u).query if urlsplit(u).query else "") for u in site.requests] == [
        "/robots.txt", "/anime/1", "/anime/1/x/reviews?p=1&preliminary=on", "/anime/1/x/reviews?p=2&preliminary=on",
        "/anime/1/x/reviews?p=3&preliminary=on", "/anime/1/x/userrecs",
        "/anime/2", "/anime/2/x/reviews?p=1&preliminary=on", "/anime/2/x/userrecs",
    ]


def test_spoiler_option_is_kept_on_later_pages(tmp_path):
    clock = FakeClock()
    site = MockMal(clock, {1: 4})
    with Store.open(tmp_path / "db.sqlite") as store:
        crawler = make_crawler(store, site, clock, tmp_path / "raw", CrawlConfig(ids=[1], spoilers=True))
        crawler.seed()
        crawler.run()
    assert f"{BASE}/anime/1/x/reviews?p=2&spoiler=on&preliminary=on" in site.requests


def test_failures_are_recorded_and_the_crawl_goes_on(tmp_path):
    clock = FakeClock()
    site = MockMal(clock, {1: 2, 2: 2, 3: 2})
    site.overrides[f"{BASE}/anime/2"] = httpx.Response(503)
    login = '<html><head><title>Login - MyAnimeList.net</title></head><body><input type="password"></body></html>'
    site.overrides[f"{BASE}/anime/3/x/reviews?p=1&preliminary=on"] = httpx.Response(200, text=login)
    db, raw = tmp_path / "db.sqlite", tmp_path / "raw"
    with Store.open(db) as store:
        crawler = make_crawler(store, site, clock, raw, CrawlConfig(ids=[1, 2, 3]), max_tries=3)
        crawler.seed()
        report = crawler.run()
        assert report.failed == 2
        failures = {url: (attempts, error) for url, attempts, error in store.crawl_failures()}
        assert failures[f"{BASE}/anime/2"] == (1, "gave up after 3 tries: HTTP 503")
        assert failures[f"{BASE}/anime/3/x/reviews?p=1&preliminary=on"][1].startswith("login_wall")
        assert store.url_status(f"{BASE}/anime/3/x/userrecs") == "done"
    assert site.requests.count(f"{BASE}/anime/2") == 3
    assert PageCache(raw).get(f"{BASE}/anime/3/x/reviews?p=1&preliminary=on") is None  # wall not cached

    # The site recovers; --retry-failed finishes the job.
    site.overrides.clear()
    with Store.open(db) as store:
        crawler = make_crawler(store, site, clock, raw, CrawlConfig(retry_failed=True))
        crawler.seed()
        crawler.run()
        assert store.crawl_counts() == {"done": 9}
        assert store.count_reviews() == 6
        assert store.crawl_failures() == []


def test_captcha_raises_crawl_blocked(tmp_path):
    clock = FakeClock()
    site = MockMal(clock, {1: 1})
    site.overrides[f"{BASE}/anime/1"] = httpx.Response(
        200, text='<html><head><title>Just a moment...</title></head><body></body></html>')
    with Store.open(tmp_path / "db.sqlite") as store:
        crawler = make_crawler(store, site, clock, tmp_path / "raw", CrawlConfig(ids=[1]))
        crawler.seed()
        with pytest.raises(CrawlBlocked):
            crawler.run()


def test_ctrl_c_stops_after_the_current_page(tmp_path):
    clock = FakeClock()
    site = MockMal(clock, {1: 5, 2: 5})
    target = f"{BASE}/anime/1/x/reviews?p=1&preliminary=on"

    def press_ctrl_c(url):
        if url == target:
            os.kill(os.getpid(), signal.SIGINT)

    site.on_request = press_ctrl_c
    before = signal.getsignal(signal.SIGINT)
    with Store.open(tmp_path / "db.sqlite") as store:
        crawler = make_crawler(store, site, clock, tmp_path / "raw", CrawlConfig(ids=[1, 2]))
        crawler.seed()
        report = crawler.run()
        assert report.stopped and report.pages == 2
        assert store.url_status(target) == "done"  # the page in hand was finished and stored
        assert store.count_reviews() == 3
        assert report.pending > 0
    assert signal.getsignal(signal.SIGINT) is before  # our handler is removed again


# ---- resume -----------------------------------------------------------------------------------------
SITE = {1: 7, 2: 0, 3: 4, 4: 2}
CONFIG = {"top": 4}


def _full_crawl(tmp_path: Path) -> tuple[dict, int]:
    clock = FakeClock()
    site = MockMal(clock, SITE)
    with Store.open(tmp_path / "ref.sqlite") as store:
        crawler = make_crawler(store, site, clock, tmp_path / "ref_raw", CrawlConfig(**CONFIG))
        crawler.seed()
        crawler.run()
    return snapshot(tmp_path / "ref.sqlite"), len(site.requests)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _full_crawl(tmp_path_factory.mktemp("reference"))


@pytest.mark.parametrize("kill_at", [2, 3, 5, 8, 13, 17])
def test_killed_crawl_resumes_to_the_same_store(tmp_path, reference, kill_at):
    expected, total_requests = reference
    assert kill_at <= total_requests
    db, raw = tmp_path / "db.sqlite", tmp_path / "raw"
    clock = FakeClock()
    site = MockMal(clock, SITE)
    site.kill_after = kill_at
    with Store.open(db) as store:
        crawler = make_crawler(store, site, clock, raw, CrawlConfig(**CONFIG))
        crawler.seed()
        with pytest.raises(Killed):
            crawler.run()
    killed_requests = len(site.requests)

    site = MockMal(clock, SITE)  # a new process: same site, same store file, same cache
    with Store.open(db) as store:
        crawler = make_crawler(store, site, clock, raw, CrawlConfig(**CONFIG))
        crawler.seed()
        crawler.run()
    assert snapshot(db) == expected  # 0 lost, 0 duplicated, same crawl state
    # Only the request that was cut off (and robots.txt, once per process) is repeated.
    assert killed_requests + len(site.requests) == total_requests + 2


def test_kill_after_records_written_but_before_page_marked_done(tmp_path, reference, monkeypatch):
    expected, _ = reference
    db, raw = tmp_path / "db.sqlite", tmp_path / "raw"
    clock = FakeClock()
    site = MockMal(clock, SITE)
    real_mark = Store.mark_url
    calls = {"done": 0}

    def mark_then_die(self, url, status, **kw):
        if status == "done":
            calls["done"] += 1
            if calls["done"] == 4:
                raise Killed(url)
        return real_mark(self, url, status, **kw)

    with Store.open(db) as store:
        monkeypatch.setattr(Store, "mark_url", mark_then_die)
        crawler = make_crawler(store, site, clock, raw, CrawlConfig(**CONFIG))
        crawler.seed()
        with pytest.raises(Killed):
            crawler.run()
        monkeypatch.setattr(Store, "mark_url", real_mark)
    requests_before = len(site.requests)
    with Store.open(db) as store:
        crawler = make_crawler(store, site, clock, raw, CrawlConfig(**CONFIG))
        crawler.seed()
        report = crawler.run()
        # 3 from the redone page + 4 that anime pages 3 and 4 embed and their reviews pages list again.
        assert report.reviews.unchanged == 3 + 4
    assert snapshot(db) == expected
    # The page whose records were written but not marked done is redone from the cache.
    assert site.requests[requests_before] == f"{BASE}/robots.txt"
    assert len(set(site.requests)) == len(site.requests) - 1  # only robots.txt was requested twice


def test_resume_without_arguments_finishes_pending_work(tmp_path, reference):
    expected, _ = reference
    db, raw = tmp_path / "db.sqlite", tmp_path / "raw"
    clock = FakeClock()
    site = MockMal(clock, SITE)
    with Store.open(db) as store:
        crawler = make_crawler(store, site, clock, raw, CrawlConfig(**CONFIG))
        crawler.seed()
        crawler.run(max_pages=6)
    with Store.open(db) as store:
        crawler = make_crawler(store, site, clock, raw, CrawlConfig())  # no --top / --ids: just resume
        assert crawler.seed() == 0
        crawler.run()
    assert snapshot(db) == expected


# ---- speed at the default delay -----------------------------------------------------------------------
def test_simulated_pages_per_second_at_default_delay(tmp_path):
    clock = FakeClock()
    site = MockMal(clock, {a: 6 for a in range(1, 11)}, per_page=2)
    with Store.open(tmp_path / "db.sqlite") as store:
        crawler = make_crawler(store, site, clock, tmp_path / "raw", CrawlConfig(top=10))
        crawler.seed()
        report = crawler.run()
    assert report.pages == 1 + 10 * (1 + 3 + 1)
    expected = 1 / FetchConfig().mean_interval  # 1 / (2 s + mean jitter 0.5 s) = 0.4 pages/s
    assert report.pages_per_s == pytest.approx(expected, rel=0.1)


def test_parse_ids():
    assert parse_ids("1, 5,6,5") == [1, 5, 6]
    for bad in ("", "a", "0", "1,-2"):
        with pytest.raises(ValueError):
            parse_ids(bad)
