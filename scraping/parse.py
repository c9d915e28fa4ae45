"""Pure functions from MyAnimeList HTML to records: the only module that imports bs4.

Every parser takes the page's HTML text and returns plain records (:mod:`scraping.models`). A field the
page does not have (or has in an unexpected shape) becomes None/empty and is logged; it never raises.
What does raise is a page that is not what it claims to be -- a login wall, a captcha, an error page,
or a different kind of page (e.g. a redirect to the anime page instead of its reviews): :class:`PageError`.

Layout notes for the current MAL markup are in ``../shared/data/html/README.md``.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
from dataclasses import dataclass, field

from bs4 import BeautifulSoup, Tag

from scraping.models import Anime, Review, UserRecommendation, is_adult
from scraping.urls import anime_id_from_url

log = logging.getLogger(__name__)

SOURCE = "mal_crawl"
"""``source`` of every review and user recommendation parsed from a crawled page."""

_TAG_LABELS = {
    "recommended": "Recommended",
    "mixed-feelings": "Mixed Feelings",
    "not-recommended": "Not Recommended",
    "preliminary": "Preliminary",
    "spoiler": "Spoiler",
}
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_SEASONS = ("winter", "spring", "summer", "fall")
# Fields MAL leaves out for many titles: their absence is normal, so it is logged quietly.
_OFTEN_ABSENT = {"title_english", "episodes", "score", "season", "rating", "synopsis", "themes", "demographics",
                 "members", "year", "type"}
_SITE_SUFFIX = re.compile(r"\s*-\s*MyAnimeList\.net\s*$", re.IGNORECASE)


class PageError(Exception):
    """The HTML is not the page that was asked for.

    Attributes:
        kind: ``login_wall``, ``captcha``, ``error_page`` or ``wrong_page``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass
class ReviewsPage:
    """One page of an anime's reviews."""

    anime_id: int
    reviews: list[Review]
    has_next: bool
    anime_title: str | None = None


@dataclass
class AnimePage:
    """An anime's details page: its metadata and the few reviews it embeds."""

    anime: Anime
    reviews: list[Review]


@dataclass
class TopEntry:
    """One row of the top-anime list; ``anime`` holds the metadata the row shows."""

    rank: int | None
    anime_id: int
    title: str
    anime: Anime


@dataclass
class TopPage:
    """One page of the top-anime list."""

    entries: list[TopEntry]
    has_next: bool


@dataclass
class UserRecsPage:
    """An anime's user-recommendations page."""

    anime_id: int
    recommendations: list[UserRecommendation] = field(default_factory=list)


# ---- helpers ----------------------------------------------------------------------------------
def _soup(html: str) -> BeautifulSoup:
    # The stdlib parser: lxml is not a dependency, and html.parser copes with MAL's markup.
    return BeautifulSoup(html, "html.parser")


def _missing(name: str, where: str, *, quiet: bool | None = None) -> None:
    quiet = name in _OFTEN_ABSENT if quiet is None else quiet
    level = logging.DEBUG if quiet else logging.WARNING
    log.log(level, "%s: no %s found; stored as null", where, name)


def _text(node: Tag | None) -> str:
    return " ".join(node.get_text(" ").split()) if node is not None else ""


def _to_int(value: str | None) -> int | None:
    if not value:
        return None
    digits = re.sub(r"[,\s]", "", value)
    return int(digits) if digits.isdigit() else None


def _to_float(value: str | None) -> float | None:
    match = re.search(r"\d+(?:\.\d+)?", value or "")
    return float(match.group()) if match else None


def normalize_text(text: str) -> str:
    """MAL text to plain text: unescape the entities MAL double-escapes, collapse all whitespace.

    Args:
        text: Text already extracted from the HTML (so entities were unescaped once).

    Returns:
        The text with a second round of entity unescaping and runs of whitespace turned into one space.
    """
    return " ".join(html_lib.unescape(text).split())


