"""A reference-size corpus for benchmarks: 163,687 reviews of 4,000 anime, built from the shared MAL data in minutes.

    python benchmarks/scale_corpus.py --out DIR [--reviews 163687] [--anime 4000] [--seed 0]
                                      [--sentences 6000] [--index-type flat] [--no-index]

Writes, under ``DIR`` (outside git, or under the git-ignored ``data/``), a review store
``scale.sqlite``, a sentence-vector table and an index directory built by the project's own
``recommender.build.build_index``; prints the corpus's shape against the real data's and the
seconds of every phase. A rerun with the same settings reuses what is there. From another
benchmark (``benchmarks/`` on ``sys.path``)::

    from scale_corpus import build_scale_corpus, build_scale_index
    corpus = build_scale_corpus(work_dir)
    index_dir = build_scale_index(corpus, index_type="flat")

What is real and what is made up:

- Anime: the 4,000 anime of ``../shared/data/anime.jsonl`` with the most MAL members, imported as
  ``python -m scraping import --anime`` parses them (real ids, titles, URLs, synopses, genres,
  themes, types, years, scores).
- Reviews per anime: a Zipf–Mandelbrot curve ``count ∝ (rank/N + b)^-a`` fitted to the rank/frequency
  curve of the shared reviews (2,337 reviews of 96 anime), scaled to the requested total, at least one
  review each; the more members an anime has, the more reviews it gets.
- Review texts: whole sentences of real reviews, joined until the review reaches a length drawn from
  the real length distribution. Each synthetic anime has a "source" real anime (matched by rank) whose
  sentences make up most of its reviews, so reviews of one anime share vocabulary and BM25, evidence
  snippets and filters do real work. Scores, tags, dates, the share of numeric (MAL) review ids and of
  reviews with a username come from one real review drawn per synthetic review; usernames themselves are
  made-up handles, so no real user is credited with text they did not write.
- Vectors are composed, not encoded: each distinct sentence (a sample of ``--sentences`` review sentences,
  6,000 of the ~57,500 of the shared reviews by default, plus the first sentence of every synopsis) is
  encoded once by the real model, and a passage's vector is the mean of the vectors of the whole known
  sentences it contains (re-normalised when the model normalises). Fragments cut at chunk borders are left
  out; a passage with no whole known sentence is encoded for real and counted. A synopsis is thus
  represented by its first sentence. This stands in for the ~10 h a 2-core CPU needs to encode 500,000
  chunks; the sentence table is saved (keyed by the model's sha256) and reused by later runs. The encoder
  that does it is ``ComposedEncoder`` in ``benchmarks/composed_encoder.py``.
- The index is built by the project's own ``build_index``. Its chunking asks the encoder for token offsets;
  for a text made of whole table sentences these are put together from each sentence's offsets (exactly
  the tokenizer's answer, checked against it at the start of every build): 2–3 minutes for 163,687 reviews
  on the shared 2-core machine, where tokenizing them took 73 s per 16,000 (~12 minutes in all).

What that means for numbers measured on it: load time, memory, index size and every latency (query
encoding, FAISS, BM25, aggregation, evidence, filters, HTTP) are real, because the serving code does the
same work on composed vectors as on encoded ones and queries are encoded by the real model. Retrieval
*quality* on this corpus means little: texts are shuffled sentences of other anime's reviews, and
means of sentence vectors are more alike than real chunk vectors (MiniLM, 7,000 sampled vectors: mean
cosine between two of them 0.66 against 0.38 for the chunks of the shared reviews, 10th-nearest neighbour
0.80 against 0.69), which may also shift the recall/speed trade-off of approximate index types. Measure
quality with ``python -m recommender evaluate`` on the real shared data instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import load_average, markdown_table  # noqa: E402
from composed_encoder import (  # noqa: E402
    ComposedEncoder,
    CompositionCounts,
    SentenceTable,
    encoding_threads,
    split_sentences,
    torch_threads,
)

from recommender import config  # noqa: E402
from recommender.build import FORMAT_VERSION, MANIFEST, build_index, synopsis_text  # noqa: E402
from recommender.encoder import Encoder  # noqa: E402
from recommender.errors import RecommenderError  # noqa: E402
from recommender.index import INDEX_TYPES  # noqa: E402
from scraping.importers import BadRow, anime_from_json  # noqa: E402
from scraping.models import Anime, Review  # noqa: E402
from scraping.store import Store, StoreError  # noqa: E402

REFERENCE_REVIEWS = 163_687
REFERENCE_ANIME = 4_000
SHARED_DATA = config.PROJECT_ROOT.parent / "shared" / "data"
#: Distinct review sentences the texts are made of (of ~57,500 in the shared reviews): with the synopses' first
#: sentences, 9,873 to encode, 4.5 min of MiniLM on the shared 2-core machine (load ~7, one torch thread).
DEFAULT_SENTENCES = 6_000
#: Share of a review's sentences drawn from its anime's source pool (the rest from the whole pool).
SOURCE_SHARE = 0.8
#: Sentences shorter or longer than this (characters) are not used: too short says nothing, too long are
#: run-ons that chunk borders would cut.
SENTENCE_CHARS = (20, 300)
#: Bumped whenever the generator's output for the same settings changes (invalidates reused stores).
GENERATOR_VERSION = 1
STORE_FILE = "scale.sqlite"
STAMP_FILE = "scale_corpus.json"
SOURCE = "synthetic_scale"

_HANDLE_PARTS = ("aki", "ren", "sora", "kage", "neko", "tsuki", "hoshi", "yuki", "kuro", "shiro", "hana", "ryu",
                 "mochi", "taiyo", "kaze", "umi", "yoru", "kumo", "ame", "hikari")


# ---- the real data -----------------------------------------------------------------------------------
@dataclasses.dataclass
class RealData:
    """What the generator takes from the shared MAL data (read-only, never copied into the repository)."""

    reviews: list[dict]
    anime: list[dict]
    digest: str

    @classmethod
    def load(cls, data_dir: str | Path = SHARED_DATA) -> RealData:
        """Read ``reviews.jsonl`` and ``anime.jsonl``.

        Raises:
            FileNotFoundError: either file is missing.
        """
        data_dir = Path(data_dir)
        digest = hashlib.sha256()
        parts = []
        for name in ("reviews.jsonl", "anime.jsonl"):
            path = data_dir / name
            if not path.is_file():
                raise FileNotFoundError(f"shared MAL data not found: {path}")
            raw = path.read_bytes()
            digest.update(raw)
            parts.append([json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()])
        return cls(reviews=parts[0], anime=parts[1], digest=digest.hexdigest())

    def review_counts(self) -> np.ndarray:
        """Reviews per anime, most reviewed first."""
        return np.array(sorted(Counter(r["anime_id"] for r in self.reviews).values(), reverse=True))

    def review_lengths(self) -> np.ndarray:
        return np.array([len(r["text"]) for r in self.reviews])


# ---- per-anime review counts -------------------------------------------------------------------------
def fit_rank_frequency(counts: Sequence[int]) -> tuple[float, float]:
    """Fit ``count/mean ≈ C · (q + b)^-a`` to a rank/frequency curve, ``q = (rank - ½) / n``; returns ``(a, b)``.

    A least-squares line in log space for each offset ``b`` of a grid; the offset flattens the head, which a
    pure power law (``b = 0``) would send to tens of thousands of reviews for the top anime at 4,000 anime.
    """
    counts = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    n = len(counts)
    if n < 3:
        raise ValueError("need the review counts of at least 3 anime to fit a curve")
    rank_fraction = (np.arange(1, n + 1) - 0.5) / n
    target = np.log(counts / counts.mean())
    best = (np.inf, 1.0, 0.0)
    for offset in np.concatenate([[0.0], np.logspace(-5, 0, 201)]):
        design = np.column_stack([np.ones(n), -np.log(rank_fraction + offset)])
        coef = np.linalg.lstsq(design, target, rcond=None)[0]
        error = float(((design @ coef - target) ** 2).sum())
        if error < best[0]:
            best = (error, float(coef[1]), float(offset))
    return best[1], best[2]


def review_counts(n_anime: int, n_reviews: int, exponent: float, offset: float) -> np.ndarray:
    """``n_anime`` counts (most first) on the fitted curve, each ≥ 1, summing to exactly ``n_reviews``.

    Raises:
        ValueError: fewer reviews than anime.
    """
    if n_reviews < n_anime:
        raise ValueError(f"{n_reviews} reviews cannot give each of {n_anime} anime at least one")
    curve = ((np.arange(1, n_anime + 1) - 0.5) / n_anime + offset) ** -exponent

    def counts_at(scale: float) -> np.ndarray:
        return np.maximum(1, np.round(scale * curve)).astype(np.int64)

    low, high = 0.0, float(n_reviews) / curve.min()
    for _ in range(100):  # bisection on the scale; the rounding remainder goes to the head below
        middle = (low + high) / 2
        if counts_at(middle).sum() > n_reviews:
            high = middle
        else:
            low = middle
    counts = counts_at(low)
    remainder = n_reviews - int(counts.sum())
    counts[: abs(remainder)] += np.sign(remainder)
    return np.sort(counts)[::-1]


def choose_anime(records: Sequence[dict], n_anime: int) -> list[Anime]:
    """The ``n_anime`` anime with the most MAL members (most popular first; ids break ties), parsed as the
    importer parses them.

    Raises:
        ValueError: the metadata has fewer usable anime.
    """
    parsed = []
    for record in records:
        try:
            parsed.append(anime_from_json(record))
        except BadRow:  # the importer skips such rows too
            continue
    if len(parsed) < n_anime:
        raise ValueError(f"anime.jsonl has {len(parsed)} usable anime; {n_anime} were asked for")
    parsed.sort(key=lambda a: (-(a.members or -1), a.anime_id))
    return parsed[:n_anime]


# ---- sentences ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class SentencePools:
    """The distinct sentences the texts are made of, grouped by the real anime they came from."""

    sentences: list[str]
    #: Real anime ids, most reviewed first, and for each the rows of ``sentences`` from its reviews.
    sources: list[int]
    by_source: list[np.ndarray]


def sentence_pools(real: RealData, size: int) -> SentencePools:
    """Sample ``size`` distinct review sentences, keeping every source anime's vocabulary.

    Each real anime gets a quota proportional to the square root of its distinct sentences (water-filled, so
    anime with few sentences keep them all); the sample within a quota is fixed (seed 0), independent of the
    corpus seed, so the sentence table can be shared by corpora of any seed.
    """
    low, high = SENTENCE_CHARS
    per_anime: dict[int, dict[str, None]] = defaultdict(dict)
    for review in real.reviews:
        for sentence in split_sentences(review["text"]):
            if low <= len(sentence) <= high:
                per_anime[review["anime_id"]].setdefault(sentence)
    counts = Counter(r["anime_id"] for r in real.reviews)
    sources = sorted(per_anime, key=lambda a: (-counts[a], a))
    available = np.array([len(per_anime[a]) for a in sources])
    quotas = _water_fill(np.sqrt(available), available, min(size, int(available.sum())))
    rng = np.random.default_rng(0)
    seen: dict[str, int] = {}
    by_source = []
    for anime_id, quota in zip(sources, quotas, strict=True):
        candidates = list(per_anime[anime_id])
        picked = rng.choice(len(candidates), size=quota, replace=False) if quota < len(candidates) else range(quota)
        rows = [seen.setdefault(candidates[i], len(seen)) for i in sorted(picked)]
        by_source.append(np.array(sorted(set(rows)), dtype=np.int64))
    return SentencePools(sentences=list(seen), sources=sources, by_source=by_source)


def _water_fill(weights: np.ndarray, caps: np.ndarray, total: int) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``weights``, none above its cap, summing to ``total``."""
    shares = np.zeros(len(weights), dtype=np.int64)
    open_ = caps > 0
    while shares.sum() < total and open_.any():
        left = total - shares.sum()
        extra = np.floor(left * weights * open_ / (weights * open_).sum()).astype(np.int64)
        if extra.sum() == 0:  # hand the last few out one at a time, heaviest first
            extra[np.argsort(-weights * open_)[:left]] = 1
        shares = np.minimum(shares + extra * open_, caps)
        open_ = shares < caps
    return shares


