"""Lexical (BM25) retrieval over the index's passages: the only module that imports ``bm25s``.

Dense embeddings blur rare words and names ("Luffy", "Franchouchou", "judo"); BM25
finds them. The postings are built once, at index time, saved in the index
directory in ``bm25s``'s own format and memory-mapped at load, so a query costs
a pass over the postings of its words and no index is built at query time.

Passages are numbered like the index: review chunks ``0..n-1`` (their vector
rows), then one synopsis per anime that has one.
"""

from __future__ import annotations

import logging
import re
from array import array
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import bm25s
import numpy as np
from tqdm.auto import tqdm

from recommender.errors import IndexNotFoundError

log = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
#: Function words that only add noise to a bag-of-words score.
STOPWORDS = frozenset(
    "a about after all also an and any are as at be because been but by can could did do does for from had has have "
    "he her his how i if in into is it its just me more most my no not of on one only or other our out she so some "
    "than that the their them then there these they this to too up very was we were what when where which while who "
    "will with would you your".split()
)
#: bm25s's defaults; recorded with the saved index.
K1 = 1.5
B = 0.75
#: BM25 variants this module can build (bm25s's names): they differ in the inverse document frequency.
#: Robertson's (Okapi's idf, floored at 0) is the default: on the shared evaluation it beat Lucene's on
#: long-tail queries and tied or beat it elsewhere (docs/evaluation.md).
METHODS = ("robertson", "lucene")


def tokenize(text: str) -> list[str]:
    """Lower-cased words of ``text`` without stopwords or possessive ``'s``; Unicode letters and digits count."""
    words = (w[:-2] if w.endswith("'s") else w for w in _WORD.findall(text.casefold()))
    return [w for w in words if w and w not in STOPWORDS]