def iso_date(text: str | None) -> str | None:
    """``"Aug 24, 2008"`` (MAL's review date) to ``"2008-08-24"``; None if it is not such a date."""
    match = re.search(r"([A-Za-z]{3})[a-z]*\.?\s+(\d{1,2}),\s*(\d{4})", text or "")
    if not match:
        return None
    month = _MONTHS.get(match.group(1).lower())
    if month is None:
        return None
    return f"{int(match.group(3)):04d}-{month:02d}-{int(match.group(2)):02d}"


def _meta(soup: BeautifulSoup, prop: str) -> str | None:
    node = soup.find("meta", attrs={"property": prop})
    value = node.get("content") if node else None
    return value.strip() if value else None


def _page_url(soup: BeautifulSoup) -> str | None:
    node = soup.find("link", attrs={"rel": "canonical"})
    if node and node.get("href"):
        return node["href"]
    return _meta(soup, "og:url")


def _title(soup: BeautifulSoup) -> str:
    return _text(soup.title) if soup.title else ""


def _page_anime_id(soup: BeautifulSoup) -> int | None:
    for url in (_page_url(soup), _meta(soup, "og:url")):
        if url and (anime_id := anime_id_from_url(url)) is not None:
            return anime_id
    # Pages without canonical links still carry the id in the "edit" form.
    node = soup.find("input", attrs={"name": "aid"})
    return _to_int(node.get("value")) if node else None


# ---- page checks --------------------------------------------------------------------------------
_CAPTCHA_TITLE = re.compile(
    r"captcha|just a moment|attention required|are you a robot|verify you are human", re.IGNORECASE)
_LOGIN_TITLE = re.compile(r"(?:login|log in|sign in)$", re.IGNORECASE)
_ERROR_TITLE = re.compile(r"(?:40[34]|50[0-4])\b|(?:error|not found|page not found|access denied)$|.*\bmaintenance\b",
                          re.IGNORECASE)


def check_page(html_or_soup: str | BeautifulSoup) -> None:
    """Raise :class:`PageError` if the page is a captcha, a login wall or an error page.

    Every MAL page loads reCAPTCHA scripts and links to the login page, so those alone prove nothing:
    the checks look for a captcha *widget*, a password *form*, or an error title/box.
    """
    soup = _soup(html_or_soup) if isinstance(html_or_soup, str) else html_or_soup
    title = _title(soup)
    # Titles are only evidence on pages without an anime header: an anime may well be called "Error".
    core = "" if soup.select_one("h1.title-name") else _SITE_SUFFIX.sub("", title).strip()
    if (
        _CAPTCHA_TITLE.search(core)
        or soup.select_one(".g-recaptcha, .h-captcha, .cf-turnstile, #challenge-form, #captcha")
        or any("captcha" in (form.get("action") or "").lower() for form in soup.find_all("form"))
    ):
        raise PageError("captcha", f"the site answered with a captcha/challenge page ({title or 'no title'})")
    if soup.select_one("input[type=password]") or _LOGIN_TITLE.match(core):
        raise PageError("login_wall", f"the site answered with a login page ({title or 'no title'})")
    if _ERROR_TITLE.match(core) or soup.select_one(".error404, #error404, .error-404"):
        raise PageError("error_page", f"the site answered with an error page ({title or 'no title'})")


def detect_page_kind(html_or_soup: str | BeautifulSoup) -> str | None:
    """Which MAL page this is: ``top``, ``reviews``, ``userrecs``, ``anime``, or None if unknown."""
    soup = _soup(html_or_soup) if isinstance(html_or_soup, str) else html_or_soup
    url = _page_url(soup) or ""
    path = re.sub(r"^[a-z]+://[^/]+", "", url).split("?")[0].rstrip("/")
    title = _title(soup)
    if path.endswith("/topanime.php") or soup.select_one("tr.ranking-list") or title.lower().startswith("top anime"):
        return "top"
    if re.search(r"/anime/\d+/[^/]+/reviews$", path) or " - Reviews - " in title:
        return "reviews"
    if re.search(r"/anime/\d+/[^/]+/userrecs$", path) or " - Recommendations - " in title:
        return "userrecs"
    if re.fullmatch(r"/anime/\d+(?:/[^/]+)?", path) or soup.select_one("h1.title-name"):
        return "anime"
    return None