def synopsis_sentences(anime: Sequence[Anime]) -> list[str]:
    """The first sentence of each anime's synopsis, exactly as the build will pass it to the encoder."""
    firsts = []
    for record in anime:
        sentences = split_sentences(synopsis_text(record.to_dict()))
        if sentences:
            firsts.append(sentences[0])
    return firsts


# ---- review generation -------------------------------------------------------------------------------
@dataclasses.dataclass
class GenerationPlan:
    """Everything that fixes the synthetic reviews (apart from the seed)."""

    anime: list[Anime]
    counts: np.ndarray
    pools: SentencePools
    templates: list[dict]
    n_reviews: int


def generate_reviews(plan: GenerationPlan, seed: int) -> Iterator[Review]:
    """The synthetic reviews, anime by anime (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    sentences = plan.pools.sentences
    n_pool = len(sentences)
    lengths = np.array([len(s) + 1 for s in sentences])
    n_sources = len(plan.pools.sources)
    numeric_ids = iter(rng.choice(10 * plan.n_reviews, size=plan.n_reviews, replace=False) + 1)
    templates = plan.templates
    # As many made-up handles per review as the real data has distinct usernames per review.
    usernames = [t["username"] for t in templates if t.get("username")]
    handle_count = max(1, round(plan.n_reviews * len(set(usernames)) / len(templates)))
    real_lengths = np.array([len(t["text"]) for t in templates])
    shortest, longest = int(real_lengths.min()), int(real_lengths.max())
    serial = 0
    for rank, (anime, count) in enumerate(zip(plan.anime, plan.counts, strict=True)):
        source = plan.pools.by_source[min(n_sources - 1, rank * n_sources // len(plan.anime))]
        for _ in range(int(count)):
            template = templates[rng.integers(len(templates))]
            target = int(np.clip(len(template["text"]) * np.exp(rng.normal(0.0, 0.15)), shortest, longest))
            rows = _fill_to_length(rng, source, n_pool, lengths, target)
            text = " ".join(sentences[i] for i in rows)
            username = None
            if template.get("username"):
                handle = int(rng.integers(handle_count))
                username = f"{_HANDLE_PARTS[handle % len(_HANDLE_PARTS)]}_{handle // len(_HANDLE_PARTS)}"
            if str(template["review_id"]).isdigit():
                review_id = str(next(numeric_ids))
            else:
                review_id = hashlib.sha1(f"{SOURCE}|{seed}|{serial}".encode()).hexdigest()
            serial += 1
            yield Review(review_id=review_id, anime_id=anime.anime_id, text=text, username=username,
                         date=template.get("date") or None, score=template.get("score"),
                         tags=list(template.get("tags") or []), source=SOURCE, anime_title=anime.title)


def _fill_to_length(rng: np.random.Generator, source: np.ndarray, n_pool: int, lengths: np.ndarray,
                    target: int) -> list[int]:
    """Sentence rows whose joined length is closest to ``target``: mostly from ``source`` (without repeats while
    it lasts), the rest from the whole pool."""
    expected = int(target / lengths.mean() * 2) + 4
    own = rng.permutation(source)[:expected] if len(source) else source
    from_source = rng.random(expected) < SOURCE_SHARE
    anywhere = rng.integers(n_pool, size=expected)
    rows: list[int] = []
    total, next_own = -1, 0
    for k in range(expected * 4):
        if k < expected and from_source[k] and next_own < len(own):
            row = int(own[next_own])
            next_own += 1
        else:
            row = int(anywhere[k % expected]) if k < expected else int(rng.integers(n_pool))
        grown = total + int(lengths[row])
        if rows and grown - target > target - total:  # stopping here is closer to the target than adding
            break
        rows.append(row)
        total = grown
        if total >= target:
            break
    return rows


# ---- the corpus --------------------------------------------------------------------------------------
@dataclasses.dataclass
class ScaleCorpus:
    """A built (or reused) reference-size corpus: the store, the encoder to index it with, and its numbers."""

    work_dir: Path
    store: Path
    encoder: ComposedEncoder
    reviews: int
    anime: int
    seed: int
    store_checksum: str
    #: Wall seconds per phase of this run (a reused phase costs the time to check it).
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Generator settings and the corpus's shape (per-anime counts, length quantiles, pool sizes).
    stats: dict = dataclasses.field(default_factory=dict)
    reused_store: bool = False
    #: What the encoder did while building the index last passed to :func:`build_scale_index` (recorded beside
    #: the index, so a reused index still reports it).
    index_composition: CompositionCounts | None = None

    @property
    def how_vectors_were_made(self) -> str:
        """One paragraph for a benchmark's output: how the vectors were made and what that means."""
        s, c = self.stats, self.index_composition or CompositionCounts()
        real_min = (self.encoder.table.encode_seconds + c.real_seconds) / 60
        built = (f"The index build composed {c.composed_passages:,} passage vectors and encoded {c.real_passages:,} "
                 "(no whole known sentence) for real" if self.index_composition
                 else "What the index build composed was not recorded")
        return (
            f"Vectors are composed, not encoded: {s.get('table_sentences', 0):,} distinct sentences "
            f"({s.get('pool_sentences', 0):,} sampled from the shared reviews, of which every review text is made, "
            f"and the first sentence of each of {s.get('synopsis_sentences', 0):,} synopses) were encoded once by "
            f"{self.encoder.name}; a passage's vector is the mean of its whole sentences' vectors"
            f"{' (re-normalised)' if self.encoder.normalize else ''}, fragments cut at chunk borders left out. "
            f"{built}; real encoding took {real_min:.1f} min of wall clock in all, when it was done. Queries are "
            "encoded by the real model. Load time, memory and latency measured on this corpus are real; retrieval "
            "quality on it means little (texts are shuffled sentences of other anime's reviews)."
        )


