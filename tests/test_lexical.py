"""BM25 built at index time with bm25s: the same scores as bm25s's own indexer, saved, memory-mapped, reloaded."""

from __future__ import annotations

import bm25s
import numpy as np
import pytest

from recommender.errors import IndexNotFoundError
from recommender.lexical import LexicalIndex, tokenize, top_passages

PASSAGES = [
    "A zombie girl idol group called Franchouchou sings in Saga.",
    "The pirate crew sails on, and the captain laughs at the storm.",
    "Slow romance between two rival students who compete for the top grade.",
    "",
    "the and of",
    "Rival pirates, rival students: rivalry everywhere, rival rival.",
    "Cooking battles where the food is described like fireworks.",
    "Franchouchou again! Zombie idols are the best idols.",
]


@pytest.fixture(scope="module")
def lexical() -> LexicalIndex:
    return LexicalIndex.build(PASSAGES)


def test_lucene_variant_equals_bm25s_too():
    ours = LexicalIndex.build(PASSAGES, method="lucene")
    reference = bm25s.BM25(method="lucene", idf_method="lucene")
    reference.index([tokenize(p) for p in PASSAGES], show_progress=False)
    assert ours.scores("rival pirates") == pytest.approx(reference.get_scores(tokenize("rival pirates")), abs=1e-5)
    with pytest.raises(ValueError, match="unknown BM25 method"):
        LexicalIndex.build(PASSAGES, method="bm25x")


@pytest.mark.parametrize("query", ["Franchouchou", "rival students", "zombie idol pirates", "the of", "nothing here",
                                   "rival rival rival"])
def test_scores_equal_bm25s_own_indexer(lexical, query):
    reference = bm25s.BM25(method="robertson", idf_method="robertson")
    reference.index([tokenize(p) for p in PASSAGES], show_progress=False)
    terms = tokenize(query)
    known = reference.get_tokens_ids(terms) if terms else []
    expected = reference.get_scores(terms) if known else np.zeros(len(PASSAGES))
    assert lexical.scores(query) == pytest.approx(expected, abs=1e-5)


def test_scores_at_some_positions_equal_the_full_scores(lexical):
    for query in ("rival rival students", "Franchouchou zombie", "the of", "unknownword"):
        full = lexical.scores(query)
        positions = np.array([7, 0, 5, 2, 5, 3])
        assert np.array_equal(lexical.scores_at(lexical.term_ids(query), positions), full[positions])
        assert np.array_equal(lexical.scores_from(lexical.term_ids(query), 5), full[5:])
    assert lexical.scores_at([], np.array([1, 2])).tolist() == [0.0, 0.0]
    word = lexical.term_ids("franchouchou")[0]
    assert lexical.document_frequency(word) == 2 and lexical.postings(word).tolist() == [0, 7]


def test_save_and_load_round_trip_memory_mapped(lexical, tmp_path):
    lexical.save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical")
    assert loaded.size == len(PASSAGES)
    for query in ("Franchouchou", "rival students", "food fireworks"):
        assert np.array_equal(loaded.scores(query), lexical.scores(query))
    postings = loaded._bm25.scores["data"]
    assert isinstance(postings, np.memmap)  # read on demand, not loaded into the heap


def test_missing_or_corrupt_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexNotFoundError, match="no lexical index"):
        LexicalIndex.load(tmp_path / "absent")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "params.index.json").write_text("{not json")
    with pytest.raises(IndexNotFoundError, match="cannot read the lexical index"):
        LexicalIndex.load(tmp_path / "broken")


def test_top_passages_is_best_first_positive_only_masked_and_deterministic(lexical):
    scores = lexical.scores("rival pirates")
    best = top_passages(scores, 10)
    assert list(best) == sorted((int(i) for i in np.flatnonzero(scores > 0)), key=lambda i: (-scores[i], i))
    allowed = np.ones(len(PASSAGES), dtype=bool)
    allowed[best[0]] = False
    assert best[0] not in top_passages(scores, 10, allowed)
    ties = np.array([0.0, 2.0, 1.0, 2.0, 2.0, 0.5])
    assert list(top_passages(ties, 2)) == [1, 3]  # a tie at the cut keeps the lower positions
    assert list(top_passages(ties, 4)) == [1, 3, 4, 2]
    assert len(top_passages(np.zeros(5), 3)) == 0