def _expect(soup: BeautifulSoup, kind: str, anime_id: int | None, where: str) -> int | None:
    """Check the page is a ``kind`` page of ``anime_id``; return the anime id the page says it is about."""
    check_page(soup)
    found = detect_page_kind(soup)
    if found != kind:
        raise PageError("wrong_page", f"{where}: expected a {kind} page, got {found or 'an unknown page'}")
    page_id = _page_anime_id(soup)
    if anime_id is not None and page_id is not None and page_id != int(anime_id):
        raise PageError("wrong_page", f"{where}: expected anime {anime_id}, the page is about anime {page_id}")
    return page_id if page_id is not None else anime_id


# ---- reviews --------------------------------------------------------------------------------------
def _review_text(node: Tag | None) -> str:
    if node is None:
        return ""
    # Work on a private copy: the "..." marker goes, the part behind "read more" (js-hidden) stays.
    node = _soup(str(node))
    for marker in node.select("span.js-visible"):
        marker.decompose()
    for br in node.find_all("br"):
        br.replace_with("\n")
    return normalize_text(node.get_text())


def _review_tags(element: Tag) -> list[str]:
    tags = []
    for tag in element.select(".tags .tag"):
        classes = tag.get("class") or []
        label = next((_TAG_LABELS[c] for c in classes if c in _TAG_LABELS), None)
        if label is None:
            # An unknown tag keeps its visible text minus counters such as "(13/26 eps)".
            label = re.sub(r"\s*\(.*?\)\s*", " ", _text(tag)).strip() or None
        if label and label not in tags:
            tags.append(label)
    return tags


def _review_id(element: Tag) -> str | None:
    link = element.select_one('a[href*="reviews.php?id="]')
    if link is not None:
        match = re.search(r"reviews\.php\?id=(\d+)", link["href"])
        if match:
            return match.group(1)
    # Fallback: the reaction buttons carry the review id too.
    node = element.select_one(".js-icon-reaction[data-id], .btn-reaction[data-id]")
    return node["data-id"] if node is not None and str(node["data-id"]).isdigit() else None


def _parse_review(element: Tag, anime_id: int, anime_title: str | None, where: str) -> Review | None:
    review_id = _review_id(element)
    if review_id is None:
        log.warning("%s: a review without an id was skipped", where)
        return None
    here = f"{where} review {review_id}"
    text = _review_text(element.select_one("div.text"))
    if not text:
        log.warning("%s: empty text; skipped", here)
        return None
    user = element.select_one(".username a") or element.select_one(".username")
    username = _text(user) or None
    if username is None:
        _missing("username", here)
    date = iso_date(_text(element.select_one(".update_at")))
    if date is None:
        _missing("date", here)
    score_node = element.select_one(".rating span.num") or element.select_one(".rating")
    score = _to_int(re.sub(r"\D", "", _text(score_node))) if score_node is not None else None
    if score is not None and not 1 <= score <= 10:
        log.warning("%s: score %s outside 1-10; stored as null", here, score)
        score = None
    if score is None:
        _missing("score", here, quiet=False)  # every MAL review is scored
    return Review(
        review_id=review_id, anime_id=anime_id, text=text, username=username, date=date, score=score,
        tags=_review_tags(element), source=SOURCE, anime_title=anime_title,
    )


def _parse_review_elements(soup: BeautifulSoup, anime_id: int, anime_title: str | None, where: str) -> list[Review]:
    reviews, seen = [], set()
    for element in soup.select("div.review-element"):
        review = _parse_review(element, anime_id, anime_title, where)
        if review is not None and review.review_id not in seen:
            seen.add(review.review_id)
            reviews.append(review)
    return reviews


def _has_next_reviews(soup: BeautifulSoup) -> bool:
    for link in soup.find_all("a", href=True):
        if link.get("data-ga-click-type") == "review-more-reviews":
            return True
        label = _text(link).lower()
        if label in {"more reviews", "next", "next page"} and "reviews" in link["href"]:
            return True
    return False


