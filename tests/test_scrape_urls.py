"""URL builders and their inverse."""

from __future__ import annotations

import pytest

from scraping import urls
from scraping.models import anime_url


def test_builders():
    assert urls.top_anime_url() == "https://myanimelist.net/topanime.php?limit=0"
    assert urls.top_anime_url(100) == "https://myanimelist.net/topanime.php?limit=100"
    assert urls.anime_page_url(1) == anime_url(1) == "https://myanimelist.net/anime/1"
    assert urls.reviews_url(1) == "https://myanimelist.net/anime/1/x/reviews?p=1"
    assert urls.reviews_url(5, 3, spoiler=True, preliminary=True) == (
        "https://myanimelist.net/anime/5/x/reviews?p=3&spoiler=on&preliminary=on")
    assert urls.userrecs_url(21) == "https://myanimelist.net/anime/21/x/userrecs"
    assert urls.robots_url("https://myanimelist.net/anime/1?x=y") == "https://myanimelist.net/robots.txt"


@pytest.mark.parametrize("bad", [lambda: urls.top_anime_url(-50), lambda: urls.reviews_url(1, 0)])
def test_builders_refuse_impossible_pages(bad):
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize(
    ("url", "info"),
    [
        (urls.top_anime_url(50), urls.UrlInfo("top", offset=50)),
        ("https://myanimelist.net/topanime.php", urls.UrlInfo("top")),
        (urls.anime_page_url(6), urls.UrlInfo("anime", 6)),
        ("https://myanimelist.net/anime/6/Trigun", urls.UrlInfo("anime", 6)),
        (urls.reviews_url(1, 4, spoiler=True), urls.UrlInfo("reviews", 1, page=4, spoiler=True)),
        ("https://myanimelist.net/anime/1/Cowboy_Bebop/reviews?spoiler=on&preliminary=on",
         urls.UrlInfo("reviews", 1, spoiler=True, preliminary=True)),
        (urls.userrecs_url(21), urls.UrlInfo("userrecs", 21)),
        ("https://myanimelist.net/anime/season/1998/spring", None),
        ("https://myanimelist.net/login.php", None),
    ],
)
def test_classify_url(url, info):
    assert urls.classify_url(url) == info


def test_next_reviews_url_keeps_options():
    url = urls.reviews_url(1, 2, spoiler=True, preliminary=True)
    assert urls.next_reviews_url(url) == urls.reviews_url(1, 3, spoiler=True, preliminary=True)
    with pytest.raises(ValueError):
        urls.next_reviews_url(urls.userrecs_url(1))


def test_anime_id_from_url():
    assert urls.anime_id_from_url("https://myanimelist.net/anime/21/jikan/userrecs") == 21
    assert urls.anime_id_from_url("/anime/5114/Fullmetal_Alchemist__Brotherhood") == 5114
    assert urls.anime_id_from_url("https://myanimelist.net/manga/2") is None
