"""Review store: upserts are idempotent, merges never lose known metadata, bad files give clear errors."""

import pytest

from scraping.models import Anime, Review, UserRecommendation
from scraping.store import SCHEMA_VERSION, Store, StoreError


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "s.sqlite") as s:
        yield s


def test_reviews_upsert_twice_adds_nothing(store):
    reviews = [Review("r1", 1, "A quiet story about a lighthouse keeper.", score=8, tags=["Recommended"]),
               Review("r2", 1, "Loud, fast and full of giant robots.", score=6)]
    first = store.upsert_reviews(reviews)
    second = store.upsert_reviews(reviews)
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 2)
    assert store.count_reviews() == 2


def test_changed_review_is_updated_not_duplicated(store):
    store.upsert_reviews([Review("r1", 1, "first draft")])
    counts = store.upsert_reviews([Review("r1", 1, "edited text", score=9)])
    assert counts.updated == 1
    assert store.count_reviews() == 1
    assert store.get_review("r1").text == "edited text"
    assert store.get_review("r1").score == 9


def test_anime_merge_keeps_known_fields(store):
    store.upsert_anime([Anime(5, "Full Title", genres=["Drama"], year=2001, score=7.5, synopsis="Ours.")])
    counts = store.upsert_anime([Anime(5, "Full Title", image_url="https://img/5.jpg")])
    assert counts.updated == 1
    anime = store.get_anime(5)
    assert anime.genres == ["Drama"] and anime.year == 2001 and anime.synopsis == "Ours."
    assert anime.image_url == "https://img/5.jpg"
    assert store.upsert_anime([Anime(5, "Full Title")]).unchanged == 1


def test_stub_anime_gets_replaced_by_real_metadata(store):
    store.ensure_anime(9, "Stub")
    store.ensure_anime(9, "Ignored second stub")
    assert store.get_anime(9).title == "Stub"
    store.upsert_anime([Anime(9, "Real Title", type="TV")])
    assert store.get_anime(9).title == "Real Title"
    assert store.get_anime(9).url == "https://myanimelist.net/anime/9"


def test_user_recs_upsert(store):
    recs = [UserRecommendation(1, 6, 3, "Six", "x"), UserRecommendation(1, 7, 5, "Seven", "x")]
    assert store.upsert_user_recs(recs).inserted == 2
    assert store.upsert_user_recs(recs).unchanged == 2
    assert [r.rec_anime_id for r in store.user_recs(1)] == [7, 6]


def test_checksum_changes_with_content(store):
    empty = store.reviews_checksum()
    store.upsert_reviews([Review("r1", 1, "text")])
    one = store.reviews_checksum()
    store.upsert_reviews([Review("r1", 1, "text")])
    assert store.reviews_checksum() == one != empty


def test_schema_version_and_wal(tmp_path):
    path = tmp_path / "s.sqlite"
    Store.open(path).close()
    with Store.open(path) as store:
        assert store._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION)
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a readable review store"):
        Store.open(path)


def test_missing_store_without_create(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        Store.open(tmp_path / "nope.sqlite", create=False)


def test_sql_looking_text_is_just_text(store):
    text = "'); DROP TABLE reviews; --"
    store.upsert_reviews([Review("x'; --", 1, text)])
    assert store.get_review("x'; --").text == text
    assert store.count_reviews() == 1
