"""The reviewer's verdict: one rule, a penalty and a vote against on a tiny corpus, verdict-aware evidence."""

from __future__ import annotations

import pytest

from recommender import evaluate as ev
from recommender.review_table import ReviewTable
from recommender.search_config import SearchConfig
from recommender.verdict import asks_for_negative, is_negative, verdict_tag
from scraping.models import Review

SAME = "a cute light romance with a sweet couple and a happy ending"
QUERY = SAME  # identical words: the positive and the negative review match it exactly as well


def corpus() -> list[Review]:
    """Anime 2 (a negative review) and anime 1 (a positive one) say the same words; anime 3 has one of each."""
    return [
        Review("neg", 2, SAME, score=2, tags=["Not Recommended"]),
        Review("pos", 1, SAME, score=9, tags=["Recommended"]),
        Review("mixed-neg", 3, SAME + " again", score=3, tags=[]),
        Review("mixed-pos", 3, "the couple is sweet and the romance is light", score=8, tags=["Recommended"]),
        Review("other-1", 4, "giant robots fight a war in space", score=7, tags=["Recommended"]),
        Review("other-2", 5, "a detective solves a dark crime", score=6, tags=["Mixed Feelings"]),
    ]


@pytest.fixture(scope="module")
def tiny_corpus_recommender(tiny_encoder):
    plain = SearchConfig(lexical_weight=0.0, lexical_depth=0, soft_alpha=0.0, negative_penalty=0.0,
                         evidence_by_verdict=False)  # the verdict ignored; each test turns on what it checks
    return ev.in_memory_recommender(tiny_encoder, corpus(), settings=plain)


def scores(recommender, query: str = QUERY) -> dict[int, float]:
    return {r.anime_id: r.score for r in recommender.search(query, limit=10).results}


def test_one_rule_for_negative_reviews():
    cases = [(None, []), (4, []), (5, ["Not Recommended"]), (9, ["Recommended"]), (None, ["Not Recommended",
             "Spoiler"]), (5, ["Mixed Feelings"]), (1, ["Recommended"])]
    reviews = [Review(f"r{i}", 1, "text", score=s, tags=t) for i, (s, t) in enumerate(cases)]
    mask = ReviewTable.from_reviews(reviews).negative_mask()
    assert list(mask) == [is_negative(s, t) for s, t in cases] == [False, True, True, False, True, False, True]
    assert verdict_tag(["Spoiler", "Not Recommended"]) == "Not Recommended" and verdict_tag(["Preliminary"]) is None


def test_queries_that_ask_for_what_reviewers_disliked():
    assert asks_for_negative("overrated shows with a rushed ending")
    assert asks_for_negative("the most boring anime I dropped")
    assert not asks_for_negative("the bad guys win in the end")
    assert not asks_for_negative("a cute light romance")


def test_penalty_moves_the_negative_review_below_the_positive_one(tiny_corpus_recommender):
    rec = tiny_corpus_recommender
    ignored = scores(rec)
    assert ignored[1] == pytest.approx(ignored[2])  # same words, same similarity: the verdict is ignored
    penalised = scores(rec.with_settings(negative_penalty=0.05))
    assert penalised[1] == pytest.approx(ignored[1])
    assert penalised[1] - penalised[2] == pytest.approx(0.05)  # one hit each: the score is the hit's
    order = [r.anime_id for r in rec.with_settings(negative_penalty=0.05).search(QUERY, limit=3).results]
    assert order.index(1) < order.index(2)
    # A query that asks for what reviewers disliked is matched with negative reviews: no penalty.
    asking = rec.with_settings(negative_penalty=0.05, verdict_intent=True)
    disliked = scores(asking, "overrated: " + QUERY)
    assert disliked[1] == pytest.approx(disliked[2])


def test_negative_reviews_vote_against_with_a_dislike_weight(tiny_corpus_recommender):
    rec = tiny_corpus_recommender.with_settings(dislike_weight=1.0)
    got = scores(rec)
    hits = rec.hits([QUERY], rec.encoder.encode([QUERY]), aggregation="soft")[0]
    floor = min(h.similarity for h in hits)
    best = max(h.similarity for h in hits)
    assert got[2] == pytest.approx(best - (best - floor))  # only a negative review: its score less its gap to the floor
    assert got[1] == pytest.approx(best)
    # Anime 3: its negative review matches better than its positive one, so the difference is taken off.
    neg3 = max(h.similarity for h in hits if h.review_id == "mixed-neg")
    pos3 = max(h.similarity for h in hits if h.review_id == "mixed-pos")
    assert neg3 > pos3 and got[3] == pytest.approx(pos3 - (neg3 - pos3))
    assert [r.count for r in rec.search(QUERY, limit=10).results if r.anime_id == 3] == [2]


def test_evidence_prefers_agreeing_verdicts_and_shows_them(tiny_corpus_recommender):
    rec = tiny_corpus_recommender

    def evidence(recommender, query=QUERY):
        return next(r.evidence for r in recommender.search(query, limit=10).results if r.anime_id == 3)

    by_meaning = evidence(rec)
    assert [e.review_id for e in by_meaning] == ["mixed-neg", "mixed-pos"]  # the negative one is closer
    assert by_meaning[0].negative and by_meaning[0].review_score == 3 and by_meaning[0].verdict is None
    assert not by_meaning[1].negative and by_meaning[1].verdict == "Recommended"
    agreeing = rec.with_settings(evidence_by_verdict=True, verdict_intent=True)
    assert [e.review_id for e in evidence(agreeing)] == ["mixed-pos", "mixed-neg"]
    assert [e.review_id for e in evidence(agreeing, "boring " + QUERY)] == ["mixed-neg", "mixed-pos"]
    as_json = rec.search(QUERY, limit=1).to_dict()["results"][0]["evidence"][0]
    assert {"review_score", "verdict", "negative"} <= set(as_json)
