"""Parser tests: the saved MAL pages in ../shared/data against expected/, plus our own edge-case pages."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from scraping import parse
from scraping.__main__ import main
from scraping.parse import PageError

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "html"

needs_shared = pytest.mark.skipif(
    not (SHARED / "html").is_dir(), reason=f"shared MAL test pages not found at {SHARED} (read-only data, not in repo)"
)

REVIEW_PAGES = [
    "anime_1_reviews_2022-10-01",
    "anime_1_reviews_spoiler_prelim_2023-04-22",
    "anime_1_reviews_spoiler_prelim_2026-01-17",
    "anime_6_detail_2022-10-01",
    "anime_6_detail_2026-01-17",
]
USERRECS_PAGES = ["anime_21_userrecs_2022-10-01", "anime_21_userrecs_2026-01-17"]
TOP_PAGES = ["topanime_2022-10-01", "topanime_2026-01-17"]


@cache
def _html(name: str) -> str:
    return (SHARED / "html" / f"{name}.html").read_text(encoding="utf-8")


@cache
def _expected(name: str) -> dict:
    return json.loads((SHARED / "expected" / f"{name}.json").read_text(encoding="utf-8"))


@cache
def _parsed(name: str):
    # Parsing the big pages with html.parser takes a fraction of a second each; do it once per page.
    if "_detail_" in name:
        return parse.parse_anime_page(_html(name), 6)
    return parse.parse_reviews_page(_html(name), 1)


def _parsed_reviews(name: str) -> list:
    return _parsed(name).reviews


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# ---- shared MAL pages -------------------------------------------------------------------------------
@needs_shared
@pytest.mark.parametrize("name", REVIEW_PAGES)
def test_saved_review_pages_match_expected(name):
    expected = _expected(name)
    reviews = _parsed_reviews(name)
    assert len(reviews) == expected["review_count"]
    for got, want in zip(reviews, expected["reviews"], strict=True):
        assert got.review_id == want["review_id"]
        assert got.anime_id == expected["anime_id"]
        assert got.username == want["username"]
        assert got.date == want["date"]
        assert got.score == want["score"]
        assert got.tags == want["tags"]
        assert len(got.text) == want["text_len"], got.review_id
        assert got.text.startswith(want["text_prefix_200"])
        assert got.source == "mal_crawl"


@needs_shared
def test_saved_review_text_has_no_markup_or_escaped_entities():
    for name in REVIEW_PAGES:
        for review in _parsed_reviews(name):
            assert "&amp;" not in review.text and "&rsquo;" not in review.text and "&quot;" not in review.text
            assert "<br" not in review.text and "<span" not in review.text
            assert "Read more" not in review.text


@needs_shared
def test_saved_review_text_equals_shared_reviews_jsonl():
    """The same MAL review parsed by us and in the shared dump is the identical text (so upserts agree)."""
    dump = {}
    with (SHARED / "reviews.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["source"] == "jikan_fixtures_html":
                dump[row["review_id"]] = row
    checked = 0
    for name in ("anime_1_reviews_spoiler_prelim_2026-01-17", "anime_6_detail_2026-01-17"):
        for review in _parsed_reviews(name):
            if review.review_id in dump:
                assert review.text == dump[review.review_id]["text"]
                checked += 1
    assert checked >= 20


@needs_shared
@pytest.mark.parametrize("name", ["anime_1_reviews_2022-10-01", "anime_1_reviews_spoiler_prelim_2026-01-17"])
def test_saved_reviews_page_has_next(name):
    page = _parsed(name)
    assert page.has_next is True
    assert page.anime_id == 1
    assert page.anime_title == "Cowboy Bebop"


@needs_shared
@pytest.mark.parametrize("name", USERRECS_PAGES)
def test_saved_userrecs_pages_match_expected(name):
    expected = _expected(name)
    page = parse.parse_userrecs_page(_html(name), 21)
    got = [(r.rec_anime_id, r.rec_title, r.user_count) for r in page.recommendations]
    want = [(e["rec_anime_id"], e["rec_title"], e["users"]) for e in expected["entries"]]
    assert len(got) == expected["entry_count"]
    assert got == want
    assert all(r.anime_id == 21 and r.source == "mal_crawl" for r in page.recommendations)


@needs_shared
@pytest.mark.parametrize("name", ["anime_6_detail_2022-10-01", "anime_6_detail_2026-01-17"])
def test_saved_anime_page_metadata(name):
    anime = _parsed(name).anime
    assert anime.anime_id == 6
    assert anime.title == "Trigun"
    assert anime.title_english == "Trigun"
    assert (anime.type, anime.episodes, anime.year, anime.season) == ("TV", 26, 1998, "spring")
    assert anime.score == 8.22
    assert anime.members and anime.members > 600_000
    assert {"Action", "Adventure", "Sci-Fi"} <= set(anime.genres)
    assert anime.themes == ["Adult Cast"]
    assert anime.demographics == ["Shounen"]
    assert anime.rating == "PG-13 - Teens 13 or older"
    assert anime.nsfw is False
    assert anime.image_url.startswith("https://cdn.myanimelist.net/images/anime/")
    assert anime.synopsis.startswith("Vash the Stampede") and "&" not in anime.synopsis[:200]


@needs_shared
@pytest.mark.parametrize("name", TOP_PAGES)
def test_saved_top_pages(name):
    page = parse.parse_top_page(_html(name))
    assert [e.rank for e in page.entries] == list(range(1, 51))
    assert len({e.anime_id for e in page.entries}) == 50
    assert all(e.title and e.anime.title == e.title for e in page.entries)
    assert page.has_next is True
    assert all(e.anime.score and 8 < e.anime.score < 10 for e in page.entries)


@needs_shared
def test_top_page_first_rows():
    entries = parse.parse_top_page(_html("topanime_2022-10-01")).entries
    first = entries[0]
    assert (first.rank, first.anime_id, first.title) == (1, 5114, "Fullmetal Alchemist: Brotherhood")
    assert (first.anime.type, first.anime.episodes, first.anime.year) == ("TV", 64, 2009)


@needs_shared
def test_page_of_another_kind_or_anime_is_a_clear_error():
    with pytest.raises(PageError, match="expected a reviews page, got anime"):
        parse.parse_reviews_page(_html("anime_6_detail_2026-01-17"), 6)
    with pytest.raises(PageError, match="expected anime 5"):
        parse.parse_anime_page(_html("anime_6_detail_2026-01-17"), 5)


@needs_shared
@pytest.mark.parametrize("name", ["anime_1_reviews_2022-10-01", "anime_6_detail_2026-01-17"])
def test_parse_command_reproduces_expected(name, capsys):
    assert main(["parse", str(SHARED / "html" / f"{name}.html"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = _expected(name)
    assert [r["review_id"] for r in printed] == [r["review_id"] for r in expected["reviews"]]
    for got, want in zip(printed, expected["reviews"], strict=True):
        assert {"review_id", "anime_id", "username", "date", "score", "tags", "text"} <= set(got)
        assert (got["username"], got["date"], got["score"], got["tags"]) == (
            want["username"], want["date"], want["score"], want["tags"])
        assert len(got["text"]) == want["text_len"]


@needs_shared
def test_parse_command_as_a_process():
    name = "anime_6_detail_2022-10-01"
    result = subprocess.run(
        [sys.executable, "-m", "scraping", "parse", str(SHARED / "html" / f"{name}.html"), "--json"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert [r["review_id"] for r in json.loads(result.stdout)] == ["82", "188073", "5752"]


# ---- our own edge-case pages --------------------------------------------------------------------------
def test_edge_cases_page():
    page = parse.parse_reviews_page(_fixture("reviews_edge_cases.html"), 9001)
    assert page.anime_id == 9001 and page.anime_title == "Test Show" and page.has_next is True
    by_id = {r.review_id: r for r in page.reviews}
    assert list(by_id) == ["900001", "900002", "900003"]  # the review without any id is skipped

    first = by_id["900001"]
    assert first.username == "test_writer_one"
    assert first.date == "2021-03-03"
    assert first.score == 4
    assert first.tags == ["Not Recommended", "Preliminary", "Spoiler"]
    # Double-escaped entities unescaped, the "..." marker dropped, the hidden part kept, whitespace collapsed.
    assert first.text == ('The pacing drags \u2014 the first arc "ends" twice. Still, the soundtrack is lovely and '
                          "I'll keep watching for the finale. Caf\u00e9 scenes are the best part.")

    second = by_id["900002"]
    assert second.score is None and second.date is None and second.tags == ["Mixed Feelings"]
    assert second.text == "A short review with no score and no date at all."

    third = by_id["900003"]
    assert third.score is None  # 11 is not a MAL score
    assert third.tags == ["Recommended", "Rewatch Worthy"]


def test_missing_fields_are_logged_not_raised(caplog):
    with caplog.at_level(logging.WARNING, logger="scraping.parse"):
        parse.parse_reviews_page(_fixture("reviews_edge_cases.html"), 9001)
    messages = " ".join(caplog.messages)
    assert "review 900002: no date" in messages and "review 900002: no score" in messages
    assert "without an id" in messages


def test_last_page_has_no_next():
    page = parse.parse_reviews_page(_fixture("reviews_last_page.html"), 9001)
    assert page.has_next is False
    assert [(r.review_id, r.date, r.score) for r in page.reviews] == [("900010", "2020-02-29", 9)]


def test_page_without_reviews():
    page = parse.parse_reviews_page(_fixture("reviews_none.html"), 9002)
    assert page.reviews == [] and page.has_next is False and page.anime_id == 9002


@pytest.mark.parametrize(
    ("name", "kind"), [("login_wall.html", "login_wall"), ("captcha.html", "captcha"), ("error_404.html", "error_page")]
)
def test_blocked_pages_are_clear_errors(name, kind):
    with pytest.raises(PageError) as info:
        parse.parse_reviews_page(_fixture(name), 9001)
    assert info.value.kind == kind
    with pytest.raises(PageError):
        parse.parse_anime_page(_fixture(name), 9001)


@pytest.mark.parametrize(
    ("html", "kind"),
    [
        ("<title>Error - MyAnimeList.net</title>", "error_page"),
        ("<title>404 Not Found - MyAnimeList.net</title>", "error_page"),
        ("<title>MyAnimeList is under maintenance</title>", "error_page"),
        ("<title>Just a moment...</title>", "captcha"),
        ("<title>Login - MyAnimeList.net</title>", "login_wall"),
        # Titles of real pages that merely sound alarming are fine.
        ('<title>Error - MyAnimeList.net</title><h1 class="title-name"><strong>Error</strong></h1>', None),
        ("<title>Errors of the Heart - Reviews - MyAnimeList.net</title>", None),
        ("<title>Login Club - Reviews - MyAnimeList.net</title>", None),
    ],
)
def test_check_page_by_title(html, kind):
    if kind is None:
        parse.check_page(html)
    else:
        with pytest.raises(PageError) as info:
            parse.check_page(html)
        assert info.value.kind == kind


def test_unknown_page_is_wrong_page():
    with pytest.raises(PageError) as info:
        parse.parse_userrecs_page("<html><head><title>Something else</title></head><body></body></html>", 1)
    assert info.value.kind == "wrong_page"
    with pytest.raises(PageError, match="cannot tell which anime"):
        parse.parse_reviews_page("<html><head><title>X - Reviews - MyAnimeList.net</title></head></html>")


def test_sparse_anime_page_gives_nulls_and_adult_flag():
    anime = parse.parse_anime_page(_fixture("anime_sparse.html"), 9003).anime
    assert anime.title == "Sparse Movie" and anime.type == "Movie"
    assert anime.episodes is None and anime.score is None and anime.season is None
    assert anime.year == 2031 and anime.members == 1234
    assert anime.genres == ["Hentai"] and anime.themes == [] and anime.demographics == []
    assert anime.rating == "Rx - Hentai" and anime.nsfw is True
    assert anime.synopsis is None and anime.title_english is None
    assert anime.image_url == "https://cdn.example.invalid/images/anime/9003.jpg"


def test_detect_page_kind():
    assert parse.detect_page_kind(_fixture("reviews_none.html")) == "reviews"
    assert parse.detect_page_kind(_fixture("anime_sparse.html")) == "anime"
    assert parse.detect_page_kind("<html><body><p>hi</p></body></html>") is None


@pytest.mark.parametrize(
    ("text", "iso"), [("Aug 24, 2008", "2008-08-24"), ("Sept 3, 2019", "2019-09-03"), ("", None), ("soon", None)]
)
def test_iso_date(text, iso):
    assert parse.iso_date(text) == iso


def test_parse_command_on_own_fixture(capsys):
    assert main(["parse", str(FIXTURES / "reviews_last_page.html"), "--json"]) == 0
    (review,) = json.loads(capsys.readouterr().out)
    assert review["review_id"] == "900010" and review["anime_id"] == 9001 and review["text"].startswith("Last page")


def test_parse_command_errors_are_one_line(capsys, tmp_path):
    assert main(["parse", str(FIXTURES / "login_wall.html"), "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "login_wall" in err and "\n" not in err
    assert main(["parse", str(tmp_path / "missing.html")]) == 1
    assert capsys.readouterr().err.startswith("error: cannot read")