def _anime_title(soup: BeautifulSoup) -> str | None:
    """The anime's title: the page header, else og:title, else the <title> minus MAL's suffixes."""
    title = _text(soup.select_one("h1.title-name")) or _meta(soup, "og:title") or ""
    if not title:
        title = _SITE_SUFFIX.sub("", _title(soup))
        title = re.sub(r"\s+-\s+(Reviews|Recommendations)$", "", title)
    return title or None


def parse_reviews_page(html: str, anime_id: int | None = None) -> ReviewsPage:
    """Parse one page of ``/anime/<id>/<slug>/reviews``.

    Args:
        html: The page's HTML.
        anime_id: The anime the page should be about; checked against the page when both are known.

    Returns:
        The page's reviews (full text, including the part behind "read more") and whether a next page exists.

    Raises:
        PageError: a login wall, captcha or error page, a page of another kind or anime, or no anime id at all.
    """
    return _reviews_page(_soup(html), anime_id)


def _reviews_page(soup: BeautifulSoup, anime_id: int | None) -> ReviewsPage:
    where = f"reviews page of anime {anime_id}" if anime_id is not None else "reviews page"
    page_id = _expect(soup, "reviews", anime_id, where)
    if page_id is None:
        raise PageError("wrong_page", f"{where}: cannot tell which anime the page is about")
    title = _anime_title(soup)
    reviews = _parse_review_elements(soup, page_id, title, where)
    return ReviewsPage(page_id, reviews, _has_next_reviews(soup), title)


# ---- anime details ----------------------------------------------------------------------------
def _info_fields(soup: BeautifulSoup) -> dict[str, Tag]:
    """Sidebar ``<span class="dark_text">Label:</span> value`` rows, by label (first occurrence wins)."""
    scope = soup.select_one("div.leftside") or soup
    fields: dict[str, Tag] = {}
    for label in scope.select("span.dark_text"):
        name = _text(label).rstrip(":").strip().lower()
        if name and name not in fields and label.parent is not None:
            fields[name] = label.parent
    return fields


def _field_value(fields: dict[str, Tag], *names: str) -> str | None:
    for name in names:
        node = fields.get(name)
        if node is not None:
            label = node.select_one("span.dark_text")
            value = _text(node)
            if label is not None:
                value = value[len(_text(label)):].strip() if value.startswith(_text(label)) else value
            return value or None
    return None


def _field_links(fields: dict[str, Tag], *names: str) -> list[str]:
    for name in names:
        node = fields.get(name)
        if node is not None:
            # The visible links; MAL also repeats each name in a hidden itemprop span.
            return [_text(a) for a in node.find_all("a") if _text(a)]
    return []


def _synopsis(soup: BeautifulSoup) -> str | None:
    node = soup.select_one('p[itemprop="description"]')
    if node is None:
        return _meta(soup, "og:description")
    node = _soup(str(node))
    for br in node.find_all("br"):
        br.replace_with("\n")
    lines = [" ".join(line.split()) for line in node.get_text().split("\n")]
    text = "\n".join(line for line in lines if line).strip()
    if not text or text.lower().startswith("no synopsis"):
        return None
    return text


def parse_anime_page(html: str, anime_id: int | None = None) -> AnimePage:
    """Parse an anime's main page (``/anime/<id>/<slug>``) into metadata plus its embedded reviews.

    Args:
        html: The page's HTML.
        anime_id: The anime the page should be about; checked against the page when both are known.

    Returns:
        An :class:`AnimePage`; unknown fields are None/empty (logged), never an exception.

    Raises:
        PageError: a login wall, captcha or error page, another kind of page or anime, or no id/title at all.
    """
    return _anime_page(_soup(html), anime_id)


