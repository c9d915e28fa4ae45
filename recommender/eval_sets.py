"""Evaluation query sets and their deterministic dev/test splits. No model, no index I/O: ids, text and hashes.

Four sets, each with qrels in the shape :mod:`recommender.metrics` reads:

* ``known_item`` — a window of a held-out review; its anime is the answer (judged by the data).
* ``labels`` — one query per MyAnimeList genre/theme label with at least :data:`MIN_LABEL_ANIME` anime in the
  index (``eval_data/mal_label_queries.tsv``, our words, fixed before any result was seen); every anime MAL
  gives that label is relevant (judged by MAL).
* ``long_tail`` and ``genres`` — the hand-written queries of :mod:`recommender.eval_queries` (written knowing
  their targets; kept for continuity, never used alone to choose a default).

Every set is split into *dev* (tuning) and *test* (reporting) by rules that depend only on ids, texts
and the seed: held-out reviews are assigned within strata of anime size, alternating over anime ordered
by a hash, so anime with few reviews are in both splits and an anime with two or more held-out reviews
lands in both; the queries of the other sets alternate in hash order.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recommender import config

SPLITS = ("dev", "test")
#: A MAL label becomes a query when at least this many indexed anime carry it.
MIN_LABEL_ANIME = 3
LABEL_QUERIES = Path(__file__).resolve().parent / "eval_data" / "mal_label_queries.tsv"
#: Strata of anime size (reviews in the index) for the known-item split: [2, 10), [10, 100), [100, ∞).
SIZE_STRATA = (10, 100)


@dataclass(frozen=True)
class KnownItemQuery:
    """A window of a held-out review; the anime it reviews is the answer."""

    text: str
    anime_id: int
    review_id: str


@dataclass(frozen=True)
class LabelledQuery:
    """A hand-written query: ``answers`` are the anime it describes (long tail), or ``genre`` its expected label."""

    text: str
    answers: tuple[int, ...] = ()
    genre: str | None = None


@dataclass(frozen=True)
class QuerySet:
    """Queries with their relevance judgements, ready for :mod:`recommender.metrics`.

    Attributes:
        name: ``known_item``, ``labels``, ``long_tail`` or ``genres``.
        ids: query ids, in order.
        texts: query texts, aligned with ``ids``.
        qrels: ``{query_id: {anime_id: grade}}``.
        groups: ``{query_id: group}`` for the bootstrap (the answer anime of a known-item query, else the query).
    """

    name: str
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    qrels: dict[str, dict[int, int]]
    groups: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def hash_key(seed: int, text: str) -> str:
    """The ordering key of an id or text under ``seed`` (sha1: the same on every machine and Python)."""
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()


# ---- held-out reviews -----------------------------------------------------------------------
def held_out_split(reviews: Iterable[tuple[str, int]], *, fraction: float = config.EVAL_HOLDOUT_FRACTION,
                   seed: int = config.EVAL_SEED) -> set[str]:
    """Review ids held out of the index for known-item evaluation.

    Every anime with at least two reviews gives ``max(1, round(fraction · n))``
    of them, never all: the ones whose ``sha1(seed:review_id)`` is smallest.
    Anime with one review keep it (a held-out query whose anime is absent from
    the index could not be answered). Deterministic: no state, no clock.

    Args:
        reviews: ``(review_id, anime_id)`` pairs.
        fraction: share of each anime's reviews to hold out.
        seed: changes which reviews are chosen.
    """
    by_anime: dict[int, list[str]] = defaultdict(list)
    for review_id, anime_id in reviews:
        by_anime[int(anime_id)].append(str(review_id))
    held: set[str] = set()
    for ids in by_anime.values():
        if len(ids) < 2:
            continue
        take = min(len(ids) - 1, max(1, round(fraction * len(ids))))
        held.update(sorted(ids, key=lambda rid: hash_key(seed, rid))[:take])
    return held


def split_held_out(reviews: Iterable[tuple[str, int]], held: set[str], *,
                   seed: int = config.EVAL_SEED) -> dict[str, str]:
    """``{review_id: "dev" | "test"}`` for the held-out reviews, stratified by anime size.

    Anime are put in strata by their number of reviews (:data:`SIZE_STRATA`). Within
    a stratum, anime are taken in hash order and each one's held-out reviews in
    hash order, and the splits alternate along that sequence without restarting
    per anime: the anime that give one review go to dev and test in turn, and an
    anime that gives several is in both.

    Args:
        reviews: ``(review_id, anime_id)`` of every review (held out or not: sizes count all).
        held: ids from :func:`held_out_split`.
        seed: as for the held-out split.
    """
    by_anime: dict[int, list[str]] = defaultdict(list)
    size: dict[int, int] = defaultdict(int)
    for review_id, anime_id in reviews:
        size[int(anime_id)] += 1
        if review_id in held:
            by_anime[int(anime_id)].append(str(review_id))
    strata: dict[int, list[int]] = defaultdict(list)
    for anime_id in by_anime:
        strata[sum(size[anime_id] >= bound for bound in SIZE_STRATA)].append(anime_id)
    assigned: dict[str, str] = {}
    for _, members in sorted(strata.items()):
        turn = 0
        for anime_id in sorted(members, key=lambda a: hash_key(seed, f"anime:{a}")):
            for review_id in sorted(by_anime[anime_id], key=lambda rid: hash_key(seed, rid)):
                assigned[review_id] = SPLITS[turn % 2]
                turn += 1
    return assigned


def alternate(keys: Iterable[str], *, seed: int = config.EVAL_SEED) -> dict[str, str]:
    """``{key: "dev" | "test"}``: keys in hash order, the splits in turn (halves differ by at most one)."""
    return {key: SPLITS[i % 2] for i, key in enumerate(sorted(set(keys), key=lambda k: hash_key(seed, k)))}


def in_split(split_of: str, split: str) -> bool:
    """Whether a query assigned to ``split_of`` belongs to the asked ``split`` (``all``: both)."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown split {split!r}; use dev, test or all")
    return split == "all" or split_of == split


