"""One definition of each rule, used by every face: the adult-title rule, filter values, integers."""

from __future__ import annotations

import pytest

from recommender.filters import is_adult as catalogue_is_adult
from scraping.importers import BadRow, anime_from_json, review_from_json
from webapp import create_app

ADULT_CASES = [
    ({"genres": ["Hentai"]}, True),
    ({"genres": ["hentai"]}, True),  # any case: the importer used to miss this one
    ({"genres": ["Drama"], "themes": ["Erotica"]}, True),
    ({"genres": ["Drama"], "rating": "Rx - Hentai"}, True),
    ({"genres": ["Drama"], "rating": "rx - hentai"}, True),
    ({"genres": ["Drama"], "nsfw": True}, True),
    ({"genres": ["Drama", "Ecchi"], "rating": "R+ - Mild Nudity"}, False),
    ({"genres": []}, False),
]


@pytest.mark.parametrize("meta, adult", ADULT_CASES)
def test_importer_and_search_filter_agree_on_adult_titles(meta, adult):
    imported = anime_from_json({"anime_id": 9, "title": "T", **meta})
    assert imported.nsfw is adult
    assert catalogue_is_adult(meta) is adult
    assert catalogue_is_adult(imported.to_dict()) is adult


BAD_FILTERS = [("year_min", "5_0"), ("year_min", "\u0662\u0660\u0661\u0660"), ("min_score", "nan"),
               ("year_min", "1999.5"), ("min_score", "1e999")]


@pytest.mark.parametrize("name, value", BAD_FILTERS)
def test_cli_and_api_refuse_the_same_filter_values_with_the_same_message(tiny_recommender, tiny_index_dir,
                                                                         tiny_model_dir, capsys, name, value):
    from recommender.__main__ import main as recommender_main

    api = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT_ENABLED": False}).test_client()
    response = api.get("/api/v1/search", query_string={"q": "robots", name: value})
    assert response.status_code == 400
    api_message = response.get_json()["error"]["message"]
    code = recommender_main(["search", "--index", str(tiny_index_dir), "--model", str(tiny_model_dir),
                             f"--{name.replace('_', '-')}", value, "robots"])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: {api_message}"


@pytest.mark.parametrize("value", ["5_0", "\u0665\u0660", "50.0", " 50", True])
def test_every_face_reads_integers_the_same_way(tiny_recommender, value):
    with pytest.raises(BadRow, match="anime_id"):
        review_from_json({"review_id": "r", "anime_id": value, "text": "fine"})
    api = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT_ENABLED": False}).test_client()
    response = api.post("/api/v1/search", json={"q": "robots", "top_n": value})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_parameter"
