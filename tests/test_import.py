"""Importers: JSONL and reference CSV, idempotent, bad rows counted and reported, clean CLI errors."""

import csv
import json

import pytest

from scraping.__main__ import main as scraping_main
from scraping.importers import (
    BadRow,
    ImportFormatError,
    anime_id_from_link,
    import_anime_jsonl,
    import_path,
    review_from_json,
)
from scraping.store import Store


def _write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


GOOD = {"source": "t", "review_id": "1", "anime_id": 1, "anime_title": "Stars", "text": "Calm and lovely.",
        "score": 9, "tags": ["Recommended"], "date": "2020-01-02", "username": "u"}


def test_jsonl_import_is_idempotent_and_counts_bad_rows(tmp_path):
    path = _write_jsonl(tmp_path / "r.jsonl", [
        GOOD,
        {**GOOD, "review_id": "2", "text": "Second opinion, less calm."},
        "{not json",
        {**GOOD, "review_id": "3", "text": "   "},
        {**GOOD, "review_id": "4", "anime_id": "abc"},
        [1, 2, 3],
        {**GOOD, "review_id": "5", "score": 42},
    ])
    with Store.open(tmp_path / "s.sqlite") as store:
        first = import_path(store, path)
        second = import_path(store, path)
        assert first.rows == 7
        assert first.reviews.inserted == 3
        assert [line for line, _ in first.bad] == [3, 4, 5, 6]
        assert second.reviews.inserted == 0 and second.reviews.unchanged == 3
        assert store.count_reviews() == 3
        assert store.get_review("5").score is None  # out of the 1–10 range: unknown, not a bad row
        assert store.get_anime(1).title == "Stars"  # stub created from anime_title
    assert "3 new" in first.summary() and "4 bad rows" in first.summary()


def test_anime_jsonl_sets_nsfw_from_genres(tmp_path):
    path = _write_jsonl(tmp_path / "a.jsonl", [
        {"anime_id": 1, "title": "Safe", "genres": ["Comedy"]},
        {"anime_id": 2, "title": "Adult", "genres": ["Hentai"]},
        {"anime_id": 3},
    ])
    with Store.open(tmp_path / "s.sqlite") as store:
        report = import_anime_jsonl(store, path)
        assert report.anime.inserted == 2 and len(report.bad) == 1
        assert store.get_anime(2).nsfw and not store.get_anime(1).nsfw


def test_reference_csv(tmp_path):
    path = tmp_path / "ref.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Anime Title", "Review", "MAL Link", "Image URL"])
        writer.writerow(["Cowboy Bebop", "Jazz, space, regret.", "https://myanimelist.net/anime/1/Cowboy_Bebop",
                         "https://cdn.myanimelist.net/images/anime/1/1.jpg"])
        writer.writerow(["Cowboy Bebop", "A second, different opinion.", "https://myanimelist.net/anime/1", ""])
        writer.writerow(["Broken", "No link here", "https://example.com/x", ""])
        writer.writerow(["Empty", "", "https://myanimelist.net/anime/5", ""])
    with Store.open(tmp_path / "s.sqlite") as store:
        report = import_path(store, path)
        again = import_path(store, path)
        assert report.reviews.inserted == 2 and len(report.bad) == 2
        assert again.reviews.inserted == 0 and again.reviews.unchanged == 2
        assert store.get_anime(1).image_url == "https://cdn.myanimelist.net/images/anime/1/1.jpg"
        assert {r.source for r in store.iter_reviews()} == {"reference_csv"}


def test_csv_with_wrong_header(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with Store.open(tmp_path / "s.sqlite") as store, pytest.raises(ImportFormatError, match="MAL Link"):
        import_path(store, path)


def test_anime_id_from_link():
    assert anime_id_from_link("https://myanimelist.net/anime/5114/Fullmetal") == 5114
    with pytest.raises(BadRow):
        anime_id_from_link("https://myanimelist.net/manga/2")


def test_review_requires_fields():
    with pytest.raises(BadRow, match="review_id"):
        review_from_json({"anime_id": 1, "text": "x"})
    with pytest.raises(BadRow, match="anime_id"):
        review_from_json({"review_id": "a", "anime_id": -3, "text": "x"})


def test_cli_import_and_errors(tmp_path, capsys):
    reviews = _write_jsonl(tmp_path / "r.jsonl", [GOOD, "oops"])
    db = str(tmp_path / "s.sqlite")
    assert scraping_main(["import", str(reviews), "--db", db]) == 0
    out = capsys.readouterr()
    assert "1 new" in out.out and "line 2: invalid JSON" in out.err
    assert scraping_main(["import", str(tmp_path / "missing.jsonl"), "--db", db]) == 1
    assert "error: no such file" in capsys.readouterr().err
    (tmp_path / "r.txt").write_text("x")
    assert scraping_main(["import", str(tmp_path / "r.txt"), "--db", db]) == 1
    assert "expected .jsonl" in capsys.readouterr().err


def test_shared_reviews_import(shared_data, tmp_path):
    with Store.open(tmp_path / "s.sqlite") as store:
        anime = import_anime_jsonl(store, shared_data / "anime.jsonl")
        reviews = import_path(store, shared_data / "reviews.jsonl")
        assert anime.bad == [] and reviews.bad == []
        assert reviews.reviews.inserted == sum(1 for _ in open(shared_data / "reviews.jsonl"))
        assert import_path(store, shared_data / "reviews.jsonl").reviews.inserted == 0
