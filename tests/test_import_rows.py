"""Importers under hostile rows: each bad row is reported with its line and skipped, no good row is ever lost.

The rows in the parametrised tables are the reproductions of issue 12 ("Data loss on import");
the property tests at the end throw arbitrary values at every field of a review and an anime row.
"""

from __future__ import annotations

import csv
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scraping.__main__ import main as scraping_main
from scraping.importers import import_anime_jsonl, import_path
from scraping.store import Store

try:
    from scraping.models import is_adult
except ImportError:  # the code before issue 12 had no shared rule
    def is_adult(labels, rating, flagged):
        return bool(flagged) or any(label.casefold() in ('hentai', 'erotica') for label in labels)

MAX_ANIME_ID = 2**31 - 1  # the documented bound of an anime id
REVIEW = {"source": "t", "review_id": "r0", "anime_id": 1, "anime_title": "Calm Stars", "text": "Quiet and lovely.",
          "score": 9, "tags": ["Recommended"], "date": "2020-01-02", "username": "someone"}
ANIME = {"anime_id": 1, "title": "Calm Stars", "title_english": "Calm Stars", "synopsis": "Two friends look up.",
         "genres": ["Slice of Life"], "themes": ["Space"], "demographics": [], "type": "TV", "episodes": 12,
         "year": 2019, "season": "spring", "score": 7.5, "members": 1000, "rating": "PG-13 - Teens 13 or older",
         "image_url": "https://cdn.myanimelist.net/images/anime/1/1.jpg", "url": "https://myanimelist.net/anime/1"}


def good_reviews(n: int, start: int = 0) -> list[str]:
    return [json.dumps({**REVIEW, "review_id": f"good-{i}", "anime_id": 1 + i % 3, "text": f"Review number {i}."})
            for i in range(start, start + n)]


def run_import(capsys, args: list[str]) -> tuple[int, str, str]:
    code = scraping_main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_clean_output(err: str) -> None:
    assert "Traceback" not in err and "Error:" not in err.replace("error:", "")


# ---- the reproductions -----------------------------------------------------------------------------------------
HOSTILE_REVIEW_LINES = {
    "anime_id 1e999": '{"review_id": "bad", "anime_id": 1e999, "text": "x"}',
    "anime_id 1e30": '{"review_id": "bad", "anime_id": 1e30, "text": "x"}',
    "anime_id 23 digits": '{"review_id": "bad", "anime_id": 12345678901234567890123, "text": "x"}',
    "score inf": '{"review_id": "bad", "anime_id": 1, "text": "x", "score": "inf"}',
    "username object": '{"review_id": "bad", "anime_id": 1, "text": "x", "username": {"a": 1}}',
    "anime_title list": '{"review_id": "bad", "anime_id": 1, "text": "x", "anime_title": ["x"]}',
    "date number": '{"review_id": "bad", "anime_id": 1, "text": "x", "date": 20200102}',
    "tags object": '{"review_id": "bad", "anime_id": 1, "text": "x", "tags": {"a": 1}}',
    "text list": '{"review_id": "bad", "anime_id": 1, "text": ["x"]}',
    "review_id object": '{"review_id": {"id": 1}, "anime_id": 1, "text": "x"}',
    "source list": '{"review_id": "bad", "anime_id": 1, "text": "x", "source": ["a"]}',
}


@pytest.mark.parametrize("line", HOSTILE_REVIEW_LINES.values(), ids=HOSTILE_REVIEW_LINES.keys())
def test_one_bad_review_row_costs_only_itself(tmp_path, capsys, line):
    path = tmp_path / "reviews.jsonl"
    rows = good_reviews(10) + [line] + good_reviews(10, start=10)
    path.write_text("\n".join(rows) + "\n")
    db = tmp_path / "s.sqlite"
    code, out, err = run_import(capsys, ["import", str(path), "--db", str(db)])
    assert code == 0, err
    assert_clean_output(err)
    assert "line 11:" in err and "1 bad rows skipped" in out
    with Store.open(db) as store:
        assert store.count_reviews() == 20
        assert store.get_review("bad") is None