def _anime_page(soup: BeautifulSoup, anime_id: int | None) -> AnimePage:
    where = f"anime page {anime_id}" if anime_id is not None else "anime page"
    page_id = _expect(soup, "anime", anime_id, where)
    if page_id is None:
        raise PageError("wrong_page", f"{where}: cannot tell which anime the page is about")
    where = f"anime page {page_id}"
    fields = _info_fields(soup)

    title = _anime_title(soup)
    if not title:
        raise PageError("wrong_page", f"{where}: no title")
    values: dict[str, object] = {"title_english": _field_value(fields, "english")}
    values["type"] = _field_value(fields, "type")
    values["episodes"] = _to_int(_field_value(fields, "episodes"))

    season = year = None
    premiered = _field_value(fields, "premiered") or ""
    match = re.search(r"(winter|spring|summer|fall)\s+(\d{4})", premiered, re.IGNORECASE)
    if match:
        season, year = match.group(1).lower(), int(match.group(2))
    else:
        aired = re.search(r"\b(19|20)\d{2}\b", _field_value(fields, "aired") or "")
        year = int(aired.group()) if aired else None
    values["season"], values["year"] = season, year

    score_node = soup.select_one('[itemprop="ratingValue"]') or soup.select_one("div.score-label")
    values["score"] = _to_float(_text(score_node)) if score_node is not None else _to_float(
        _field_value(fields, "score"))
    values["members"] = _to_int(_field_value(fields, "members"))
    values["genres"] = _field_links(fields, "genres", "genre")
    values["themes"] = _field_links(fields, "themes", "theme")
    values["demographics"] = _field_links(fields, "demographics", "demographic")
    rating = _field_value(fields, "rating")
    values["rating"] = None if rating in (None, "None") else rating

    image = soup.select_one('img[itemprop="image"]')
    values["image_url"] = (image.get("data-src") or image.get("src")) if image is not None else None
    values["image_url"] = values["image_url"] or _meta(soup, "og:image")
    values["synopsis"] = _synopsis(soup)
    for name, value in values.items():
        if value in (None, []):
            _missing(name, where)

    nsfw = is_adult([*values["genres"], *values["themes"], *values["demographics"]], values["rating"])
    anime = Anime(anime_id=page_id, title=title, nsfw=nsfw, **values)
    reviews = _parse_review_elements(soup, page_id, title, where)
    return AnimePage(anime, reviews)


# ---- top list ---------------------------------------------------------------------------------
def parse_top_page(html: str) -> TopPage:
    """Parse one page of ``topanime.php``: rank, id, title (plus type/episodes/score/members) per row.

    Raises:
        PageError: a login wall, captcha or error page, or not a top-anime page.
    """
    return _top_page(_soup(html))


def _top_page(soup: BeautifulSoup) -> TopPage:
    _expect(soup, "top", None, "top-anime page")
    entries: list[TopEntry] = []
    for row in soup.select("tr.ranking-list"):
        link = row.select_one("h3 a[href*='/anime/']") or row.select_one("a[href*='/anime/']")
        anime_id = anime_id_from_url(link["href"]) if link is not None else None
        if anime_id is None:
            log.warning("top-anime page: a row without an anime link was skipped")
            continue
        title = _text(row.select_one("h3 a")) or _text(link)
        if not title:
            img = row.select_one("img[alt]")
            title = re.sub(r"^Anime:\s*", "", img["alt"]) if img is not None else ""
        if not title:
            log.warning("top-anime page: anime %s has no title; skipped", anime_id)
            continue
        rank = _to_int(_text(row.select_one("td.rank span") or row.select_one("td.rank")))
        info = row.select_one("div.information")
        lines = [" ".join(x.split()) for x in info.get_text("\n").split("\n")] if info is not None else []
        lines = [x for x in lines if x]
        kind = episodes = members = year = None
        if lines:
            match = re.match(r"(.+?)\s*\((\d+|\?)\s*eps?\)", lines[0])
            kind, episodes = (match.group(1), _to_int(match.group(2))) if match else (lines[0], None)
        for line in lines[1:]:
            if line.endswith("members"):
                members = _to_int(line.split()[0])
            elif year is None and (found := re.search(r"\b(19|20)\d{2}\b", line)):
                year = int(found.group())
        score = _to_float(_text(row.select_one("td.score .score-label") or row.select_one("td.score")))
        anime = Anime(anime_id=anime_id, title=title, type=kind, episodes=episodes, year=year,
                      score=score, members=members)
        entries.append(TopEntry(rank, anime_id, title, anime))
    has_next = soup.select_one("a.next[href], link[rel=next]") is not None
    return TopPage(entries, has_next)


