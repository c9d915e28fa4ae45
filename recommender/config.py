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

#: The packaged offline model; used when no adapted model exists under ``MODELS_DIR``.
FALLBACK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: The model a user with internet gets by name.
TASB_MODEL = "sebastian-hofstaetter/distilbert-dot-tas_b-b256-msmarco"

#: How many review chunks the query retrieves before aggregation (the reference console used 1500, its web 500).
DEFAULT_TOP_N = 500
MAX_TOP_N = 5000
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_AGGREGATION = "count"
MAX_QUERY_CHARS = 1000

#: Tokens shared by consecutive chunks of a long review, so a sentence cut at a border is whole in one of them.
CHUNK_OVERLAP_TOKENS = 32
ENCODE_BATCH_SIZE = 64
#: Chunks per saved embedding shard; a killed build loses at most this much work.
SHARD_SIZE = 2048
#: Evidence snippets per result and their length.
EVIDENCE_PER_RESULT = 3
SNIPPET_CHARS = 320
QUERY_CACHE_SIZE = 1024


def default_index_dir(model_name: str) -> Path:
    """Where ``build`` writes an index for ``model_name`` when no ``--out`` is given."""
    return INDEX_ROOT / Path(model_name.rstrip("/")).name