def build_scale_corpus(work_dir: str | Path, *, reviews: int = REFERENCE_REVIEWS, anime: int = REFERENCE_ANIME,
                       seed: int = 0, sentences: int = DEFAULT_SENTENCES, encoder: Encoder | None = None,
                       data_dir: str | Path = SHARED_DATA, encode_threads: int | None = None,
                       progress: bool = True) -> ScaleCorpus:
    """Build the synthetic store and the sentence table in ``work_dir``, or reuse them when already made so.

    Args:
        work_dir: where the store, the stamp and the sentence table live (outside git, or under ``data/``).
        reviews: synthetic reviews in all.
        anime: distinct anime (the most popular of ``anime.jsonl``).
        seed: fixes the reviews (counts, texts, metadata); the sentence sample does not depend on it.
        sentences: distinct review sentences the texts are made of (each is encoded once).
        encoder: the real encoder (default ``Encoder.load(None)``: the newest adapted model, else MiniLM).
        data_dir: the shared MAL data.
        encode_threads: torch threads while encoding the sentence table (default :func:`encoding_threads`).
        progress: show tqdm bars.

    Raises:
        FileNotFoundError: the shared data is missing.
        ValueError: impossible sizes (fewer reviews than anime, more anime than the metadata has).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    real = RealData.load(data_dir)
    exponent, offset = fit_rank_frequency(real.review_counts())
    chosen = choose_anime(real.anime, anime)
    pools = sentence_pools(real, sentences)
    firsts = synopsis_sentences(chosen)
    seconds["read_real_data"] = time.perf_counter() - started

    settings = {"generator_version": GENERATOR_VERSION, "reviews": reviews, "anime": anime, "seed": seed,
                "sentences": sentences, "data_sha256": real.digest}
    store_path = work_dir / STORE_FILE
    stamp_path = work_dir / STAMP_FILE
    stamp = _read_stamp(stamp_path)
    started = time.perf_counter()
    reused = bool(stamp and stamp.get("settings") == settings and store_path.exists())
    if reused:
        stats, checksum = stamp["stats"], stamp["store_checksum"]
    else:
        stamp_path.unlink(missing_ok=True)
        counts = review_counts(anime, reviews, exponent, offset)
        plan = GenerationPlan(chosen, counts, pools, real.reviews, reviews)
        lengths, checksum = _write_store(store_path, plan, seed, progress)
        stats = {
            "fit": {"exponent": exponent, "offset": offset},
            "counts": counts.tolist(),
            "length_quantiles": _quantiles(lengths),
            "pool_sentences": len(pools.sentences),
            "synopsis_sentences": len(firsts),
            "store_mib": store_path.stat().st_size / 2**20,
        }
        _write_stamp(stamp_path, {"settings": settings, "stats": stats, "store_checksum": checksum})
    seconds["store"] = time.perf_counter() - started

    encoder = encoder or Encoder.load(None)
    started = time.perf_counter()
    threads = encode_threads or encoding_threads()
    with torch_threads(threads):
        table, encoded_now, encode_seconds = SentenceTable.load_or_encode(
            SentenceTable.path_for(work_dir, encoder), encoder, pools.sentences + firsts, progress=progress)
    seconds["sentence_table"] = time.perf_counter() - started
    stats = {**stats, "table_sentences": len(table.sentences), "sentences_encoded_now": encoded_now,
             "sentence_encode_seconds": encode_seconds, "encode_threads": threads}
    return ScaleCorpus(work_dir=work_dir, store=store_path, encoder=ComposedEncoder(encoder, table),
                       reviews=reviews, anime=anime, seed=seed, store_checksum=checksum, seconds=seconds,
                       stats=stats, reused_store=reused)


def build_scale_index(corpus: ScaleCorpus, out: str | Path | None = None, *, index_type: str = "flat",
                      rebuild: bool = False, progress: bool = True, **build_options) -> Path:
    """The corpus's index directory, built by the project's ``build_index`` with the composed encoder.

    An index already at ``out`` built from this very store with this model and index type is reused unless
    ``rebuild``; the seconds spent land in ``corpus.seconds["index"]``.

    Args:
        corpus: from :func:`build_scale_corpus`.
        out: index directory (default ``<work_dir>/index-<index_type>``).
        index_type: see ``recommender.index.INDEX_TYPES``.
        rebuild: delete what is at ``out`` first.
        progress: show the build's tqdm bars.
        build_options: passed on to ``build_index`` (e.g. ``index_params``, ``shard_size``).
    """
    out = Path(out) if out else corpus.work_dir / f"index-{index_type}"
    started = time.perf_counter()
    if rebuild and out.exists():
        shutil.rmtree(out)
    record = out.with_name(out.name + ".composition.json")
    if _index_matches(out, corpus, index_type):
        recorded = _read_stamp(record)
        corpus.index_composition = CompositionCounts(**recorded) if recorded else None
    else:
        before = dataclasses.asdict(corpus.encoder.counts)
        build_index(corpus.store, out=out, index_type=index_type, encoder=corpus.encoder, progress=progress,
                    **build_options)
        after = dataclasses.asdict(corpus.encoder.counts)
        corpus.index_composition = CompositionCounts(**{k: after[k] - before[k] for k in after})
        _write_stamp(record, dataclasses.asdict(corpus.index_composition))
    corpus.seconds["index"] = time.perf_counter() - started
    return out


def _index_matches(out: Path, corpus: ScaleCorpus, index_type: str) -> bool:
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        return (manifest.get("format_version") == FORMAT_VERSION
                and manifest["store"]["checksum"] == corpus.store_checksum
                and manifest["index"]["type"] == index_type
                and manifest["model"]["sha256"] == corpus.encoder.sha256
                and manifest["model"].get("backend", "torch") == corpus.encoder.backend)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_store(path: Path, plan: GenerationPlan, seed: int, progress: bool) -> tuple[np.ndarray, str]:
    """Write the anime and the generated reviews into a fresh store at ``path`` (via a temporary file, so a
    killed run never leaves a half store behind); returns the review lengths and the store's checksum."""
    tmp = path.with_name(path.name + ".tmp")
    for leftover in (tmp, *(tmp.with_name(tmp.name + suffix) for suffix in ("-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    lengths = np.zeros(plan.n_reviews, dtype=np.int64)
    with Store.open(tmp) as store:
        store.upsert_anime(plan.anime)
        batch: list[Review] = []
        bar = tqdm(total=plan.n_reviews, desc="writing reviews", unit="review", disable=not progress)
        for i, review in enumerate(generate_reviews(plan, seed)):
            lengths[i] = len(review.text)
            batch.append(review)
            if len(batch) == 2000:
                store.upsert_reviews(batch)
                bar.update(len(batch))
                batch = []
        store.upsert_reviews(batch)
        bar.update(len(batch))
        bar.close()
        checksum = store.reviews_checksum()
    path.unlink(missing_ok=True)
    tmp.replace(path)
    return lengths, checksum


def _quantiles(lengths: np.ndarray) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(lengths, q)) for q in QUANTILES}


QUANTILES = (5, 25, 50, 75, 95, 99)


def _read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_stamp(path: Path, stamp: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stamp))
    tmp.replace(path)


