"""Refresh crawl (``crawl --refresh-days N``) against the fake MyAnimeList of test_scrape_crawl, and ``stats``."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from scraping import fetch
from scraping import store as store_module
from scraping.__main__ import main
from scraping.crawl import CrawlConfig, crawl_ages, format_age
from scraping.fetch import mock_transport
from scraping.store import Store
from tests.test_scrape_crawl import BASE, FakeClock, MockMal, make_crawler

DAY = 86400.0


class GrowingMal(MockMal):
    """The fake site, whose reviews listing also answers ``sort=newest`` (highest review id = newest first)."""

    def __call__(self, request):
        self.newest_first = "sort=newest" in str(request.url)
        return super().__call__(request)

    def review_ids(self, anime_id: int) -> list[int]:
        ids = super().review_ids(anime_id)
        return ids[::-1] if getattr(self, "newest_first", False) else ids


def refresh_url(anime_id: int, page: int) -> str:
    return f"{BASE}/anime/{anime_id}/x/reviews?p={page}&preliminary=on&sort=newest"


def crawl(store: Store, site: MockMal, clock: FakeClock, cache: Path, config: CrawlConfig, now: float | None = None):
    crawler = make_crawler(store, site, clock, cache, config)
    crawler.seed(now=now)
    return crawler.run()


@pytest.fixture
def crawled(tmp_path):
    """Anime 1 (5 reviews) and 2 (2 reviews) crawled in full; returns (db, cache, site, clock)."""
    clock = FakeClock()
    site = GrowingMal(clock, {1: 5, 2: 2})
    db, cache = tmp_path / "db.sqlite", tmp_path / "raw"
    with Store.open(db) as store:
        crawl(store, site, clock, cache, CrawlConfig(ids=[1, 2]))
        assert store.count_reviews() == 7
    return db, cache, site, clock


def test_refresh_picks_up_exactly_the_new_reviews_and_stops_at_the_first_known_one(crawled):
    db, cache, site, clock = crawled
    site.reviews[1] = 9  # reviews 1005..1008 appear on MAL; anime 2 gets none
    site.requests.clear()
    with Store.open(db) as store:
        report = crawl(store, site, clock, cache, CrawlConfig(refresh_days=0))
        assert report.refreshed_anime == 2
        assert report.reviews.inserted == 4
        assert {r.review_id for r in store.iter_reviews([1])} == {str(1000 + i) for i in range(9)}
        assert store.count_reviews() == 11
    # Page 1 (1008, 1007, 1006: all new) leads to page 2 (1005 new, then 1004 known): no page 3.
    # Anime 2's first page starts with a known review. Nothing else is fetched (no anime pages, no userrecs).
    assert sorted(site.requests) == sorted([f"{BASE}/robots.txt", refresh_url(1, 1), refresh_url(1, 2),
                                            refresh_url(2, 1)])
    assert site.requests.index(refresh_url(1, 2)) == site.requests.index(refresh_url(1, 1)) + 1

    # The same refresh again reads each listing afresh (not from the page cache) and finds nothing new.
    site.requests.clear()
    with Store.open(db) as store:
        report = crawl(store, site, clock, cache, CrawlConfig(refresh_days=0))
        assert report.reviews.inserted == 0 and store.count_reviews() == 11
    assert sorted(site.requests) == sorted([f"{BASE}/robots.txt", refresh_url(1, 1), refresh_url(2, 1)])


def test_refresh_revisits_only_anime_older_than_n_days(tmp_path, monkeypatch):
    clock = FakeClock()
    site = GrowingMal(clock, {1: 2, 2: 2})
    db, cache = tmp_path / "db.sqlite", tmp_path / "raw"
    now = 1_000 * DAY
    with Store.open(db) as store:
        for anime_id, crawled_at in ((1, now - 10 * DAY), (2, now - 1 * DAY)):
            monkeypatch.setattr(store_module, "time", types.SimpleNamespace(time=lambda t=crawled_at: t))
            crawl(store, site, clock, cache, CrawlConfig(ids=[anime_id]))
        monkeypatch.setattr(store_module, "time", types.SimpleNamespace(time=lambda: now))
        ages = crawl_ages(store.done_url_times(["anime", "reviews"]), now)
        assert ages == {1: pytest.approx(10 * DAY), 2: pytest.approx(1 * DAY)}
        site.reviews[1] = site.reviews[2] = 3
        site.requests.clear()
        report = crawl(store, site, clock, cache, CrawlConfig(refresh_days=5), now=now)
        assert report.refreshed_anime == 1 and report.reviews.inserted == 1
        assert refresh_url(1, 1) in site.requests and refresh_url(2, 1) not in site.requests
        assert {r.review_id for r in store.iter_reviews([2])} == {"2000", "2001"}  # anime 2 was left alone
        # Anime 1 was just refreshed, so now only anime 2 (1 day old) is older than half a day.
        later = crawl_ages(store.done_url_times(["anime", "reviews"]), now + 0.75 * DAY)
        assert later[1] == pytest.approx(0.75 * DAY) and later[2] == pytest.approx(1.75 * DAY)


def test_refresh_days_must_not_be_negative():
    with pytest.raises(ValueError, match="--refresh-days"):
        CrawlConfig(refresh_days=-1)


def test_format_age():
    assert (format_age(3 * DAY + 5000), format_age(5 * 3600), format_age(125)) == ("3.1 days", "5.0 hours",
                                                                                   "2 minutes")


@pytest.fixture
def fake_site(monkeypatch):
    clock = FakeClock()
    site = GrowingMal(clock, {1: 4, 2: 1})
    monkeypatch.setattr(fetch, "_default_transport", lambda: mock_transport(site))
    monkeypatch.setattr(fetch, "_default_clock_and_sleep", lambda: (clock.clock, clock.sleep))
    return site


def test_cli_refresh_and_stats(fake_site, tmp_path, capsys):
    common = ["--db", str(tmp_path / "mal.sqlite"), "--cache", str(tmp_path / "raw"), "--no-progress"]
    assert main(["crawl", "--ids", "1,2", *common]) == 0
    assert main(["crawl", "--refresh-days", "1", *common]) == 0
    out = capsys.readouterr().out
    assert "refresh: 0 of 2 crawled anime were last crawled more than 1 days ago" in out
    assert "nothing to crawl" in out

    fake_site.reviews[2] = 3
    assert main(["crawl", "--refresh-days", "0", *common]) == 0
    out = capsys.readouterr().out
    assert "refresh: 2 of 2 crawled anime" in out
    assert "refreshing 2 anime" in out and "reviews 2 new" in out

    assert main(["stats", "--db", str(tmp_path / "mal.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "reviews: 7" in out and "  mal_crawl: 7" in out
    assert "last crawl per anime (2 crawled, 0 never crawled; oldest first):" in out
    lines = [line.split() for line in out.splitlines() if line.strip().endswith(("Show 1", "Show 2"))]
    assert sorted((line[0], line[2], line[4]) for line in lines) == [("1", "minutes", "4"), ("2", "minutes", "3")]


def test_cli_refresh_with_seeds_is_an_argument_error(fake_site, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["crawl", "--refresh-days", "1", "--ids", "1", "--db", str(tmp_path / "db.sqlite")])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
