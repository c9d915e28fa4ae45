"""Split long reviews into overlapping token windows instead of truncating them.

Pure functions: the caller supplies each text's token character offsets (from the
model's own tokenizer), so tests can use any tokenizer and the index and the GPL
corpus cut passages the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

Offsets = Sequence[tuple[int, int]]


@dataclass(frozen=True)
class Chunk:
    """A passage of one review: characters ``[start, end)`` of its text."""

    review_id: str
    anime_id: int
    chunk_no: int
    start: int
    end: int


def token_windows(n_tokens: int, max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Token index ranges ``[first, last)`` covering ``n_tokens`` tokens.

    Each window holds at most ``max_tokens`` tokens and consecutive windows share
    ``overlap`` tokens; the last window is shifted left so it is full-length when
    the text allows, rather than ending in a short tail.
    """
    if max_tokens <= 0:
        raise ValueError("max_tokens must be positive")
    if not 0 <= overlap < max_tokens:
        raise ValueError("overlap must be >= 0 and smaller than max_tokens")
    if n_tokens <= 0:
        return []
    if n_tokens <= max_tokens:
        return [(0, n_tokens)]
    step = max_tokens - overlap
    windows = []
    first = 0
    while True:
        last = first + max_tokens
        if last >= n_tokens:
            windows.append((max(0, n_tokens - max_tokens), n_tokens))
            break
        windows.append((first, last))
        first += step
    return windows


def chunk_spans(offsets: Offsets, text_length: int, max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of the token windows of one text.

    A text that fits in one window gets the whole text as its span, so short
    reviews are embedded exactly as written.
    """
    windows = token_windows(len(offsets), max_tokens, overlap)
    if len(windows) == 1:
        return [(0, text_length)]
    return [(offsets[first][0], offsets[last - 1][1]) for first, last in windows]


def chunk_reviews(
    reviews: Iterable[tuple[str, int, str]],
    offsets_of: Callable[[Sequence[str]], list[Offsets]],
    max_tokens: int,
    overlap: int,
    batch_size: int = 256,
) -> Iterator[Chunk]:
    """Chunks of many reviews given as ``(review_id, anime_id, text)``, tokenized a batch at a time.

    Reviews whose text has no tokens at all (empty or whitespace) produce no chunk.
    """
    batch: list[tuple[str, int, str]] = []

    def flush() -> Iterator[Chunk]:
        all_offsets = offsets_of([text for _, _, text in batch])
        for (review_id, anime_id, text), offsets in zip(batch, all_offsets, strict=True):
            for chunk_no, (start, end) in enumerate(chunk_spans(offsets, len(text), max_tokens, overlap)):
                yield Chunk(review_id, anime_id, chunk_no, start, end)
        batch.clear()

    for review in reviews:
        batch.append(review)
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()