# ---- command line ------------------------------------------------------------------------------------
def shape_tables(corpus: ScaleCorpus, real: RealData) -> str:
    """Markdown tables comparing the synthetic corpus's shape with the real data's."""
    synthetic = np.asarray(corpus.stats["counts"])
    real_counts = real.review_counts()

    def shape_row(label: str, counts: np.ndarray) -> list[str]:
        tenth = max(1, round(len(counts) / 10))
        return [label, f"{len(counts):,}", f"{counts.sum():,}", ", ".join(f"{c:,}" for c in counts[:10]),
                f"{np.median(counts):g}", f"{(counts == 1).mean():.0%}", f"{(counts >= 1000).sum():,}",
                f"{counts[:tenth].sum() / counts.sum():.0%}", f"{counts.max() / counts.mean():.1f}"]

    fit = corpus.stats["fit"]
    counts_table = markdown_table(
        ["corpus", "anime", "reviews", "top-10 reviews per anime", "median", "anime with 1", "anime with ≥ 1,000",
         "reviews of the top 10 % of anime", "max / mean"],
        [shape_row("real (shared)", real_counts), shape_row("synthetic", synthetic)])
    real_q = _quantiles(real.review_lengths())
    lengths_table = markdown_table(
        ["corpus", *(f"p{q} chars" for q in QUANTILES)],
        [["real (shared)", *(f"{real_q[f'p{q}']:,.0f}" for q in QUANTILES)],
         ["synthetic", *(f"{corpus.stats['length_quantiles'][f'p{q}']:,.0f}" for q in QUANTILES)]])
    return (f"Reviews per anime (fit: count ∝ (rank/N + {fit['offset']:.4f})^-{fit['exponent']:.3f}):\n\n"
            f"{counts_table}\n\nReview length:\n\n{lengths_table}")