def test_bad_row_deep_in_the_real_file_loses_nothing(shared_data, tmp_path, capsys):
    lines = (shared_data / "reviews.jsonl").read_text(encoding="utf-8").splitlines()
    lines.insert(1500, HOSTILE_REVIEW_LINES["anime_id 1e30"])  # becomes line 1,501
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = tmp_path / "s.sqlite"
    code, out, err = run_import(capsys, ["import", str(path), "--db", str(db)])
    assert code == 0 and "line 1501:" in err
    with Store.open(db) as store:
        assert store.count_reviews() == len(lines) - 1


HOSTILE_ANIME_LINES = {
    "members 1e999": '{"anime_id": 2, "title": "T", "members": 1e999}',
    "members 1e30": '{"anime_id": 2, "title": "T", "members": 1e30}',
    "episodes text": '{"anime_id": 2, "title": "T", "episodes": "twelve"}',
    "score inf": '{"anime_id": 2, "title": "T", "score": "inf"}',
    "score NaN": '{"anime_id": 2, "title": "T", "score": NaN}',
    "title object": '{"anime_id": 2, "title": {"en": "T"}}',
    "genres strings in a string": '{"anime_id": 2, "title": "T", "genres": "Action"}',
    "synopsis list": '{"anime_id": 2, "title": "T", "synopsis": ["a"]}',
    "nsfw text": '{"anime_id": 2, "title": "T", "nsfw": "maybe"}',
    "anime_id too big": f'{{"anime_id": {MAX_ANIME_ID + 1}, "title": "T"}}',
}


@pytest.mark.parametrize("line", HOSTILE_ANIME_LINES.values(), ids=HOSTILE_ANIME_LINES.keys())
def test_one_bad_anime_row_costs_only_itself(tmp_path, capsys, line):
    anime = tmp_path / "anime.jsonl"
    anime.write_text("\n".join([json.dumps(ANIME), line, json.dumps({**ANIME, "anime_id": 3, "title": "Other"})])
                     + "\n")
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_text("\n".join(good_reviews(3)) + "\n")
    db = tmp_path / "s.sqlite"
    code, out, err = run_import(capsys, ["import", str(reviews), "--anime", str(anime), "--db", str(db)])
    assert code == 0, err
    assert_clean_output(err)
    assert "line 2:" in err
    with Store.open(db) as store:
        assert store.get_anime(1).title == "Calm Stars" and store.get_anime(3).title == "Other"
        assert store.get_anime(2) is None or store.get_anime(2).title != "T"  # a placeholder from reviews at most
        assert store.count_reviews() == 3


def write_csv(path, rows) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Anime Title", "Review", "MAL Link", "Image URL"])
        writer.writerows(rows)


def test_csv_link_with_a_23_digit_id_is_one_bad_row(tmp_path, capsys):
    path = tmp_path / "ref.csv"
    write_csv(path, [["Good", "Fine show.", "https://myanimelist.net/anime/1/Good", ""],
                     ["Huge", "Odd link.", "https://myanimelist.net/anime/12345678901234567890123/Huge", ""],
                     ["Good too", "Another.", "https://myanimelist.net/anime/5/Good_too", ""]])
    db = tmp_path / "s.sqlite"
    code, out, err = run_import(capsys, ["import", str(path), "--db", str(db)])
    assert code == 0 and "line 3:" in err and "anime id" in err
    with Store.open(db) as store:
        assert store.count_reviews() == 2


