"""Aggregations over hand-made hits, with every expected score computed by hand; and the hit fusion of search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recommender import config
from recommender.aggregate import AGGREGATIONS, Hit, aggregate, best_hit_per_review, group_by_anime
from recommender.errors import UnknownAggregationError
from recommender.lexical import tokenize
from tests.reference import dense_top, fused_reference, lexical_rows_reference, passage_texts


def hits_of(*rows: tuple[int, float]) -> list[Hit]:
    """Hits in the given order (rank = position), one review each."""
    return [Hit(anime, sim, rank, f"r{rank}", rank) for rank, (anime, sim) in enumerate(rows)]


# Anime 1: three weak hits; anime 2: one strong hit; anime 3: two middling hits.
HITS = hits_of((2, 0.9), (3, 0.7), (1, 0.6), (3, 0.6), (1, 0.5), (1, 0.5))
COUNTS = {1: 100, 2: 1, 3: 4}


def scores(name: str, **params) -> dict[int, float]:
    return {s.anime_id: s.score for s in aggregate(HITS, name, **params)}


def order(name: str, hits=HITS, **params) -> list[int]:
    return [s.anime_id for s in aggregate(hits, name, **params)]


def test_count_votes_and_keeps_retrieval_order_on_ties():
    assert scores("count") == {1: 3, 3: 2, 2: 1}
    tied = hits_of((5, 0.9), (4, 0.8), (4, 0.7), (5, 0.6))
    assert order("count", tied) == [5, 4]  # 2 votes each: 5 has the better best hit


def test_sum_and_max():
    assert scores("sum") == pytest.approx({1: 1.6, 2: 0.9, 3: 1.3})
    assert order("sum") == [1, 3, 2]
    assert scores("max") == pytest.approx({1: 0.6, 2: 0.9, 3: 0.7})
    assert order("max") == [2, 3, 1]


def test_reciprocal_rank_fusion():
    k = 10.0
    expected = {2: 1 / (k + 1), 3: 1 / (k + 2) + 1 / (k + 4), 1: 1 / (k + 3) + 1 / (k + 5) + 1 / (k + 6)}
    assert scores("rrf", rrf_k=k) == pytest.approx(expected)
    assert order("rrf", rrf_k=k) == [1, 3, 2]


def test_normalized_sum_divides_by_review_count_power():
    got = scores("norm", review_counts=COUNTS, alpha=0.5)
    assert got == pytest.approx({1: 1.6 / 10, 2: 0.9 / 1, 3: 1.3 / 2})
    assert order("norm", review_counts=COUNTS, alpha=0.5) == [2, 3, 1]
    # Without review counts every anime counts as one review: the plain sum.
    assert scores("norm", alpha=0.5) == pytest.approx(scores("sum"))


def test_top_k_mean_pads_with_the_lowest_retrieved_similarity():
    # k=2: anime 2 has one hit, padded with the lowest similarity retrieved (0.5).
    assert scores("topk", top_k=2) == pytest.approx({1: (0.6 + 0.5) / 2, 2: (0.9 + 0.5) / 2, 3: (0.7 + 0.6) / 2})
    assert scores("topk", top_k=1) == pytest.approx(scores("max"))
    assert scores("topk", top_k=2, floor=0.0)[2] == pytest.approx(0.45)


def test_soft_vote_is_log_sum_exp_less_a_popularity_term():
    t, a = 0.05, 0.5

    def expected(sims, n):
        return t * math.log(sum(math.exp(s / t) for s in sims)) - a * t * math.log(n)

    got = scores("soft", temperature=t, alpha=a, review_counts=COUNTS)
    assert got == pytest.approx({1: expected([0.6, 0.5, 0.5], 100), 2: expected([0.9], 1),
                                 3: expected([0.7, 0.6], 4)})
    assert order("soft", temperature=t, alpha=a, review_counts=COUNTS) == [2, 3, 1]
    # A tiny temperature is the best hit; with alpha 0, popularity only adds agreement.
    assert scores("soft", temperature=1e-4, alpha=0.0) == pytest.approx(scores("max"), abs=1e-3)


def test_soft_vote_corrects_popularity_but_still_rewards_agreement():
    # A famous anime with many equally good hits vs a one-review anime with one: with alpha=1 and equal
    # similarities they tie exactly (n hits of s among n reviews ~ one hit of s among one review).
    famous = [(7, 0.5)] * 8
    hits = hits_of((8, 0.5), *famous)
    got = {s.anime_id: s.score for s in aggregate(hits, "soft", temperature=0.05, alpha=1.0,
                                                    review_counts={7: 8, 8: 1})}
    assert got[7] == pytest.approx(got[8])
    # alpha=0.5 leaves part of the agreement bonus: the famous anime is ahead.
    assert order("soft", hits, temperature=0.05, alpha=0.5, review_counts={7: 8, 8: 1}) == [7, 8]


def test_every_aggregation_accepts_the_common_context_and_sorts_best_first():
    for name in AGGREGATIONS:
        ranked = aggregate(HITS, name, review_counts=COUNTS, unused_parameter=1)
        assert sorted(s.anime_id for s in ranked) == [1, 2, 3]
        assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
        assert sum(s.count for s in ranked) == len(HITS)
        assert aggregate([], name) == []


def test_default_aggregation_is_registered_and_unknown_names_fail():
    assert config.DEFAULT_AGGREGATION in AGGREGATIONS
    with pytest.raises(UnknownAggregationError, match="choose from"):
        aggregate(HITS, "popularity")


def test_best_hit_per_review_keeps_the_best_chunk_and_renumbers():
    chunks = [Hit(1, 0.9, 0, "a", 10), Hit(2, 0.8, 1, "b", 11), Hit(1, 0.7, 2, "a", 12, 0.69),
              Hit(3, 0.6, 3, "c", 13, 0.55)]
    kept = best_hit_per_review(chunks)
    assert [(h.review_id, h.rank, h.row) for h in kept] == [("a", 0, 10), ("b", 1, 11), ("c", 2, 13)]
    assert kept[2].cosine == 0.55
    assert list(group_by_anime(kept)) == [1, 2, 3]


# ---- the fused hits that the aggregations receive from search -------------------------------------------------
@pytest.mark.parametrize("coverage", [0.001, 1.0])
def test_fuse_matches_a_brute_force_reference(tiny_recommender, coverage):
    rec = tiny_recommender.with_settings(lexical_coverage=coverage, lexical_rare_share=0.05)
    assert len(rec.data.synopsis_ids) > 0 and rec.settings.lexical_depth > 0
    query = "a cozy camping trip with friends and food, judo and volleyball"
    vector = rec.encoder.encode([query])[0]
    top_n = 40
    fused = rec.hits([query], vector[None, :], top_n, aggregation="soft")[0]
    expected = fused_reference(rec, query, vector, top_n)
    assert rec.data.lexical.scores(query).max() > 0  # the query shares words with the demo corpus
    extra = lexical_rows_reference(rec, query, dense_top(rec, vector, top_n)[1])
    assert bool(extra) == (coverage == 1.0)  # lexical retrieval adds rows only when the dense list covers little

    assert {(h.review_id, h.row) for h in fused} == set(expected)
    for hit in fused:
        assert hit.similarity == pytest.approx(expected[(hit.review_id, hit.row)], abs=1e-5)
    assert [h.rank for h in fused] == list(range(len(fused)))
    assert [h.similarity for h in fused] == sorted((h.similarity for h in fused), reverse=True)
    synopsis_hits = [h for h in fused if not h.is_review]
    assert synopsis_hits and all(h.row == -1 for h in synopsis_hits)
    # cosine keeps the plain embedding similarity.
    some = next(h for h in fused if h.is_review)
    assert some.cosine == pytest.approx(float(np.dot(vector, rec.encoder.encode([rec.chunk_text(some.row)])[0])),
                                        abs=1e-4)


def test_a_rare_word_the_dense_search_missed_is_retrieved_by_bm25(tiny_recommender):
    rec = tiny_recommender.with_settings(lexical_coverage=1.0, lexical_rare_share=0.05)
    data = rec.data
    texts = passage_texts(rec)
    # A word in a handful of passages (like a name), none of them among the dense top 5 for the query.
    query = "a story about friendship and growing up"
    vector = rec.encoder.encode([query])[0]
    dense_rows = set(dense_top(rec, vector, 5)[1].tolist())
    word = next(w for w in ("volleyball", "judo", "bakery", "chess", "camping", "mecha", "jazz")
                if 0 < sum(w in tokenize(t) for t in texts) <= 0.05 * len(texts)
                and not any(w in tokenize(data.chunk_text(r)) for r in dense_rows))
    rows_with_word = {r for r in range(data.ntotal) if word in tokenize(data.chunk_text(r))}
    asked = f"{query} {word}"
    vector = rec.encoder.encode([asked])[0]
    dense_rows = set(dense_top(rec, vector, 5)[1].tolist())
    if dense_rows & rows_with_word:
        pytest.skip(f"the random model happens to rank a {word!r} passage in its top 5")
    found = {h.row for h in rec.hits([asked], vector[None, :], 5, aggregation="soft")[0]}
    assert rows_with_word & found  # BM25 brought the rare word's passages in
    off = rec.with_settings(lexical_depth=0)
    assert not rows_with_word & {h.row for h in off.hits([asked], vector[None, :], 5, aggregation="soft")[0]}


def test_fuse_is_the_identity_when_every_lever_is_off(tiny_recommender):
    rec = tiny_recommender.with_settings(synopsis_weight=0.0, lexical_weight=0.0, lexical_depth=0)
    vector = rec.encoder.encode(["space cowboys"])[0]
    fused = rec.hits(["space cowboys"], vector[None, :], 20, aggregation="soft")[0]
    dense = rec.hits(["space cowboys"], vector[None, :], 20, aggregation="count")[0]
    assert fused == dense
    sims, rows = dense_top(rec, vector, 20)
    assert [h.row for h in dense] == rows.tolist()
    assert [h.similarity for h in dense] == pytest.approx(sims.tolist(), abs=1e-5)


def test_count_uses_the_plain_dense_hits(tiny_recommender):
    rec = tiny_recommender
    response = rec.search("jazz and bounty hunters in space", aggregation="count", top_n=30, limit=3)
    vector = rec.encoder.encode_query("jazz and bounty hunters in space")
    votes: dict[int, set[str]] = {}
    for row in dense_top(rec, vector, 30)[1]:
        votes.setdefault(int(rec.data.row_anime[row]), set()).add(rec.data.reviews.review_id(rec.data.row_review[row]))
    expected = sorted(((a, len(r)) for a, r in votes.items()), key=lambda kv: -kv[1])[:3]
    assert [(r.anime_id, r.count) for r in response.results] == expected  # stable sort keeps retrieval order
    assert [r.score for r in response.results] == [float(n) for _, n in expected]


def test_one_hit_per_review_on_arrays_equals_best_hit_per_review(tiny_recommender):
    rec = tiny_recommender
    for query in ("space cowboys and jazz", "a cozy camping trip with friends", "volleyball"):
        vector = rec.encoder.encode([query])[0]
        for aggregation in ("soft", "count"):
            every = rec.hits([query], vector[None, :], 60, aggregation=aggregation)[0]
            dense = rec.retriever.dense(vector, 60, rec.allowed(None))[0]
            if aggregation == "count":
                once = rec.retriever.dense_hits(dense, 1.0, one_per_review=True)
            else:
                once = rec.retriever.fused_hits(query, vector, dense, rec.allowed(None), rec.settings.replace(top_n=60),
                                                one_per_review=True)
            assert once == best_hit_per_review(every)
            assert rec.rank(once, aggregation, deduplicated=True) == rec.rank(every, aggregation)