def check_out_dir(out: Path) -> None:
    """Generated texts are MAL users' sentences: they must not land anywhere git would pick them up."""
    root = config.PROJECT_ROOT.resolve()
    resolved = out.resolve()
    if resolved.is_relative_to(root) and not resolved.is_relative_to(root / "data"):
        raise ValueError(f"--out {out} is inside the repository; use a directory outside it or under data/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(config.DATA_DIR / "scale"), help="work directory (default %(default)s)")
    parser.add_argument("--reviews", type=int, default=REFERENCE_REVIEWS)
    parser.add_argument("--anime", type=int, default=REFERENCE_ANIME)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sentences", type=int, default=DEFAULT_SENTENCES,
                        help="distinct review sentences to encode and build texts from (default %(default)s)")
    parser.add_argument("--model", default=None, help="encoder (default: newest adapted model, else MiniLM)")
    parser.add_argument("--index-type", default="flat", choices=INDEX_TYPES,
                        help="index type to build (default %(default)s)")
    parser.add_argument("--no-index", action="store_true", help="build the store and sentence table only")
    parser.add_argument("--rebuild-index", action="store_true", help="rebuild the index even if it matches")
    args = parser.parse_args(argv)
    if not 1 <= args.anime <= args.reviews or args.sentences < 1:
        parser.error("need --reviews >= --anime >= 1 and --sentences >= 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(args.out)
    print(f"scale_corpus: {' '.join(sys.argv[1:]) or '(defaults)'}; {load_average()}", flush=True)
    started = time.perf_counter()
    try:
        check_out_dir(out)
        encoder = Encoder.load(args.model)
        corpus = build_scale_corpus(out, reviews=args.reviews, anime=args.anime, seed=args.seed,
                                    sentences=args.sentences, encoder=encoder)
        index_dir = None
        if not args.no_index:
            index_dir = build_scale_index(corpus, index_type=args.index_type, rebuild=args.rebuild_index)
    except (FileNotFoundError, ValueError, RecommenderError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = time.perf_counter() - started
    real = RealData.load()
    print("\n" + shape_tables(corpus, real))
    rows = [[phase, f"{value:.1f}"] for phase, value in corpus.seconds.items()]
    rows.append(["total (incl. model load)", f"{total:.1f}"])
    print(f"\nPhases ({'store reused' if corpus.reused_store else 'store generated'}; {load_average()} at the end, "
          "machine shared):\n")
    print(markdown_table(["phase", "seconds"], rows))
    built = corpus.index_composition or CompositionCounts()
    facts = [["reviews", f"{corpus.reviews:,}"], ["anime", f"{corpus.anime:,}"],
             ["store MiB", f"{corpus.store.stat().st_size / 2**20:,.0f}"],
             ["distinct sentences in table", f"{corpus.stats['table_sentences']:,}"],
             ["sentences encoded this run", f"{corpus.stats['sentences_encoded_now']:,} in "
                                            f"{corpus.stats['sentence_encode_seconds']:.0f} s "
                                            f"({corpus.stats['encode_threads']} torch thread(s))"],
             ["index build: passages composed / encoded for real", f"{built.composed_passages:,} / "
                                                                   f"{built.real_passages:,}"],
             ["index build: chunk-border fragments skipped", f"{built.fragments_skipped:,}"],
             ["index build: token offsets composed / from the tokenizer", f"{built.composed_offsets:,} / "
                                                                         f"{built.real_offsets:,}"]]
    if index_dir is not None:
        manifest = json.loads((index_dir / MANIFEST).read_text())
        facts[2:2] = [["chunks", f"{manifest['counts']['chunks']:,}"],
                      ["index", f"{index_dir} ({manifest['index']['type']})"]]
    print("\n" + markdown_table(["", "value"], facts))
    print(f"\n{corpus.how_vectors_were_made}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
