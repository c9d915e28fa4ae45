"""Pure builders and readers of the MyAnimeList URLs the crawler visits (no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from scraping.models import anime_url

BASE_URL = "https://myanimelist.net"
TOP_PAGE_SIZE = 50
"""Rows per top-anime page; MAL pages the list with ``limit=`` offsets in steps of 50."""
NEWEST_FIRST = "newest"
"""MAL's ``sort=`` value that lists an anime's reviews newest first."""

# MAL serves an anime's sub-pages under any slug, so a fixed "x" avoids knowing the title.
_SLUG = "x"

_ANIME_PATH = re.compile(r"^/anime/(\d+)(?:/[^/]*)?/?$")
_SUBPAGE_PATH = re.compile(r"^/anime/(\d+)/[^/]+/(reviews|userrecs)/?$")
_ANY_ANIME_PATH = re.compile(r"/anime/(\d+)(?:/|$)")


def top_anime_url(offset: int = 0) -> str:
    """URL of the top-anime list page that starts after ``offset`` rows.

    Args:
        offset: Number of ranked rows before the page (0, 50, 100, ...).

    Returns:
        ``https://myanimelist.net/topanime.php?limit=<offset>``.
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    return f"{BASE_URL}/topanime.php?limit={int(offset)}"


def anime_page_url(anime_id: int) -> str:
    """URL of an anime's main (details) page; the same string the store keeps as ``Anime.url``."""
    return anime_url(anime_id)


def reviews_url(anime_id: int, page: int = 1, *, spoiler: bool = False, preliminary: bool = False,
                sort: str | None = None) -> str:
    """URL of one page of an anime's reviews (20 per page, MAL's "most voted" order unless ``sort`` says otherwise).

    Args:
        anime_id: MAL anime id.
        page: 1-based page number.
        spoiler: Include reviews tagged as spoilers (``spoiler=on``).
        preliminary: Include preliminary reviews written while the show aired (``preliminary=on``).
        sort: MAL's listing order, e.g. :data:`NEWEST_FIRST` (what a refresh crawl reads).

    Returns:
        ``https://myanimelist.net/anime/<id>/x/reviews?p=<page>`` plus the chosen options.
    """
    if page < 1:
        raise ValueError(f"page must be >= 1, got {page}")
    query = {"p": int(page)}
    if spoiler:
        query["spoiler"] = "on"
    if preliminary:
        query["preliminary"] = "on"
    if sort:
        query["sort"] = sort
    return f"{BASE_URL}/anime/{int(anime_id)}/{_SLUG}/reviews?{urlencode(query)}"


def userrecs_url(anime_id: int) -> str:
    """URL of an anime's user-recommendations page ("fans of X also liked Y")."""
    return f"{BASE_URL}/anime/{int(anime_id)}/{_SLUG}/userrecs"


def robots_url(url: str) -> str:
    """URL of the robots.txt that governs ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/robots.txt"


@dataclass(frozen=True)
class UrlInfo:
    """What a crawler URL points at.

    ``kind`` is one of ``top``, ``anime``, ``reviews``, ``userrecs``; the other fields are set where
    they apply (``offset`` for top pages, ``page``/``spoiler``/``preliminary``/``sort`` for reviews pages).
    """

    kind: str
    anime_id: int | None = None
    page: int = 1
    offset: int = 0
    spoiler: bool = False
    preliminary: bool = False
    sort: str | None = None


def classify_url(url: str) -> UrlInfo | None:
    """Tell which kind of MAL page a URL is, or None if the crawler does not handle it.

    Args:
        url: An absolute MAL URL, e.g. one made by the builders above.

    Returns:
        A :class:`UrlInfo`, or None for any other URL.
    """
    parts = urlsplit(url)
    query = parse_qs(parts.query)

    def _int(name: str, default: int) -> int:
        try:
            return int(query.get(name, [default])[0])
        except ValueError:
            return default

    if parts.path.rstrip("/") == "/topanime.php":
        return UrlInfo("top", offset=max(0, _int("limit", 0)))
    match = _SUBPAGE_PATH.match(parts.path)
    if match:
        anime_id, what = int(match.group(1)), match.group(2)
        if what == "userrecs":
            return UrlInfo("userrecs", anime_id)
        return UrlInfo(
            "reviews", anime_id, page=max(1, _int("p", 1)),
            spoiler=query.get("spoiler", [""])[0] == "on", preliminary=query.get("preliminary", [""])[0] == "on",
            sort=query.get("sort", [None])[0],
        )
    match = _ANIME_PATH.match(parts.path)
    if match:
        return UrlInfo("anime", int(match.group(1)))
    return None


def anime_id_from_url(url: str) -> int | None:
    """The MAL anime id inside any ``/anime/<id>...`` URL or path, or None."""
    match = _ANY_ANIME_PATH.search(urlsplit(url).path)
    return int(match.group(1)) if match else None


def next_reviews_url(url: str) -> str:
    """URL of the reviews page after ``url``, keeping its spoiler/preliminary options.

    Raises:
        ValueError: ``url`` is not a reviews-page URL.
    """
    info = classify_url(url)
    if info is None or info.kind != "reviews":
        raise ValueError(f"not a reviews page URL: {url}")
    return reviews_url(info.anime_id, info.page + 1, spoiler=info.spoiler, preliminary=info.preliminary,
                       sort=info.sort)


#: Hosts whose links we store and serve: MAL itself and its subdomains (``cdn.myanimelist.net`` for images).
SAFE_HOST = "myanimelist.net"
_MAX_URL_CHARS = 2048


def safe_mal_url(url: object) -> str | None:
    """``url`` when it is an ``https://`` link to MyAnimeList (a site-relative path or an ``http://`` MAL link is
    made absolute ``https``), else None.

    The one URL check for everything we store and serve (anime pages, review permalinks,
    images): ``javascript:``, ``data:``, other hosts, user-info tricks
    (``https://myanimelist.net@evil.example/``), control characters and odd ports are refused.
    """
    if not isinstance(url, str):
        return None
    text = url.strip()
    if not text or len(text) > _MAX_URL_CHARS or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    if text.startswith("/") and not text.startswith("//") and "\\" not in text:
        text = BASE_URL + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in ("https", "http") or "@" in parts.netloc or "\\" in text:
        return None
    if host != SAFE_HOST and not host.endswith("." + SAFE_HOST):
        return None
    if parts.scheme.lower() == "http":  # MAL serves everything over https; an old http link is upgraded
        return safe_mal_url("https" + text[len("http"):]) if port in (None, 80) else None
    return text if port in (None, 443) else None