# ---- known-item queries ---------------------------------------------------------------------
def query_window(text: str, review_id: str, *, window_words: int = 30, seed: int = config.EVAL_SEED) -> str:
    """A ``window_words``-word window of a review at a position fixed by ``seed`` and the review id."""
    words = text.split()
    if len(words) <= window_words:
        return " ".join(words)
    start = random.Random(f"{seed}:{review_id}").randrange(len(words) - window_words + 1)
    return " ".join(words[start:start + window_words])


def known_item_queries(reviews: Iterable[tuple[str, int, str]], held_out: set[str], *,
                       max_queries: int | None = 200, window_words: int = 30,
                       seed: int = config.EVAL_SEED) -> list[KnownItemQuery]:
    """Queries from the held-out reviews, taken round-robin over anime so that small anime are represented.

    Args:
        reviews: ``(review_id, anime_id, text)``; only held-out ones with text are used.
        held_out: ids from :func:`held_out_split` (or one split of them).
        max_queries: at most this many (None: all).
        window_words: words per query.
        seed: as for the split.
    """
    by_anime: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for review_id, anime_id, text in reviews:
        if review_id in held_out and text and text.strip():
            by_anime[int(anime_id)].append((review_id, text))
    queues = [sorted(items, key=lambda item: hash_key(seed, item[0])) for _, items in sorted(by_anime.items())]
    anime_of = [anime_id for anime_id, _ in sorted(by_anime.items())]
    queries: list[KnownItemQuery] = []
    depth = 0
    while any(depth < len(queue) for queue in queues):
        for anime_id, queue in zip(anime_of, queues, strict=True):
            if depth < len(queue):
                review_id, text = queue[depth]
                queries.append(KnownItemQuery(query_window(text, review_id, window_words=window_words, seed=seed),
                                              anime_id, review_id))
        depth += 1
    return queries if max_queries is None else queries[:max_queries]


def known_item_set(queries: Sequence[KnownItemQuery]) -> QuerySet:
    """The known-item queries as a :class:`QuerySet` (query id = review id, grouped by anime)."""
    return QuerySet("known_item", tuple(q.review_id for q in queries), tuple(q.text for q in queries),
                    {q.review_id: {q.anime_id: 1} for q in queries}, {q.review_id: q.anime_id for q in queries})


# ---- labelled queries -----------------------------------------------------------------------
def load_label_queries(path: str | Path = LABEL_QUERIES) -> list[tuple[str, str]]:
    """``(label, query)`` rows of the label-query file (``#`` lines are comments).

    Raises:
        ValueError: a line without exactly one tab, or a label given twice.
    """
    rows: list[tuple[str, str]] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ValueError(f"{path}:{number}: expected 'label<TAB>query'")
        rows.append((parts[0].strip(), parts[1].strip()))
    labels = [label.casefold() for label, _ in rows]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: a label is given twice")
    return rows


def anime_by_label(labels_of: Mapping[int, set[str]]) -> dict[str, set[int]]:
    """``{case-folded label: anime carrying it}`` from each anime's case-folded labels."""
    holders: dict[str, set[int]] = defaultdict(set)
    for anime_id, labels in labels_of.items():
        for label in labels:
            holders[label].add(int(anime_id))
    return dict(holders)


def label_set(rows: Sequence[tuple[str, str]], labels_of: Mapping[int, set[str]], split: str, *,
              min_anime: int = MIN_LABEL_ANIME, seed: int = config.EVAL_SEED) -> QuerySet:
    """Label queries whose label at least ``min_anime`` indexed anime carry, in ``split``; query id = the label."""
    holders = anime_by_label(labels_of)
    usable = [(label, text) for label, text in rows if len(holders.get(label.casefold(), ())) >= min_anime]
    side = alternate([label for label, _ in usable], seed=seed)
    chosen = [(label, text) for label, text in usable if in_split(side[label], split)]
    return QuerySet("labels", tuple(label for label, _ in chosen), tuple(text for _, text in chosen),
                    {label: {a: 1 for a in holders[label.casefold()]} for label, _ in chosen},
                    {label: label for label, _ in chosen})


def hand_written_sets(long_tail: Sequence[LabelledQuery], genres: Sequence[LabelledQuery],
                      labels_of: Mapping[int, set[str]], split: str, *,
                      seed: int = config.EVAL_SEED) -> tuple[QuerySet, QuerySet]:
    """The long-tail queries (an answer in the index) and genre queries (the genre in the index) of ``split``."""
    indexed = set(labels_of)
    holders = anime_by_label(labels_of)
    tail = [(q.text, {a: 1 for a in q.answers if a in indexed}) for q in long_tail]
    genre = [(q.text, {a: 1 for a in holders.get((q.genre or "").casefold(), ())}) for q in genres]
    out = []
    for name, items in (("long_tail", tail), ("genres", genre)):
        usable = [(text, grades) for text, grades in items if grades]
        side = alternate([text for text, _ in usable], seed=seed)
        chosen = [(text, grades) for text, grades in usable if in_split(side[text], split)]
        out.append(QuerySet(name, tuple(t for t, _ in chosen), tuple(t for t, _ in chosen),
                            {t: g for t, g in chosen}, {t: t for t, _ in chosen}))
    return out[0], out[1]
