"""Index build: directory layout and manifest, round trip against brute force, atomic publish, resume, checks."""

import json

import numpy as np
import pytest

from recommender.build import build_index, publish_directory, work_dir_for
from recommender.errors import EmptyCorpusError, IndexMismatchError, IndexNotFoundError
from recommender.search import Recommender
from scraping.models import Anime, Review
from scraping.store import Store

TEXTS = [
    "A bounty hunter crew drifts through space with a jazz soundtrack.",
    "Two rival students refuse to confess their love first.",
    "A detective hunts a killer who writes names in a notebook.",
    "Friends go camping in winter and cook noodles by the lake.",
    "The volleyball team of underdogs trains all summer.",
    "A cook battles other students in food duels at an elite school. " * 12,
    "Robots, war and a boy who does not want to pilot. " * 9,
    "A quiet slice of life about a tea shop.",
]


@pytest.fixture
def small_store(tmp_path):
    path = tmp_path / "small.sqlite"
    with Store.open(path) as store:
        store.upsert_anime([Anime(i + 1, f"Show {i + 1}", genres=["Drama"]) for i in range(4)])
        store.upsert_reviews([Review(f"r{i}", i % 4 + 1, text) for i, text in enumerate(TEXTS)])
    return path


def test_layout_manifest_and_round_trip(small_store, tmp_path, tiny_encoder):
    out = tmp_path / "idx"
    report = build_index(small_store, out=out, encoder=tiny_encoder, progress=False, shard_size=4)
    names = {p.name for p in out.iterdir()}
    assert {"index.faiss", "vectors.ids.npy", "chunks.parquet", "catalog.json", "manifest.json", "reviews.arrow",
            "lexical"} <= names
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dim"] == tiny_encoder.dim
    assert manifest["model"]["sha256"] == tiny_encoder.sha256
    assert manifest["similarity"] == "cosine" and manifest["normalized"] is True
    counts = manifest["counts"]
    assert (counts["reviews"], counts["chunks"], counts["anime"]) == (8, report.chunks, 4)
    assert report.chunks > 8  # the two long reviews were split, not truncated
    assert manifest["chunking"]["max_tokens"] == tiny_encoder.tokens_per_chunk

    rec = Recommender.load(out, encoder=tiny_encoder)
    # brute force: embed every chunk again and rank by inner product
    import pandas as pd

    chunks = pd.read_parquet(out / "chunks.parquet")
    texts = dict(zip([f"r{i}" for i in range(len(TEXTS))], TEXTS, strict=True))
    passages = [texts[r][s:e] for r, s, e in zip(chunks.review_id, chunks.start, chunks.end, strict=True)]
    vectors = tiny_encoder.encode(passages)
    query = tiny_encoder.encode_query("space jazz bounty hunters")
    brute = vectors @ query
    hits = rec.hits(["space jazz bounty hunters"], query[None, :], 10, aggregation="count")[0]
    # the index returns the 10 best rows (ties aside), each with its exact score, best first
    assert np.allclose([h.similarity for h in hits], np.sort(brute)[::-1][:10], atol=1e-5)
    assert np.allclose([brute[h.row] for h in hits], [h.similarity for h in hits], atol=1e-5)
    assert [h.rank for h in hits] == list(range(10))
    assert {h.review_id for h in hits} <= set(texts)


def test_crash_while_writing_keeps_the_old_index(small_store, tmp_path, tiny_encoder):
    out = tmp_path / "idx"
    build_index(small_store, out=out, encoder=tiny_encoder, progress=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def half_write(tmp):
        (tmp / "index.faiss").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_directory(out, half_write)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")] == []
    Recommender.load(out, encoder=tiny_encoder)  # still loads


def test_interrupted_swap_is_recovered(small_store, tmp_path, tiny_encoder):
    out = tmp_path / "idx"
    build_index(small_store, out=out, encoder=tiny_encoder, progress=False)
    out.rename(tmp_path / ".idx.old-999")  # as if the process died between the two renames
    assert Recommender.load(out, encoder=tiny_encoder).index.ntotal > 0


def test_killed_build_resumes_where_it_stopped(small_store, tmp_path, tiny_encoder, monkeypatch):
    reference = build_index(small_store, out=tmp_path / "ref", encoder=tiny_encoder, progress=False, shard_size=3)
    ref_vectors = np.load(tmp_path / "ref" / "anime_vectors.npy")

    calls = {"n": 0}
    real_encode = tiny_encoder.encode

    def dying_encode(texts, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during the third shard
        return real_encode(texts, **kwargs)

    out = tmp_path / "idx"
    monkeypatch.setattr(tiny_encoder, "encode", dying_encode)
    with pytest.raises(KeyboardInterrupt):
        build_index(small_store, out=out, encoder=tiny_encoder, progress=False, shard_size=3)
    assert not out.exists()
    assert len(list((work_dir_for(out) / "shards").glob("shard_*.npy"))) == 2
    monkeypatch.setattr(tiny_encoder, "encode", real_encode)

    resumed = build_index(small_store, out=out, encoder=tiny_encoder, progress=False, shard_size=3)
    assert resumed.resumed_chunks == 6
    assert resumed.chunks == reference.chunks
    assert np.allclose(np.load(out / "anime_vectors.npy"), ref_vectors, atol=1e-6)
    assert not work_dir_for(out).exists()


def test_changed_store_discards_stale_shards(small_store, tmp_path, tiny_encoder, monkeypatch):
    out = tmp_path / "idx"
    work = work_dir_for(out)
    real_encode = tiny_encoder.encode
    monkeypatch.setattr(tiny_encoder, "encode", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        build_index(small_store, out=out, encoder=tiny_encoder, progress=False)
    assert (work / "plan.json").exists()
    monkeypatch.setattr(tiny_encoder, "encode", real_encode)
    with Store.open(small_store) as store:
        store.upsert_reviews([Review("new", 1, "A brand new review about mecha.")])
    report = build_index(small_store, out=out, encoder=tiny_encoder, progress=False)
    assert report.resumed_chunks == 0 and report.reviews == 9


def test_empty_store(tmp_path, tiny_encoder):
    with pytest.raises(EmptyCorpusError):
        build_index(tmp_path / "empty.sqlite", out=tmp_path / "idx", encoder=tiny_encoder, progress=False)


def test_load_errors(small_store, tmp_path, tiny_encoder, minilm_encoder):
    with pytest.raises(IndexNotFoundError):
        Recommender.load(tmp_path / "missing", encoder=tiny_encoder)
    out = tmp_path / "idx"
    build_index(small_store, out=out, encoder=tiny_encoder, progress=False)
    with pytest.raises(IndexMismatchError, match="rebuild"):
        Recommender.load(out, encoder=minilm_encoder)
    (out / "chunks.parquet").unlink()
    with pytest.raises(IndexNotFoundError, match="incomplete"):
        Recommender.load(out, encoder=tiny_encoder)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format_version"] = 999
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="format"):
        Recommender.load(out, encoder=tiny_encoder)