# ---- unsafe links ----------------------------------------------------------------------------------------------
def test_only_myanimelist_links_are_stored(tmp_path, capsys):
    anime = tmp_path / "anime.jsonl"
    anime.write_text("\n".join(json.dumps(row) for row in [
        {**ANIME, "anime_id": 1, "url": "javascript:alert(document.domain)", "image_url": "data:image/png;base64,AA"},
        {**ANIME, "anime_id": 2, "url": "https://myanimelist.net@evil.example/", "image_url": "https://evil.example/x"},
        {**ANIME, "anime_id": 3, "url": "/anime/3", "image_url": "https://cdn.myanimelist.net/images/anime/3.jpg"},
    ]) + "\n")
    csv_path = tmp_path / "ref.csv"
    write_csv(csv_path, [["Four", "Fine.", "https://myanimelist.net/anime/4", "javascript:alert(1)"],
                         ["Five", "Fine.", "javascript:alert('myanimelist.net/anime/5')", ""]])
    db = tmp_path / "s.sqlite"
    code, out, err = run_import(capsys, ["import", str(csv_path), "--anime", str(anime), "--db", str(db)])
    assert code == 0
    assert "4 unsafe links dropped" in out and "1 unsafe links dropped" in out
    with Store.open(db) as store:
        for anime_id in (1, 2):
            assert store.get_anime(anime_id).url == f"https://myanimelist.net/anime/{anime_id}"  # the canonical page
            assert store.get_anime(anime_id).image_url is None
        assert store.get_anime(3).url == "https://myanimelist.net/anime/3"
        assert store.get_anime(3).image_url == "https://cdn.myanimelist.net/images/anime/3.jpg"
        assert store.get_anime(4).image_url is None
        assert store.get_anime(5) is None  # its MAL Link is not a MAL link: a bad row
    assert "line 3:" in err


# ---- the summary -----------------------------------------------------------------------------------------------
def test_summary_counts_placeholder_anime(tmp_path, capsys):
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(good_reviews(9)) + "\n")  # anime 1, 2, 3, none known yet
    code, out, _ = run_import(capsys, ["import", str(path), "--db", str(tmp_path / "s.sqlite")])
    assert code == 0
    assert "anime 3 new (3 title-only, from the reviews)" in out
    code, out, _ = run_import(capsys, ["import", str(path), "--db", str(tmp_path / "s.sqlite")])
    assert "anime 0 new" in out


# ---- property tests: any value in any field --------------------------------------------------------------------
RAW_TOKENS = {"__1e999__": "1e999", "__-1e999__": "-1e999", "__1e30__": "1e30", "__NaN__": "NaN"}
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30), st.sampled_from(list(RAW_TOKENS)),
    st.sampled_from(["inf", "-inf", "nan", "1e999", "٥", "5_0", " 7 ", "", "javascript:alert(1)", "\ud800",
                     "https://myanimelist.net/anime/1", "/anime/2", "x" * 300]),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                   st.dictionaries(st.text(max_size=5), inner,
                                                                                   max_size=3)),
                           max_leaves=6)

words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda s: s.strip() == s and s)
valid_review_fields = {
    "source": words, "anime_title": words, "text": words, "username": st.one_of(st.none(), words),
    "date": st.one_of(st.none(), st.just("2021-03-04")), "score": st.one_of(st.none(), st.integers(1, 10)),
    "tags": st.lists(words, max_size=3), "anime_id": st.integers(1, MAX_ANIME_ID),
}
valid_anime_fields = {
    "title": words, "title_english": st.one_of(st.none(), words), "synopsis": st.one_of(st.none(), words),
    "genres": st.lists(words, max_size=3), "themes": st.lists(words, max_size=3),
    "demographics": st.lists(words, max_size=2), "type": st.one_of(st.none(), st.sampled_from(["TV", "Movie"])),
    "episodes": st.one_of(st.none(), st.integers(0, 3000)), "year": st.one_of(st.none(), st.integers(1900, 2100)),
    "season": st.one_of(st.none(), st.sampled_from(["spring", "fall"])),
    "score": st.one_of(st.none(), st.floats(0, 10)), "members": st.one_of(st.none(), st.integers(0, 10**9)),
    "rating": st.one_of(st.none(), st.just("R - 17+")),
    "image_url": st.one_of(st.none(), st.just("https://cdn.myanimelist.net/images/anime/1/2.jpg")),
    "url": st.one_of(st.none(), st.just("https://myanimelist.net/anime/7")), "nsfw": st.booleans(),
}


