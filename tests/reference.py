"""Brute-force reference computations that tests compare the fast search paths against (numpy only)."""

from __future__ import annotations

import numpy as np


def dense_top(recommender, vector: np.ndarray, top_n: int, allowed_mask: np.ndarray | None = None):
    """The exact best ``top_n`` rows by inner product among the allowed ones: ``(similarities, rows)``."""
    vectors = recommender.index.vectors()
    sims = vectors @ np.asarray(vector, dtype=np.float32)
    rows = np.arange(len(sims)) if allowed_mask is None else np.flatnonzero(allowed_mask)
    order = rows[np.lexsort((rows, -sims[rows]))][:top_n]
    return sims[order], order


def passage_texts(recommender) -> list[str]:
    """Every lexical passage's text: the chunks in row order, then the synopses."""
    data = recommender.data
    return [data.chunk_text(r) for r in range(data.ntotal)] + [data.synopsis(a) for a in data.synopsis_ids]


def lexical_rows_reference(recommender, query: str, dense_rows: np.ndarray) -> list[int]:
    """Rows lexical retrieval should add, from the definition, with word counts taken by scanning every text."""
    from recommender.lexical import tokenize

    data, settings = recommender.data, recommender.settings
    texts = [set(tokenize(t)) for t in passage_texts(recommender)]
    if settings.lexical_depth <= 0 or len(dense_rows) >= settings.lexical_coverage * data.ntotal:
        return []
    dense = set(dense_rows.tolist())
    missing = []
    for word in dict.fromkeys(tokenize(query)):
        holders = [i for i, words in enumerate(texts) if word in words]
        if holders and len(holders) <= max(1.0, settings.lexical_rare_share * len(texts)) and not dense & set(holders):
            missing.append(word)
    if not missing:
        return []
    scores = data.lexical.scores(" ".join(missing))[:data.ntotal]
    positive = np.flatnonzero(scores > 0)
    best = positive[np.lexsort((positive, -scores[positive]))][:settings.lexical_depth]
    return [int(r) for r in best if r not in dense]


def fused_reference(recommender, query: str, vector: np.ndarray, top_n: int) -> dict[tuple[str, int], float]:
    """Every candidate the fused search should return, keyed by (review id or ``synopsis:<id>``, row), with its
    score, computed from the definition in :mod:`recommender.fusion` with no filter (the synopsis bar is the
    weakest dense passage before the negative-review penalty)."""
    from recommender.verdict import asks_for_negative, is_negative

    data, settings = recommender.data, recommender.settings
    sims, rows = dense_top(recommender, vector, top_n)
    bm25 = data.lexical.scores(query)
    extra = lexical_rows_reference(recommender, query, rows)
    all_vectors = recommender.index.vectors()
    unit = 1.0 if settings.doc_norm == 1.0 else float(np.linalg.norm(vector)) * settings.doc_norm
    docs = [((data.reviews.review_id(data.row_review[r]), int(r)), float(s), int(r))
            for s, r in zip(sims, rows, strict=True)]
    docs += [((data.reviews.review_id(data.row_review[r]), r), float(all_vectors[r] @ vector), r) for r in extra]
    syn_sims = data.synopsis_vectors @ vector
    docs += [((f"synopsis:{int(a)}", -1), settings.synopsis_weight * float(s), data.ntotal + i)
             for i, (a, s) in enumerate(zip(data.synopsis_ids, syn_sims, strict=True))]
    lexical = np.array([bm25[p] for _, _, p in docs])
    best = lexical.max()
    expected = {key: base / unit + (settings.lexical_weight * lex / best if best > 0 else 0.0)
                for (key, base, _), lex in zip(docs, lexical, strict=True)}
    weakest = min(expected[key] for key, _, position in docs[:len(rows)])
    kept = {key: s for key, s in expected.items() if key[1] >= 0 or len(rows) < top_n or s >= weakest}
    penalty = 0.0 if settings.verdict_intent and asks_for_negative(query) else settings.negative_penalty
    return {key: s - penalty * is_negative(*data.reviews.verdict(data.row_review[key[1]])) if key[1] >= 0 else s
            for key, s in kept.items()}


def sentence_weights_reference(text: str, sentences, query: str) -> list[int]:
    """Distinct query terms per sentence, by tokenising every sentence (the definition the fast path keeps)."""
    from recommender.evidence import WORD, query_terms, stem

    terms = query_terms(query)
    return [len(terms & {stem(w) for w in WORD.findall(text[a:b].lower())}) for a, b in sentences]
