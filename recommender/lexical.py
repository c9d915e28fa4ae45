"""Lexical (BM25) scores for re-weighting dense hits: the only module that imports ``rank_bm25``.

Dense embeddings blur rare words and names ("Luffy", "Franchouchou", "judo"); a
BM25 score over the same passages restores them. Search only asks for the
scores of the passages the dense retrieval already found, so a query costs
O(candidates × query words), independent of the corpus size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from rank_bm25 import BM25Okapi

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
#: Function words that only add noise to a bag-of-words score.
STOPWORDS = frozenset(
    "a about after all also an and any are as at be because been but by can could did do does for from had has have "
    "he her his how i if in into is it its just me more most my no not of on one only or other our out she so some "
    "than that the their them then there these they this to too up very was we were what when where which while who "
    "will with would you your".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-cased words of ``text`` without stopwords or possessive ``'s``; Unicode letters and digits count."""
    words = (w[:-2] if w.endswith("'s") else w for w in _WORD.findall(text.casefold()))
    return [w for w in words if w and w not in STOPWORDS]


class LexicalIndex:
    """BM25 (Okapi) over a fixed list of passages, addressed by their position. Build with :meth:`build`."""

    def __init__(self, bm25: BM25Okapi | None, size: int) -> None:
        self._bm25 = bm25
        self.size = size

    @classmethod
    def build(cls, texts: Sequence[str]) -> LexicalIndex:
        """Index ``texts``; passage ``i`` is ``texts[i]``."""
        tokens = [tokenize(text) for text in texts]
        # rank_bm25 divides by the mean passage length: an all-empty corpus has none.
        bm25 = BM25Okapi(tokens) if any(tokens) else None
        return cls(bm25, len(texts))

    def scores(self, query: str, ids: Sequence[int]) -> np.ndarray:
        """BM25 score of ``query`` for each passage in ``ids`` (0 where no query word occurs)."""
        terms = tokenize(query)
        if self._bm25 is None or not terms or not len(ids):
            return np.zeros(len(ids), dtype=np.float64)
        return np.asarray(self._bm25.get_batch_scores(terms, [int(i) for i in ids]), dtype=np.float64)