def dump(row: dict) -> str:
    line = json.dumps(row, ensure_ascii=False)
    for token, raw in RAW_TOKENS.items():
        line = line.replace(json.dumps(token), raw)
    return line


@st.composite
def review_rows(draw):
    """(lines, valid rows by review id): valid rows and rows with one field replaced by an arbitrary value."""
    count = draw(st.integers(1, 8))
    lines, valid = [], {}
    for i in range(count):
        row = {name: draw(strategy) for name, strategy in valid_review_fields.items()}
        row["review_id"] = f"rev-⁂-{i}"
        if draw(st.booleans()):
            field = draw(st.sampled_from([*valid_review_fields, "review_id"]))
            row[field] = draw(json_values)
        else:
            valid[row["review_id"]] = row
        lines.append(dump(row))
    return lines, valid


@st.composite
def anime_rows(draw):
    count = draw(st.integers(1, 8))
    lines, valid = [], {}
    for i in range(count):
        row = {name: draw(strategy) for name, strategy in valid_anime_fields.items()}
        row["anime_id"] = 7_000_000 + i
        if draw(st.booleans()):
            field = draw(st.sampled_from([*valid_anime_fields, "anime_id"]))
            row[field] = draw(json_values)
        else:
            valid[row["anime_id"]] = row
        lines.append(dump(row))
    return lines, valid


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                    HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(case=review_rows())
def test_any_review_row_imports_or_is_reported(tmp_path_factory, capsys, case):
    lines, valid = case
    work = tmp_path_factory.mktemp("prop")
    path = work / "reviews.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    db = work / "s.sqlite"
    code, out, err = run_import(capsys, ["import", str(path), "--db", str(db)])
    assert code == 0 and "Traceback" not in err
    with Store.open(db) as store:
        stored = {r.review_id: r for r in store.iter_reviews()}
        for review_id, row in valid.items():
            review = stored[review_id]
            assert (review.anime_id, review.text, review.username, review.date, review.score, review.tags,
                    review.source) == (row["anime_id"], row["text"], row["username"], row["date"], row["score"],
                                       row["tags"], row["source"])
        bad = int(out.split(" bad rows skipped")[0].rsplit(" ", 1)[1])
        assert len(stored) + bad == len(lines)  # every row is stored or reported, none vanishes
        for review in stored.values():
            assert 1 <= review.anime_id <= MAX_ANIME_ID and isinstance(review.text, str) and review.text
            assert review.score is None or 1 <= review.score <= 10


@PROPERTY_SETTINGS
@given(case=anime_rows())
def test_any_anime_row_imports_or_is_reported(tmp_path_factory, case):
    lines, valid = case
    work = tmp_path_factory.mktemp("prop")
    path = work / "anime.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    with Store.open(work / "s.sqlite") as store:
        report = import_anime_jsonl(store, path)
        stored = {a.anime_id: a for a in store.iter_anime()}
        assert len(stored) + len(report.bad) == len(lines)
        for anime_id, row in valid.items():
            anime = stored[anime_id]
            for name in ("title", "title_english", "synopsis", "genres", "themes", "demographics", "type",
                         "episodes", "year", "season", "score", "members", "rating", "image_url"):
                assert getattr(anime, name) == row[name], name
            assert anime.url == (row["url"] or f"https://myanimelist.net/anime/{anime_id}")
            labels = [*row["genres"], *row["themes"], *row["demographics"]]
            assert anime.nsfw == is_adult(labels, row["rating"], row["nsfw"])
        for anime in stored.values():
            for link in (anime.url, anime.image_url):
                assert link is None or link.startswith("https://") and ".myanimelist.net/" in link.replace(
                    "https://myanimelist.net/", "https://www.myanimelist.net/")


def test_import_path_reports_every_bad_line(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(good_reviews(2) + list(HOSTILE_REVIEW_LINES.values())) + "\n")
    with Store.open(tmp_path / "s.sqlite") as store:
        report = import_path(store, path)
    assert [line for line, _ in report.bad] == list(range(3, 3 + len(HOSTILE_REVIEW_LINES)))
    assert report.reviews.inserted == 2
