"""Readable evidence: the sentences of a matched chunk that best show why it matched. Pure functions."""

from __future__ import annotations

import bisect
import re
from functools import lru_cache

#: Sentence-ending punctuation; group 1 (closing quotes and the whitespace after) separates two sentences.
_SENTENCE_END = re.compile(r"[.!?…]([\"')\]]*\s+)")
_NON_SPACE = re.compile(r"\S")
WORD = re.compile(r"[a-z0-9']+")
_WORD_CHAR = re.compile(r"[a-z0-9']")
_STOPWORDS = frozenset(
    "a an and are as at be but by for from has have i in is it its of on or so that the their there this to was "
    "were what when where which who with you your anime show series about like want some something".split()
)


def query_terms(query: str) -> set[str]:
    """Content words of a query, lower-cased, with a crude plural/verb-ending strip."""
    return {stem(w) for w in WORD.findall(query.lower()) if w not in _STOPWORDS and len(w) > 1}


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A crude plural/verb-ending strip ("trainings" → "training"), the same for queries and reviews."""
    for suffix in ("ing", "ies", "es", "s", "ed"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def sentence_weights(text: str, sentences: list[tuple[int, int]], terms: set[str]) -> list[int]:
    """How many distinct query terms each sentence contains.

    Searches the lower-cased passage for each term with ``str.find`` and stems
    only the words where a term starts, instead of tokenising every sentence:
    the same counts (tests compare them) at a fraction of the cost.
    """
    lo, hi = sentences[0][0], sentences[-1][1]
    lowered = text[lo:hi].lower()
    if len(lowered) != hi - lo:  # a rare letter whose lower case is longer: positions would shift
        return [len(terms & {stem(w) for w in WORD.findall(text[a:b].lower())}) for a, b in sentences]
    starts = [a - lo for a, _ in sentences]
    found: list[set[str]] = [set() for _ in sentences]
    for term in terms:
        at = lowered.find(term)
        while at >= 0:
            word = WORD.match(lowered, at)
            end = word.end() if word else at + len(term)
            if (at == 0 or not _WORD_CHAR.match(lowered, at - 1)) and stem(lowered[at:end]) == term:
                i = bisect.bisect_right(starts, at) - 1
                if end + lo <= sentences[i][1]:
                    found[i].add(term)
            at = lowered.find(term, end)
    return [len(words) for words in found]


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Character spans of the sentences inside ``text[start:end]``."""
    end = len(text) if end is None else end
    gaps = [match.span(1) for match in _SENTENCE_END.finditer(text, start, end)]
    starts = [start] + [gap_end for _, gap_end in gaps]
    ends = [gap_start for gap_start, _ in gaps] + [end]
    return [(a, b) for a, b in zip(starts, ends, strict=True) if a < b and _NON_SPACE.search(text, a, b)]


def snippet(text: str, start: int, end: int, query: str, max_chars: int = 320) -> str:
    """The window of whole sentences in ``text[start:end]`` (at most ``max_chars``) sharing most words with ``query``.

    Falls back to the chunk's opening sentences when no word is shared; a single
    sentence longer than ``max_chars`` is cut at a word boundary with an ellipsis.
    """
    sentences = sentence_spans(text, start, end)
    if not sentences:
        return ""
    terms = query_terms(query)
    weights = sentence_weights(text, sentences, terms) if terms else [0] * len(sentences)
    best, best_key = (0, 0), None
    for i in range(len(sentences)):
        j, total = i, 0
        while j < len(sentences) and sentences[j][1] - sentences[i][0] <= max_chars:
            total += weights[j]
            j += 1
        if j == i:  # one sentence longer than max_chars: it is the window (cut below), and its words count
            j, total = i + 1, weights[i]
        key = (total, -i)
        if best_key is None or key > best_key:
            best, best_key = (i, j), key
    a, b = sentences[best[0]][0], sentences[best[1] - 1][1]
    piece = " ".join(text[a:b].split())
    cut_front = False
    if len(piece) > max_chars:
        piece, cut_front = _cut_around_terms(piece, terms, max_chars)
    prefix = "… " if cut_front or a > 0 else ""
    suffix = " …" if b < len(text) and not piece.endswith("…") else ""
    return prefix + piece + suffix


def _cut_around_terms(piece: str, terms: set[str], max_chars: int) -> tuple[str, bool]:
    """At most ``max_chars`` of an over-long sentence, starting a little before its first query word.

    Returns the cut text (ending in an ellipsis when cut) and whether its front was cut.
    """
    # Match on the original text (lower-casing can change lengths) so positions stay valid.
    words = re.finditer(WORD.pattern, piece, re.IGNORECASE)
    first = next((m.start() for m in words if stem(m.group().lower()) in terms), 0)
    begin = max(0, first - max_chars // 4)
    if begin:
        space = piece.find(" ", begin)
        begin = space + 1 if 0 <= space < first else begin
    window = piece[begin:begin + max_chars]
    if begin + max_chars < len(piece):
        window = window.rsplit(" ", 1)[0] + " …"
    return window, begin > 0
