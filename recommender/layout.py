"""What an index directory holds: its format version and file names (written by ``build``, read by serving)."""

#: The index format this code writes and reads. 2: reviews in a memory-mapped Arrow file, the BM25 index built at
#: index time, search settings in the manifest (files added since, e.g. review digests, are optional to readers).
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
CHUNKS = "chunks.parquet"
REVIEWS = "reviews.arrow"
#: bm25s's files (postings memory-mapped at load) over every chunk, then every synopsis.
LEXICAL_DIR = "lexical"
CATALOG = "catalog.json"
ROW_IDS = "vectors.ids.npy"
ANIME_VECTORS = "anime_vectors.npy"
ANIME_VECTOR_IDS = "anime_vectors.ids.npy"
#: One embedded synopsis per anime that has one: an extra document of that anime at query time.
SYNOPSIS_VECTORS = "synopsis_vectors.npy"
SYNOPSIS_IDS = "synopsis_vectors.ids.npy"
#: Digest of every review's text (review order), so an update finds edited reviews without reading old texts.
REVIEW_DIGESTS = "reviews.digests.npy"
#: Full-precision chunk vectors, row for row, written only beside an index that keeps no copy of them (``sq8``
#: stores 8-bit codes): an update reuses them instead of re-embedding. Serving never reads this file.
EMBEDDINGS = "embeddings.npy"
