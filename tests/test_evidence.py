"""Evidence: snippet windows by hand, and the 1–3 snippets every search result carries (checked by brute force)."""

from __future__ import annotations

import re

import numpy as np

from recommender import config
from recommender.aggregate import AnimeScore, Hit, best_hit_per_review
from recommender.evidence import query_terms, sentence_spans, snippet

TEXT = ("I started this show on a whim. The opening episodes are slow. "
        "Then the volleyball matches begin and every rally is tense! "
        "The rival team is written with real care. I cried at the finale.")


def test_query_terms_drop_stopwords_and_endings():
    assert query_terms("The rivals were training for volleyball matches") == {"rival", "train", "volleyball", "match"}


def test_sentence_spans():
    spans = sentence_spans(TEXT)
    assert [TEXT[a:b] for a, b in spans][:2] == ["I started this show on a whim.", "The opening episodes are slow."]
    assert len(spans) == 5


def test_snippet_picks_the_window_sharing_most_query_words():
    got = snippet(TEXT, 0, len(TEXT), "volleyball rivals", max_chars=110)
    assert got == ("… Then the volleyball matches begin and every rally is tense!"
                   " The rival team is written with real care. …")


def test_snippet_falls_back_to_the_opening_and_marks_cuts():
    assert snippet(TEXT, 0, len(TEXT), "spaceships", max_chars=70).startswith("I started this show on a whim.")
    start = TEXT.index("The opening")
    end = TEXT.index(" Then")
    assert snippet(TEXT, start, end, "anything") == "… The opening episodes are slow. …"
    assert snippet(TEXT, 0, len(TEXT), "show", max_chars=1000) == TEXT  # whole text fits: no ellipsis


def test_an_over_long_sentence_is_cut_around_the_query_words():
    sentence = " ".join(["filler"] * 80 + ["the", "chainsaw", "devil", "appears"] + ["filler"] * 80) + "."
    got = snippet(sentence, 0, len(sentence), "chainsaw devil", max_chars=100)
    assert "chainsaw devil" in got
    assert got.startswith("… ") and got.endswith(" …")
    assert len(got) <= 100 + 4
    # It still wins over a short sentence that shares no query word.
    text = "A short one. " + sentence
    assert "chainsaw" in snippet(text, 0, len(text), "chainsaw", max_chars=100)


def _normalised(text: str) -> str:
    return " ".join(text.split())


def test_search_results_carry_one_to_three_snippets_from_their_own_matching_chunks(tiny_recommender):
    rec = tiny_recommender
    query = "a lazy cat and a jazz soundtrack in space"
    response = rec.search(query, limit=5)
    vector = rec.encoder.encode([query])[0]
    assert response.results
    for result in response.results:
        assert 1 <= len(result.evidence) <= config.EVIDENCE_PER_RESULT
        assert len({e.review_id for e in result.evidence}) == len(result.evidence)
        for evidence in result.evidence:
            review_pos = int(np.flatnonzero(rec.data.reviews.review_ids() == evidence.review_id)[0])
            assert rec.data.reviews.anime_ids[review_pos] == result.anime_id
            review = rec.data.reviews.texts()[review_pos]
            body = re.sub(r"^… | …$", "", evidence.snippet)
            assert body and _normalised(body) in _normalised(review)
            assert len(body) <= config.SNIPPET_CHARS + 2
            # The similarity shown is the plain embedding similarity of one of that review's chunks.
            rows = np.flatnonzero(rec.data.row_review == review_pos)
            sims = rec.encoder.encode([rec.chunk_text(r) for r in rows]) @ vector
            assert float(np.min(np.abs(sims - evidence.similarity))) < 2e-3
        similarities = [e.similarity for e in result.evidence]
        assert similarities == sorted(similarities, reverse=True)


def test_evidence_is_the_results_reviews_closest_in_meaning(tiny_recommender):
    """Ranking mixes in BM25; the evidence shown is still the best by plain cosine among the anime's hits."""
    rec = tiny_recommender
    query = "the soundtrack and the jazz"
    response = rec.search(query, limit=3, top_n=200)
    vector = rec.encoder.encode_query(query)
    hits = best_hit_per_review(rec.hits([query], vector[None, :], 200, rec.allowed(None))[0])
    for result in response.results:
        own = sorted((h for h in hits if h.anime_id == result.anime_id and h.is_review), key=lambda h: -h.cosine)
        assert [e.review_id for e in result.evidence] == [h.review_id for h in own[:len(result.evidence)]]


def test_long_reviews_give_a_window_not_the_whole_review(tiny_recommender):
    rec = tiny_recommender
    lengths = [len(t) for t in rec.data.reviews.texts()]
    longest = int(np.argmax(lengths))
    assert lengths[longest] > config.SNIPPET_CHARS
    review_id = rec.data.reviews.review_ids()[longest]
    rows = np.flatnonzero(rec.data.row_review == longest)
    hit = Hit(int(rec.data.reviews.anime_ids[longest]), 0.5, 0, str(review_id), int(rows[0]))
    result = rec._result(AnimeScore(hit.anime_id, 0.5, 1, [hit]), "story")
    assert result.evidence[0].snippet.endswith("…")
    assert len(result.evidence[0].snippet) < lengths[longest]


def test_evidence_links_mal_reviews_by_id(tiny_recommender):
    rec = tiny_recommender
    hit = Hit(1, 0.5, 0, "123456", 0)
    evidence = rec.evidence.snippets([hit], "anything", 3, 320)
    assert evidence[0].url == "https://myanimelist.net/reviews.php?id=123456"
    assert rec.evidence.snippets([Hit(1, 0.5, 0, "demo-1-1", 0)], "anything", 3, 320)[0].url is None


def test_an_anime_found_by_its_synopsis_alone_still_shows_its_closest_reviews(tiny_recommender):
    rec = tiny_recommender
    anime_id = int(rec.data.synopsis_ids[0])
    query = "quiet days and small adventures"
    vector = rec.encoder.encode_query(query)
    synopsis_hit = Hit(anime_id, 0.9, 0, f"synopsis:{anime_id}", -1, 0.9)
    result = rec._result(AnimeScore(anime_id, 0.9, 1, [synopsis_hit]), query, vector)
    assert result.count == 0  # a synopsis is not a matched review
    rows = np.flatnonzero(rec.data.row_anime == anime_id)
    sims = rec.encoder.encode([rec.chunk_text(r) for r in rows]) @ vector
    best_review = rec.data.reviews.review_ids()[rec.data.row_review[rows[int(np.argmax(sims))]]]
    assert result.evidence and result.evidence[0].review_id == best_review


def test_sentence_weights_fast_path_equals_tokenising_every_sentence(tiny_recommender):
    from recommender.evidence import sentence_weights
    from tests.reference import sentence_weights_reference

    rec = tiny_recommender
    queries = ["Friends laughing together, CAMPING trips!", "the pirates' captain's crews", "cooking studies",
               "dark detective stories in Tokyo", "it's a volleyball team's training"]
    rng = np.random.default_rng(3)
    for row in rng.choice(rec.index.ntotal, 120, replace=False):
        text = rec.data.reviews.text(rec.data.row_review[row])
        start, end = int(rec.data.row_start[row]), int(rec.data.row_end[row])
        sentences = sentence_spans(text, start, end)
        for query in queries:
            terms = query_terms(query)
            if sentences and terms:
                assert sentence_weights(text, sentences, terms) == sentence_weights_reference(text, sentences, query)