class LexicalIndex:
    """BM25 over a fixed list of passages, addressed by position. Make with :meth:`build` or :meth:`load`.

    Read-only after construction, so one instance serves concurrent queries.
    """

    def __init__(self, bm25: bm25s.BM25, size: int) -> None:
        self._bm25 = bm25
        self.size = size
        # Postings stay memory-mapped; the offsets into them (8 bytes a word) are read for every query word.
        self._indptr = np.array(bm25.scores["indptr"], dtype=np.int64)
        # Plain array views of the mapped files (no copy): slicing a np.memmap costs a subclass object each time.
        self._data, self._indices = np.asarray(bm25.scores["data"]), np.asarray(bm25.scores["indices"])

    @classmethod
    def build(cls, texts: Iterable[str], *, progress: bool = False, total: int | None = None,
              method: str = "robertson") -> LexicalIndex:
        """Index ``texts`` (passage ``i`` is the ``i``-th text) without holding token lists in memory.

        Postings are accumulated as flat integer arrays (one entry per distinct
        word of a passage) and scored with bm25s's formula for ``method`` (what
        ``bm25s.BM25(method=method).index`` computes), at a fraction of its memory
        for large corpora.
        """
        if method not in METHODS:
            raise ValueError(f"unknown BM25 method {method!r}; choose from {', '.join(METHODS)}")
        vocab: dict[str, int] = {}
        terms, freqs, per_doc, lengths = array("i"), array("f"), array("i"), array("i")
        for text in tqdm(texts, total=total, desc="lexical index", unit="passage", disable=not progress):
            ids = [vocab.setdefault(word, len(vocab)) for word in tokenize(text)]
            counts = Counter(ids)
            terms.extend(counts.keys())
            freqs.extend(counts.values())
            per_doc.append(len(counts))
            lengths.append(len(ids))
        n_docs = len(lengths)
        bm25 = bm25s.BM25(k1=K1, b=B, method=method, idf_method=method)
        term_ids = np.frombuffer(terms, dtype=np.int32) if terms else np.zeros(0, np.int32)
        doc_ids = np.repeat(np.arange(n_docs, dtype=np.int32), np.frombuffer(per_doc, dtype=np.int32))
        doc_len = np.frombuffer(lengths, dtype=np.int32).astype(np.float32)
        avg_len = float(doc_len.mean()) if n_docs and doc_len.mean() > 0 else 1.0
        df = np.bincount(term_ids, minlength=len(vocab)).astype(np.float64)
        odds = (n_docs - df + 0.5) / (df + 0.5)
        idf = (np.log1p(odds) if method == "lucene" else np.log(np.maximum(odds, 1.0))).astype(np.float32)
        tf = np.frombuffer(freqs, dtype=np.float32) if freqs else np.zeros(0, np.float32)
        weight = idf[term_ids] * tf / (tf + K1 * (1 - B + B * doc_len[doc_ids] / avg_len))
        order = np.argsort(term_ids, kind="stable")  # by word, then by passage: bm25s's column-major layout
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_ids, minlength=len(vocab)), out=indptr[1:])
        bm25.scores = {"data": weight[order].astype(np.float32), "indices": doc_ids[order],
                       "indptr": indptr, "num_docs": n_docs}
        bm25.vocab_dict = vocab
        bm25.nonoccurrence_array = None  # only BM25L/BM25+ shift scores of absent words
        return cls(bm25, n_docs)

    def save(self, directory: Path) -> None:
        """Write the postings, vocabulary and parameters into ``directory`` (bm25s's file layout)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        """Open a saved index with its postings memory-mapped (pages are read as queries touch them).

        Raises:
            IndexNotFoundError: the directory is missing or unreadable.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise IndexNotFoundError(f"no lexical index at {directory}; rebuild the index")
        try:
            bm25 = bm25s.BM25.load(str(directory), mmap=True, show_progress=False)
        except (OSError, ValueError, KeyError) as exc:
            raise IndexNotFoundError(f"cannot read the lexical index in {directory}: {exc}") from exc
        return cls(bm25, int(bm25.scores["num_docs"]))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of ``query`` for every passage (float32, 0 where no query word occurs)."""
        return self.scores_of_terms(self.term_ids(query))

    def term_ids(self, query: str) -> list[int]:
        """Vocabulary ids of the query's words that occur in the corpus (repeats kept, as BM25 counts them)."""
        terms = tokenize(query)
        return self._bm25.get_tokens_ids(terms) if terms else []

    def scores_of_terms(self, term_ids: list[int]) -> np.ndarray:
        """BM25 score of every passage for a query made of ``term_ids``."""
        if not term_ids:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(term_ids), dtype=np.float32)

    def scores_at(self, term_ids: list[int], positions: np.ndarray) -> np.ndarray:
        """BM25 score of the passages at ``positions`` only, for a query made of ``term_ids``.

        Each word's postings are sorted by passage, so a binary search finds the
        candidates' weights without touching the rest: the cost grows with the
        number of candidates, not with how common the query's words are.
        """
        positions = np.asarray(positions, dtype=np.int64)
        out = np.zeros(len(positions), dtype=np.float32)
        if not len(positions):
            return out
        order = np.argsort(positions, kind="stable")
        needles = positions[order].astype(np.int32)  # sorted, and of the postings' type: a faster search
        data, indices, indptr = self._data, self._indices, self._indptr
        for term_id, repeats in Counter(term_ids).items():
            lo, hi = int(indptr[term_id]), int(indptr[term_id + 1])
            if hi == lo:
                continue
            docs = indices[lo:hi]
            where = np.minimum(np.searchsorted(docs, needles), hi - lo - 1)
            found = docs[where] == needles
            out[order[found]] += repeats * data[lo:hi][where[found]]
        return out

    def scores_from(self, term_ids: list[int], start: int) -> np.ndarray:
        """BM25 score of every passage from position ``start`` on (the synopses, numbered after the chunks).

        Postings are sorted by position, so each word's tail past ``start`` is found by one binary
        search and read as it is.
        """
        out = np.zeros(max(0, self.size - start), dtype=np.float32)
        data, indices, indptr = self._data, self._indices, self._indptr
        for term_id, repeats in Counter(term_ids).items():
            lo, hi = int(indptr[term_id]), int(indptr[term_id + 1])
            first = lo + int(np.searchsorted(indices[lo:hi], start))
            if first < hi:
                out[indices[first:hi] - start] += repeats * data[first:hi]
        return out

    def document_frequency(self, term_id: int) -> int:
        """How many passages contain the word."""
        return int(self._indptr[term_id + 1] - self._indptr[term_id])

    def postings(self, term_id: int) -> np.ndarray:
        """Positions of the passages that contain the word (ascending)."""
        return self._indices[self._indptr[term_id]:self._indptr[term_id + 1]]


def top_passages(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` best-scoring passages with a positive score, best first (ties: lower position).

    Args:
        scores: one score per passage.
        k: at most this many.
        allowed: boolean mask of passages that may be returned (None: all).
    """
    candidates = np.flatnonzero(scores > 0)
    if allowed is not None:
        candidates = candidates[allowed[candidates]]
    if len(candidates) > k:
        values = scores[candidates]
        threshold = -np.partition(-values, k - 1)[k - 1]
        above = candidates[values > threshold]
        # Ties at the cut keep the lowest positions, so the answer does not depend on partition order.
        candidates = np.concatenate([above, candidates[values == threshold][:k - len(above)]])
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order]
