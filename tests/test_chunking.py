"""Chunking: long reviews are split into overlapping windows that cover every token; short ones stay whole."""

import re

import pytest

from recommender.chunking import Chunk, chunk_reviews, chunk_spans, token_windows


def whitespace_offsets(texts):
    return [[m.span() for m in re.finditer(r"\S+", text)] for text in texts]


@pytest.mark.parametrize("n_tokens", [0, 1, 5, 9, 10, 11, 19, 20, 21, 57, 300])
@pytest.mark.parametrize("max_tokens,overlap", [(10, 0), (10, 3), (10, 9), (1, 0), (7, 2)])
def test_windows_cover_every_token_brute_force(n_tokens, max_tokens, overlap):
    windows = token_windows(n_tokens, max_tokens, overlap)
    covered = [0] * n_tokens
    for first, last in windows:
        assert 0 <= first < last <= n_tokens
        assert last - first <= max_tokens
        for t in range(first, last):
            covered[t] += 1
    assert all(c >= 1 for c in covered)
    # consecutive windows overlap by at least `overlap` tokens and always advance
    for (f1, l1), (f2, l2) in zip(windows, windows[1:], strict=False):
        assert f2 > f1 and l2 > l1
        assert l1 - f2 >= overlap
    if n_tokens > max_tokens:
        assert all(last - first == max_tokens for first, last in windows)


def test_bad_window_settings():
    with pytest.raises(ValueError):
        token_windows(10, 0, 0)
    with pytest.raises(ValueError):
        token_windows(10, 5, 5)


def test_short_text_is_one_whole_chunk():
    text = "  short review, kept whole  "
    assert chunk_spans(whitespace_offsets([text])[0], len(text), 10, 2) == [(0, len(text))]


def test_long_text_spans_cover_all_words():
    words = [f"w{i}" for i in range(53)]
    text = " ".join(words)
    offsets = whitespace_offsets([text])[0]
    spans = chunk_spans(offsets, len(text), 10, 3)
    assert len(spans) > 1
    seen = set()
    for start, end in spans:
        piece = text[start:end].split()
        assert len(piece) <= 10
        seen.update(piece)
    assert seen == set(words)
    assert text[spans[0][0]:spans[0][1]].split() == words[:10]
    assert text[spans[1][0]:spans[1][1]].split()[:3] == words[7:10]


def test_chunk_reviews_keeps_ids_and_skips_empty():
    reviews = [("a", 1, "one two three"), ("b", 2, "   "), ("c", 3, " ".join(["x"] * 25))]
    chunks = list(chunk_reviews(reviews, whitespace_offsets, max_tokens=10, overlap=2, batch_size=2))
    assert chunks[0] == Chunk("a", 1, 0, 0, len("one two three"))
    assert {c.review_id for c in chunks} == {"a", "c"}
    c_chunks = [c for c in chunks if c.review_id == "c"]
    assert [c.chunk_no for c in c_chunks] == list(range(len(c_chunks)))
    assert all(c.anime_id == 3 for c in c_chunks)


def test_real_tokenizer_spans_cover_every_token(tiny_encoder):
    text = ("The crew drifts between planets chasing bounties. " * 30) + "The end!"
    offsets = tiny_encoder.token_offsets([text])[0]
    limit = tiny_encoder.tokens_per_chunk
    spans = chunk_spans(offsets, len(text), limit, 8)
    assert len(spans) > 1
    for token_start, token_end in offsets:
        assert any(start <= token_start and token_end <= end for start, end in spans)
    for start, end in spans:
        assert len(tiny_encoder.token_offsets([text[start:end]])[0]) <= limit
