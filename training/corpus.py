"""GPL passages: review chunks cut exactly as the index cuts them, deduplicated and optionally sampled.

The index embeds overlapping token windows of each review (``recommender.chunking``); GPL
writes queries for the same windows, so the model is adapted on the very passages it will
later embed. Some anime are held out of training altogether for the known-item evaluation:
none of their reviews becomes a passage (see :func:`choose_eval_reviews`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recommender import config as rconfig
from recommender.chunking import chunk_reviews
from scraping.models import Review
from training.config import CorpusConfig

PASSAGE_COLUMNS = ["passage_id", "review_id", "anime_id", "chunk_no", "text"]
REVIEW_COLUMNS = ["review_id", "anime_id", "anime_title", "text"]
EVAL_COLUMNS = [*REVIEW_COLUMNS, "role", "split"]
#: An evaluation review is a known-item ``query`` or a ``document`` the queries search; its anime
#: belongs to the ``selection`` set (which picks the checkpoint) or the ``report`` set (before/after).
ROLES = ("query", "document")
SPLITS = ("selection", "report")


@dataclass
class Corpus:
    """Training passages and the evaluation reviews kept out of them."""

    passages: pd.DataFrame        # PASSAGE_COLUMNS
    eval_reviews: pd.DataFrame    # EVAL_COLUMNS
    reviews_used: int             # reviews that produced passages
    duplicates_dropped: int       # passages whose text was already seen
    sampled_out: int              # passages dropped by the sample cap
    held_out_anime: int           # anime none of whose reviews is a training passage


def keep_review(review: Review, corpus: CorpusConfig) -> bool:
    """Whether a review passes the configured filters (source, length; the anime filter is applied by the store)."""
    if not review.text or len(review.text.strip()) < max(1, corpus.min_chars):
        return False
    return not corpus.sources or review.source in corpus.sources


def choose_eval_reviews(reviews: Iterable[tuple[str, int]], total: int, per_anime: int,
                        seed: int) -> dict[str, tuple[str, str]]:
    """The evaluation reviews: ``review_id -> (role, split)``, up to ``per_anime`` of each held-out anime.

    Known-item evaluation asks a held-out review of an anime to find that anime among other
    reviews, so the sample takes several reviews of fewer anime rather than a scatter of
    single reviews. Anime are visited in an order fixed by ``seed`` until ``total`` reviews are
    taken; only anime with at least two reviews qualify. Of each anime's chosen reviews, half
    (at least one) are queries and the rest documents. Anime alternate between the
    ``selection`` and the ``report`` split, so the queries that pick the checkpoint and the
    ones that report before/after never share an anime. The caller keeps every review of the
    chosen anime out of training, not only the chosen ones.

    Args:
        reviews: ``(review_id, anime_id)`` pairs.
        total: how many reviews to take at most (0: none).
        per_anime: reviews taken per anime at most.
        seed: fixes the choice.
    """
    if total <= 0:
        return {}
    by_anime: dict[int, list[str]] = defaultdict(list)
    for review_id, anime_id in reviews:
        by_anime[int(anime_id)].append(str(review_id))
    anime = sorted(a for a, ids in by_anime.items() if len(ids) >= 2)
    rng = random.Random(seed)
    rng.shuffle(anime)
    chosen: dict[str, tuple[str, str]] = {}
    for position, anime_id in enumerate(anime):
        room = total - len(chosen)
        if room < 2:
            break
        ids = sorted(by_anime[anime_id])
        rng.shuffle(ids)
        taken = ids[: min(per_anime, room)]
        split = SPLITS[position % 2]
        queries = len(taken) // 2
        chosen.update({rid: (ROLES[0] if i < queries else ROLES[1], split) for i, rid in enumerate(taken)})
    return chosen


def dedupe_passages(rows: Iterable[tuple[str, int, int, str]]) -> tuple[list[tuple[str, int, int, str]], int]:
    """Drop passages whose (whitespace-normalised) text was seen before; returns the kept rows and the drop count.

    Reposted reviews and copy-pasted paragraphs would otherwise be positives and
    negatives of each other.
    """
    seen: set[str] = set()
    kept, dropped = [], 0
    for row in rows:
        key = " ".join(row[3].split())
        if not key or key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(row)
    return kept, dropped


def sample_positions(n: int, cap: int, seed: int) -> np.ndarray:
    """Sorted positions of a deterministic random sample of ``cap`` out of ``n`` items (all of them if cap is 0)."""
    if cap <= 0 or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def build_corpus(reviews: Sequence[Review], offsets_of, tokens_per_chunk: int, corpus: CorpusConfig, seed: int,
                 overlap: int = rconfig.CHUNK_OVERLAP_TOKENS) -> Corpus:
    """Passages and evaluation reviews from already-filtered reviews.

    Args:
        reviews: the reviews to use (see :func:`keep_review`).
        offsets_of: the base model tokenizer's character offsets, ``Encoder.token_offsets``.
        tokens_per_chunk: text tokens per passage, ``Encoder.tokens_per_chunk`` at the training max_seq_length.
        corpus: the ``[corpus]`` settings (sample cap, evaluation sample size).
        seed: the run's seed.
        overlap: tokens shared by consecutive windows (the index's setting).
    """
    held = choose_eval_reviews(((r.review_id, r.anime_id) for r in reviews), corpus.eval_reviews,
                               corpus.eval_per_anime, seed)
    held_anime = {int(r.anime_id) for r in reviews if r.review_id in held}
    train = [r for r in reviews if int(r.anime_id) not in held_anime]
    text_of = {r.review_id: r.text for r in train}
    chunks = chunk_reviews(((r.review_id, r.anime_id, r.text) for r in train), offsets_of, tokens_per_chunk, overlap)
    rows = ((c.review_id, c.anime_id, c.chunk_no, text_of[c.review_id][c.start:c.end].strip()) for c in chunks)
    kept, dropped = dedupe_passages(rows)
    positions = sample_positions(len(kept), corpus.sample, seed)
    passages = pd.DataFrame([kept[i] for i in positions], columns=PASSAGE_COLUMNS[1:])
    passages.insert(0, "passage_id", np.arange(len(passages), dtype=np.int64))
    passages["anime_id"] = passages["anime_id"].astype(np.int64)
    passages["chunk_no"] = passages["chunk_no"].astype(np.int64)
    evaluation = pd.DataFrame([(r.review_id, r.anime_id, r.anime_title, r.text, *held[r.review_id]) for r in reviews
                               if r.review_id in held], columns=EVAL_COLUMNS)
    return Corpus(passages, evaluation, len(train), dropped, len(kept) - len(positions), len(held_anime))


def reviews_from_frame(frame: pd.DataFrame) -> list[Review]:
    """Evaluation reviews back as ``Review`` objects (what ``recommender.evaluate.known_item`` takes)."""
    return [Review(review_id=row.review_id, anime_id=int(row.anime_id), text=row.text,
                   anime_title=row.anime_title if isinstance(row.anime_title, str) else None)
            for row in frame.itertuples(index=False)]
