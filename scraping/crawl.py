"""The MyAnimeList crawler: top list → anime pages → reviews pages → user recommendations, into the store.

The crawl is driven entirely by the store's crawl state (one row per URL: pending/done/failed, attempts,
last error). URLs are worked off as a stack -- the most recently enqueued pending URL first -- and each
page's children are pushed in reverse order, so the crawl goes depth first (an anime's page, then its
reviews pages, then its recommendations, then the next anime) and a killed crawl resumes at exactly the
URL it was on. A page's records are upserted before the page is marked done, so redoing a page after a
kill adds nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from scraping import urls
from scraping.cache import DEFAULT_CACHE_DIR, PageCache
from scraping.fetch import FetchConfig, Fetcher, FetchError
from scraping.parse import (
    PageError,
    parse_anime_page,
    parse_reviews_page,
    parse_saved_page,
    parse_top_page,
    parse_userrecs_page,
)
from scraping.store import Store, StoreError, UpsertCounts

log = logging.getLogger(__name__)

# A reviews listing longer than this is a loop (MAL's most-reviewed anime have a few hundred pages).
_MAX_REVIEW_PAGES = 5000


class CrawlBlocked(Exception):
    """The site answered with a captcha: the crawl stops so as not to keep hitting a site that is pushing back."""


@dataclass
class CrawlConfig:
    """What to crawl.

    Attributes:
        top: Crawl the first ``top`` anime of the top-anime list.
        ids: Crawl these anime ids (instead of ``top``).
        max_review_pages: Stop each anime's reviews after this many pages (None: until the last page).
        spoilers: Include reviews tagged as spoilers.
        preliminary: Include preliminary reviews (written while a show aired); MAL lists them by default.
        retry_failed: Put URLs that failed in earlier runs back in the queue.
        refresh_days: Refresh instead: re-read, newest first, the reviews of every crawled anime whose last
            crawl is older than this many days, until the first review already in the store.
    """

    top: int | None = None
    ids: list[int] = field(default_factory=list)
    max_review_pages: int | None = None
    spoilers: bool = False
    preliminary: bool = True
    retry_failed: bool = False
    refresh_days: float | None = None

    def __post_init__(self) -> None:
        if self.top is not None and self.top < 1:
            raise ValueError(f"--top must be at least 1 (got {self.top})")
        if self.max_review_pages is not None and self.max_review_pages < 0:
            raise ValueError(f"--max-review-pages must be >= 0 (got {self.max_review_pages})")
        if self.refresh_days is not None and self.refresh_days < 0:
            raise ValueError(f"--refresh-days must be >= 0 (got {self.refresh_days:g})")


@dataclass
class CrawlReport:
    """What one run did."""

    pages: int = 0
    failed: int = 0
    anime: UpsertCounts = field(default_factory=UpsertCounts)
    reviews: UpsertCounts = field(default_factory=UpsertCounts)
    user_recs: UpsertCounts = field(default_factory=UpsertCounts)
    stopped: bool = False
    elapsed_s: float = 0.0
    pending: int = 0
    refreshed_anime: int = 0

    @property
    def pages_per_s(self) -> float:
        """Pages handled per second of (possibly simulated) time."""
        return self.pages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """One line for the terminal."""
        state = "stopped early" if self.stopped else "finished"
        refresh = f" refreshing {self.refreshed_anime} anime," if self.refreshed_anime else ""
        return (
            f"crawl {state}:{refresh} {self.pages} pages in {self.elapsed_s:.1f} s ({self.pages_per_s:.2f} pages/s),"
            f" {self.failed} failed, {self.pending} still pending; reviews {self.reviews.inserted} new,"
            f" {self.reviews.updated} updated; anime {self.anime.inserted} new, {self.anime.updated} updated;"
            f" user recommendations {self.user_recs.inserted} new"
        )


class Crawler:
    """Works off the store's pending URLs with one :class:`Fetcher`. Constructing one does no I/O.

    Args:
        store: Where records and crawl state go.
        fetcher: The polite fetcher (with its cache).
        config: What to crawl.
        progress: Show a tqdm progress bar on stderr.
        clock: Seconds, for the elapsed time in the report (tests pass the fetcher's fake clock).
    """

    def __init__(self, store: Store, fetcher: Fetcher, config: CrawlConfig | None = None, *,
                 progress: bool = False, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.fetcher = fetcher
        self.config = config or CrawlConfig()
        self.progress = progress
        self._clock = clock or fetcher.clock
        self._stop = threading.Event()
        self.report = CrawlReport()

    # ---- queue ---------------------------------------------------------------------------
    def _push(self, items: list[tuple[str, str]], again: bool = False) -> None:
        """Enqueue URLs so that ``items[0]`` is crawled first (the queue is a stack); ``again``: also URLs that were
        crawled before (refresh listings)."""
        (self.store.requeue_urls if again else self.store.enqueue_urls)(reversed(items))

    def seed(self, now: float | None = None) -> int:
        """Queue the starting URLs of this run (and, if asked, earlier failures); returns how many are new.

        Args:
            now: the time (``time.time()`` scale) that refresh ages are measured at; default: now.
        """
        before = sum(self.store.crawl_counts().values())
        if self.config.retry_failed:
            self.store.reset_failed_urls()
        if self.config.refresh_days is not None:
            return self._seed_refresh(time.time() if now is None else now)
        if self.config.ids:
            self._push([(urls.anime_page_url(a), "anime") for a in self.config.ids])
        elif self.config.top:
            self._push([(urls.top_anime_url(0), "top")])
        return sum(self.store.crawl_counts().values()) - before

    def _seed_refresh(self, now: float) -> int:
        """Queue the newest-first reviews listing of every anime last crawled more than ``refresh_days`` ago,
        the longest-unvisited first."""
        ages = crawl_ages(self.store.done_url_times(LAST_CRAWL_KINDS), now)
        stale = [a for a, age in sorted(ages.items(), key=lambda item: (-item[1], item[0]))
                 if age > self.config.refresh_days * 86400]
        self.report.refreshed_anime = len(stale)
        self._push([(self._refresh_url(a), "reviews") for a in stale], again=True)
        return len(stale)

    def _refresh_url(self, anime_id: int, page: int = 1) -> str:
        return urls.reviews_url(anime_id, page, spoiler=self.config.spoilers, preliminary=self.config.preliminary,
                                sort=urls.NEWEST_FIRST)

    def request_stop(self) -> None:
        """Finish the current page, then stop (what Ctrl-C does)."""
        self._stop.set()

    # ---- run -----------------------------------------------------------------------------
    def run(self, max_pages: int | None = None) -> CrawlReport:
        """Crawl pending URLs until none is left, ``max_pages`` were done, or a stop was requested.

        Raises:
            CrawlBlocked: the site answered with a captcha (the page stays pending for the next run).
        """
        start = self._clock()
        bar = self._progress_bar()
        restore = self._install_sigint()
        redirect = contextlib.nullcontext()
        if bar is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            redirect = logging_redirect_tqdm()  # log lines go above the bar instead of through it
        try:
            with redirect:
                while not self._stop.is_set():
                    if max_pages is not None and self.report.pages >= max_pages:
                        break
                    item = self.store.next_pending_url()
                    if item is None:
                        break
                    self.process(*item)
                    self.report.pages += 1
                    if bar is not None:
                        self._update_bar(bar)
        finally:
            restore()
            if bar is not None:
                bar.close()
            self.report.elapsed_s = self._clock() - start
            self.report.pending = self.store.crawl_counts().get("pending", 0)
            self.report.stopped = self._stop.is_set() or (max_pages is not None and self.report.pending > 0)
        return self.report

    def _update_bar(self, bar) -> None:
        counts = self.store.crawl_counts()
        # The total grows as pages reveal more pages (next reviews page, next top page).
        bar.total = self.report.pages + counts.get("pending", 0)
        bar.set_postfix(failed=counts.get("failed", 0), cached=self.fetcher.stats.cache_hits, refresh=False)
        bar.update(1)

    def _progress_bar(self):
        if not self.progress:
            return None
        from tqdm import tqdm

        pending = self.store.crawl_counts().get("pending", 0)
        # disable=None: no bar when stderr is not a terminal (logs, CI).
        return tqdm(total=pending, unit="page", desc="crawl", dynamic_ncols=True, smoothing=0.05, disable=None)

    def _install_sigint(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):
            if self._stop.is_set():
                raise KeyboardInterrupt
            log.warning("stopping after the current page (Ctrl-C again to abort at once)")
            self._stop.set()

        signal.signal(signal.SIGINT, on_sigint)
        return lambda: signal.signal(signal.SIGINT, previous)

    # ---- one page ------------------------------------------------------------------------
    def process(self, url: str, kind: str | None) -> None:
        """Fetch, parse and store one URL, then mark it done or failed. Never raises for a bad page.

        Raises:
            CrawlBlocked: the site answered with a captcha.
        """
        info = urls.classify_url(url)
        if info is None:
            self._fail(url, kind, "not a URL the crawler knows how to handle")
            return
        if info.kind == "reviews" and info.sort == urls.NEWEST_FIRST:
            self.fetcher.forget(url)  # a refresh reads the listing as it is now, not as it was cached
        try:
            page = self.fetcher.get(url)
        except FetchError as exc:
            self._fail(url, info.kind, exc.reason)
            return
        handler = {"top": self._on_top, "anime": self._on_anime, "reviews": self._on_reviews,
                   "userrecs": self._on_userrecs}[info.kind]
        try:
            handler(url, info, page.text)
        except PageError as exc:
            # Never keep a login wall or captcha as "the page": the next run must fetch it again.
            self.fetcher.forget(url)
            if exc.kind == "captcha":
                self.store.mark_url(url, "pending", kind=info.kind, error=str(exc), count_attempt=True)
                raise CrawlBlocked(f"{url}: {exc}") from exc
            self._fail(url, info.kind, str(exc))
            return
        except Exception as exc:  # a parser bug on one odd page must not end a long crawl
            log.exception("could not process %s", url)
            self._fail(url, info.kind, f"{type(exc).__name__}: {exc}")
            return
        self.store.mark_url(url, "done", kind=info.kind, count_attempt=True)

    def _fail(self, url: str, kind: str | None, error: str) -> None:
        log.warning("failed: %s: %s", url, error)
        self.report.failed += 1
        self.store.mark_url(url, "failed", kind=kind, error=error, count_attempt=True)

    def _on_top(self, url: str, info: urls.UrlInfo, html: str) -> None:
        page = parse_top_page(html)
        limit = self.config.top
        wanted = []
        for index, entry in enumerate(page.entries):
            rank = entry.rank if entry.rank is not None else info.offset + index + 1
            if limit is None or rank <= limit:
                wanted.append(entry)
        self.report.anime += self.store.upsert_anime(e.anime for e in wanted)
        children = [(urls.anime_page_url(e.anime_id), "anime") for e in wanted]
        next_offset = info.offset + urls.TOP_PAGE_SIZE
        # Without --top (a resumed run) only the pages already queued are read.
        if page.has_next and page.entries and limit is not None and next_offset < limit:
            children.append((urls.top_anime_url(next_offset), "top"))
        self._push(children)

    def _on_anime(self, url: str, info: urls.UrlInfo, html: str) -> None:
        page = parse_anime_page(html, info.anime_id)
        self.report.anime += self.store.upsert_anime([page.anime])
        self.report.reviews += self.store.upsert_reviews(page.reviews)
        children = []
        if self.config.max_review_pages != 0:
            children.append((urls.reviews_url(info.anime_id, 1, spoiler=self.config.spoilers,
                                              preliminary=self.config.preliminary), "reviews"))
        children.append((urls.userrecs_url(info.anime_id), "userrecs"))
        self._push(children)

    def _on_reviews(self, url: str, info: urls.UrlInfo, html: str) -> None:
        page = parse_reviews_page(html, info.anime_id)
        refresh = info.sort == urls.NEWEST_FIRST
        # Newest first, a review the store already has means every later one is known too.
        reached_known = refresh and bool(self.store.known_review_ids(r.review_id for r in page.reviews))
        self.report.reviews += self.store.upsert_reviews(page.reviews)
        limit = self.config.max_review_pages
        more_allowed = (limit is None or info.page < limit) and info.page < _MAX_REVIEW_PAGES
        # An empty page that still offers "more" would loop forever; stop there.
        if page.has_next and page.reviews and more_allowed and not reached_known:
            self._push([(urls.next_reviews_url(url), "reviews")], again=refresh)

    def _on_userrecs(self, url: str, info: urls.UrlInfo, html: str) -> None:
        page = parse_userrecs_page(html, info.anime_id)
        self.report.user_recs += self.store.upsert_user_recs(page.recommendations)


# ---- crawl ages ---------------------------------------------------------------------------------------
#: Crawled pages that date an anime's reviews: its page (which embeds a few) and its reviews listings.
LAST_CRAWL_KINDS = ("anime", "reviews")


def crawl_ages(done: Iterable[tuple[str, float]], now: float) -> dict[int, float]:
    """Seconds since each anime's most recent crawled page, from ``(url, done at)`` pairs."""
    last: dict[int, float] = {}
    for url, when in done:
        anime_id = urls.anime_id_from_url(url)
        if anime_id is not None and when > last.get(anime_id, float("-inf")):
            last[anime_id] = when
    return {anime_id: now - when for anime_id, when in last.items()}


def format_age(seconds: float) -> str:
    """``"3.2 days"``, ``"5.0 hours"`` or ``"12 minutes"``."""
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{max(0, round(seconds / 60))} minutes"


# ---- command line ------------------------------------------------------------------------------
def parse_ids(text: str) -> list[int]:
    """``"1,5,6"`` → ``[1, 5, 6]`` (order kept, duplicates dropped).

    Raises:
        ValueError: an item is not a positive integer.
    """
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"--ids: {part!r} is not a MAL anime id")
        if int(part) not in ids:
            ids.append(int(part))
    if not ids:
        raise ValueError("--ids: no anime id given")
    return ids


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cmd_crawl(args: argparse.Namespace) -> int:
    """``crawl``: seed from ``--top``/``--ids`` (or resume), crawl politely, print a summary."""
    try:
        config = CrawlConfig(
            top=args.top, ids=parse_ids(args.ids) if args.ids else [], max_review_pages=args.max_review_pages,
            spoilers=args.spoilers, retry_failed=args.retry_failed, refresh_days=args.refresh_days,
        )
        fetch_config = FetchConfig(delay=args.delay)
    except ValueError as exc:
        return _error(str(exc), 2)
    with Store.open(args.db) as store, Fetcher(fetch_config, cache=PageCache(args.cache)) as fetcher:
        crawler = Crawler(store, fetcher, config, progress=not args.no_progress)
        stale = crawler.seed()
        pending = store.crawl_counts().get("pending", 0)
        if config.refresh_days is not None:
            crawled = len(crawl_ages(store.done_url_times(LAST_CRAWL_KINDS), time.time()))
            print(f"refresh: {stale} of {crawled} crawled anime were last crawled more than"
                  f" {config.refresh_days:g} days ago")
        if pending == 0:
            print("nothing to crawl: every queued URL is done or failed (give --top N or --ids, or --retry-failed)")
            return 0
        log.info("crawling %d queued URLs (delay %.1f s + jitter; cache %s)", pending, fetch_config.delay, args.cache)
        try:
            report = crawler.run()
        except CrawlBlocked as exc:
            return _error(f"the site answered with a captcha, stopping; wait a while before resuming ({exc})", 3)
        except OSError as exc:  # e.g. the cache disk is full; the page in hand stays pending
            return _error(f"crawl stopped: {exc}", 1)
        print(report.summary())
        if report.stopped:
            print("stopped; run the same command again to resume where it stopped", file=sys.stderr)
            return 130
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """``stats``: counts of anime, reviews (per source), user recommendations and crawl state."""
    try:
        store = Store.open(args.db, create=False)
    except StoreError as exc:
        return _error(str(exc), 1)
    with store:
        counts = store.crawl_counts()
        failures = store.crawl_failures()
        print(f"store: {args.db}")
        print(f"anime: {store.count_anime()}")
        sources = store.reviews_per_source()
        print(f"reviews: {store.count_reviews()}" + (", by source:" if sources else ""))
        for source, n in sources.items():
            print(f"  {source}: {n}")
        print(f"user recommendations: {len(store.user_recs())}")
        print("crawl URLs: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("done", "pending", "failed")))
        _print_crawl_ages(store, args.show_anime)
        if failures:
            print(f"failed URLs ({len(failures)}):")
            for url, attempts, error in failures[: args.show_failed]:
                print(f"  {url}  [{attempts} attempts] {error or ''}")
            if len(failures) > args.show_failed:
                print(f"  ... and {len(failures) - args.show_failed} more")
    return 0


def _print_crawl_ages(store: Store, limit: int) -> None:
    """Per-anime age of the last crawl, oldest first (what ``crawl --refresh-days`` would revisit first)."""
    ages = crawl_ages(store.done_url_times(LAST_CRAWL_KINDS), time.time())
    if not ages:
        print("last crawl per anime: no anime crawled yet (imported reviews are not crawled)")
        return
    reviews = store.review_counts_by_anime()
    print(f"last crawl per anime ({len(ages)} crawled, {max(0, store.count_anime() - len(ages))} never crawled;"
          " oldest first):")
    ordered = sorted(ages.items(), key=lambda item: (-item[1], item[0]))
    for anime_id, age in ordered[:limit]:
        anime = store.get_anime(anime_id)
        title = anime.title if anime else f"Anime {anime_id}"
        print(f"  {anime_id:>6}  {format_age(age):>13} ago  {reviews.get(anime_id, 0):>5} reviews  {title}")
    if len(ordered) > limit:
        print(f"  ... and {len(ordered) - limit} more")


def cmd_parse(args: argparse.Namespace) -> int:
    """``parse``: print what the parser gets from one saved page (reviews, or userrecs/top entries)."""
    path = Path(args.path)
    try:
        html = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return _error(f"cannot read {path}: {exc.strerror or exc}", 1)
    try:
        kind, records = parse_saved_page(html, args.anime_id)
    except PageError as exc:
        return _error(f"{path}: {exc}", 1)
    if args.json:
        print(json.dumps(records, ensure_ascii=False, indent=2))
        return 0
    print(f"{path}: {kind} page, {len(records)} records")
    for record in records:
        if "review_id" in record:
            print(f"  review {record['review_id']}  {record['date']}  score {record['score']}  "
                  f"{record['username']}  {', '.join(record['tags'])}  {len(record['text'])} chars")
        else:
            print("  " + "  ".join(f"{k}={v}" for k, v in record.items()))
    return 0


def add_subcommands(sub: argparse._SubParsersAction, default_db: str | Path) -> None:
    """Register ``crawl``, ``stats`` and ``parse`` on the ``python -m scraping`` parser."""
    p = sub.add_parser("crawl", help="crawl MyAnimeList politely into the store (resumable)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--top", type=int, metavar="N", help="crawl the first N anime of the top-anime list")
    seeds.add_argument("--ids", metavar="ID,ID", help="crawl these anime ids, e.g. 1,5,6")
    seeds.add_argument("--refresh-days", type=float, metavar="N",
                       help="re-read the reviews of every crawled anime last crawled more than N days ago, newest"
                            " first, up to the first review already in the store")
    p.add_argument("--max-review-pages", type=int, metavar="K", help="at most K reviews pages per anime "
                   "(20 reviews each; default: all)")
    p.add_argument("--spoilers", action="store_true", help="include reviews tagged as spoilers")
    p.add_argument("--db", default=str(default_db), help="store file (default: %(default)s)")
    p.add_argument("--delay", type=float, default=FetchConfig.delay, metavar="S",
                   help="seconds between requests, plus up to 50%% random jitter; at least 1 (default: %(default)s)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE_DIR), metavar="DIR",
                   help="raw-page cache directory (default: %(default)s)")
    p.add_argument("--retry-failed", action="store_true", help="queue URLs that failed in earlier runs again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_crawl)

    p = sub.add_parser("stats", help="counts of anime, reviews, user recommendations and crawl state")
    p.add_argument("--db", default=str(default_db), help="store file (default: %(default)s)")
    p.add_argument("--show-failed", type=int, default=20, metavar="N", help="list up to N failed URLs")
    p.add_argument("--show-anime", type=int, default=20, metavar="N",
                   help="list the last crawl of up to N anime, oldest first")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("parse", help="parse one saved MAL page and print its reviews (offline)")
    p.add_argument("path", help="saved .html page (reviews, anime, userrecs or top-anime page)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--anime-id", type=int, help="anime id, for pages that do not say it")
    p.set_defaults(func=cmd_parse)