# ---- user recommendations -----------------------------------------------------------------------
def parse_userrecs_page(html: str, anime_id: int | None = None) -> UserRecsPage:
    """Parse ``/anime/<id>/<slug>/userrecs``: which anime users recommend to fans of this one, and how many.

    Raises:
        PageError: a login wall, captcha or error page, another kind of page or anime, or no anime id.
    """
    return _userrecs_page(_soup(html), anime_id)


def _userrecs_page(soup: BeautifulSoup, anime_id: int | None) -> UserRecsPage:
    where = f"userrecs page of anime {anime_id}" if anime_id is not None else "userrecs page"
    page_id = _expect(soup, "userrecs", anime_id, where)
    if page_id is None:
        raise PageError("wrong_page", f"{where}: cannot tell which anime the page is about")
    recs: list[UserRecommendation] = []
    seen: set[int] = set()
    for block in soup.select("div.borderClass"):
        # Top-level recommendation blocks hold a table; the nested per-user blocks do not.
        if block.find("table", recursive=False) is None:
            continue
        link = block.select_one("div.picSurround a[href*='/anime/']")
        rec_id = anime_id_from_url(link["href"]) if link is not None else None
        if rec_id is None or rec_id in seen or rec_id == page_id:
            continue
        seen.add(rec_id)
        title_node = block.select_one(f"a[href*='/anime/{rec_id}/'] strong") or block.select_one("strong")
        title = _text(title_node) or None
        if title is None:
            img = link.select_one("img[alt]")
            title = re.sub(r"^Anime:\s*", "", img["alt"]) if img is not None else None
        more = re.search(r"recommendations by\s+(\d+)\s+more\s+users?", _text(block), re.IGNORECASE)
        users = 1 + (int(more.group(1)) if more else 0)
        recs.append(UserRecommendation(page_id, rec_id, users, title, SOURCE))
    return UserRecsPage(page_id, recs)


# ---- any saved page -----------------------------------------------------------------------------
def parse_reviews(html: str, anime_id: int | None = None) -> list[Review]:
    """The reviews on a saved reviews page or anime page (whichever it is).

    Raises:
        PageError: the page is neither, or is a login wall, captcha or error page.
    """
    soup = _soup(html)
    check_page(soup)
    kind = detect_page_kind(soup)
    if kind == "reviews":
        return _reviews_page(soup, anime_id).reviews
    if kind == "anime":
        return _anime_page(soup, anime_id).reviews
    raise PageError("wrong_page", f"expected a reviews or anime page, got {kind or 'an unknown page'}")


def parse_saved_page(html: str, anime_id: int | None = None) -> tuple[str, list[dict]]:
    """Parse a saved page of any kind the crawler reads, for checking the parser by hand.

    Returns:
        ``(kind, records)``: for reviews and anime pages the reviews (``Review.to_dict()``), for a userrecs
        page the recommendations, for a top page the ranked entries.

    Raises:
        PageError: the page is a login wall, captcha, error page or of no known kind.
    """
    soup = _soup(html)
    check_page(soup)
    kind = detect_page_kind(soup)
    if kind == "reviews":
        return kind, [r.to_dict() for r in _reviews_page(soup, anime_id).reviews]
    if kind == "anime":
        return kind, [r.to_dict() for r in _anime_page(soup, anime_id).reviews]
    if kind == "userrecs":
        recs = _userrecs_page(soup, anime_id).recommendations
        return kind, [{"anime_id": r.anime_id, "rec_anime_id": r.rec_anime_id, "user_count": r.user_count,
                       "rec_title": r.rec_title} for r in recs]
    if kind == "top":
        return kind, [{"rank": e.rank, "anime_id": e.anime_id, "title": e.title} for e in _top_page(soup).entries]
    raise PageError("wrong_page", "not a MyAnimeList reviews, anime, userrecs or top-anime page")
