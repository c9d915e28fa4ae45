"""Incremental build: an update after add / change / delete equals a full build; incompatible indexes are rebuilt
in full with their reason; a killed update keeps the old index; main.py rebuilds for a re-exported model."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from recommender import config
from recommender import index as index_module
from recommender.build import build_index, work_dir_for
from recommender.encoder import Encoder
from recommender.index import VectorIndex
from recommender.lexical import LexicalIndex
from recommender.search import Recommender
from scraping.models import Anime, Review
from scraping.store import Store
from tests.conftest import save_tiny_sentence_model

LONG = "A cook battles other students in food duels at an elite school. " * 12
BASE = {
    "r01": (1, "A bounty hunter crew drifts through space with a jazz soundtrack."),
    "r02": (2, "Two rival students refuse to confess their love first."),
    "r03": (3, "A detective hunts a killer who writes names in a notebook."),
    "r04": (4, "Friends go camping in winter and cook noodles by the lake."),
    "r05": (1, "The volleyball team of underdogs trains all summer."),
    "r06": (2, LONG),
    "r07": (3, "Robots, war and a boy who does not want to pilot. " * 9),
    "r08": (4, "A quiet slice of life about a tea shop."),
    "r09": (5, "A horror mystery in a dark school with a sad ending."),
}
SYNOPSES = {1: "Space cowboys hunt bounties.", 2: "Students fight with food.", 3: "A notebook kills.",
            4: "Camping with friends.", 5: "", 6: "A team of robots plays music."}
QUERIES = ["space jazz bounty hunters", "cozy camping friends", "dark horror school", "robots war pilot",
           "romance rival students", "cooking food duels", "volleyball team", "detective crime notebook",
           "tea shop", "music robots"]


def write_store(path, reviews: dict, synopses: dict):
    with Store.open(path) as store:
        store.upsert_anime([Anime(a, f"Show {a}", genres=["Drama"], synopsis=s or None) for a, s in synopses.items()])
        store.upsert_reviews([Review(rid, anime, text) for rid, (anime, text) in reviews.items()])
    return path


def edited(reviews: dict) -> dict:
    """BASE with two reviews added (one of an anime new to the index), one edited, one deleted."""
    after = dict(reviews)
    after["r10"] = (6, "Robots form a band and play jazz music in space. " * 8)
    after["r00"] = (4, "Camping friends cook a cozy hot pot.")  # sorts first: every later row moves
    after["r02"] = (2, "Two rival students finally confess their love at the festival.")
    del after["r08"]
    return after


def index_files(out):
    manifest = json.loads((out / "manifest.json").read_text())
    info = manifest["index"]
    return {
        "manifest": manifest,
        "chunks": pd.read_parquet(out / "chunks.parquet"),
        "row_ids": np.load(out / "vectors.ids.npy"),
        "vectors": VectorIndex.load(out, info["type"], info["params"], use_gpu=False).vectors(),
        "centroids": (np.load(out / "anime_vectors.ids.npy"), np.load(out / "anime_vectors.npy")),
        "synopses": (np.load(out / "synopsis_vectors.ids.npy"), np.load(out / "synopsis_vectors.npy")),
        "catalog": json.loads((out / "catalog.json").read_text()),
        "lexical": LexicalIndex.load(out / "lexical"),
    }


def assert_same_index(updated, full, encoder):
    a, b = index_files(updated), index_files(full)
    pd.testing.assert_frame_equal(a["chunks"], b["chunks"])  # same chunk ids per row, same spans
    assert np.array_equal(a["row_ids"], b["row_ids"])
    assert np.allclose(a["vectors"], b["vectors"], atol=1e-5)
    for key in ("centroids", "synopses"):
        assert np.array_equal(a[key][0], b[key][0])
        assert np.allclose(a[key][1], b[key][1], atol=1e-5)
    assert a["catalog"] == b["catalog"]
    for key in ("counts", "chunking", "index"):
        assert a["manifest"][key] == b["manifest"][key]
    assert a["manifest"]["search"]["doc_norm"] == pytest.approx(b["manifest"]["search"]["doc_norm"], abs=1e-6)
    for query in QUERIES:  # BM25 over chunks then synopses: identical postings, identical scores
        assert np.array_equal(a["lexical"].scores(query), b["lexical"].scores(query))
    ra, rb = Recommender.load(updated, encoder=encoder), Recommender.load(full, encoder=encoder)
    for query in QUERIES:
        x, y = ra.search(query, top_n=20, limit=5), rb.search(query, top_n=20, limit=5)
        assert [r.anime_id for r in x.results] == [r.anime_id for r in y.results]
        assert [[e.review_id for e in r.evidence] for r in x.results] == \
               [[e.review_id for e in r.evidence] for r in y.results]
        assert np.allclose([r.score for r in x.results], [r.score for r in y.results], atol=1e-4)


@pytest.fixture
def recorded(tiny_encoder, monkeypatch):
    """Every text the encoder embeds during the test."""
    texts: list[str] = []
    real = tiny_encoder.encode

    def encode(batch, **kwargs):
        texts.extend(batch)
        return real(batch, **kwargs)

    monkeypatch.setattr(tiny_encoder, "encode", encode)
    return texts


def test_update_after_add_change_delete_equals_a_full_build(tmp_path, tiny_encoder, recorded):
    before = write_store(tmp_path / "before.sqlite", BASE, SYNOPSES)
    out = tmp_path / "idx"
    first = build_index(before, out=out, encoder=tiny_encoder, progress=False)
    assert not first.incremental and first.new == first.chunks and first.reused == 0
    old_chunks = pd.read_parquet(out / "chunks.parquet")

    after_reviews, after_synopses = edited(BASE), {**SYNOPSES, 3: "A notebook that kills, and a detective."}
    after = write_store(tmp_path / "after.sqlite", after_reviews, after_synopses)
    recorded.clear()
    said: list[str] = []
    report = build_index(after, out=out, encoder=tiny_encoder, progress=False, say=said.append)

    assert said == [] and report.incremental
    chunks = pd.read_parquet(out / "chunks.parquet")
    per_review = chunks.groupby("review_id").size()
    assert report.new == per_review["r10"] + per_review["r00"] and per_review["r10"] > 1
    assert report.changed == per_review["r02"]
    assert report.deleted == int((old_chunks["review_id"] == "r08").sum())
    assert report.reused == report.chunks - report.new - report.changed
    assert report.reused == int(old_chunks["review_id"].isin(["r01", "r03", "r04", "r05", "r06", "r07", "r09"]).sum())
    # only the new and changed reviews' chunks and the new or edited synopses went through the model
    texts = {rid: text for rid, (_, text) in after_reviews.items()}
    embedded = {texts[r][s:e] for r, s, e in chunks.loc[chunks.review_id.isin(["r00", "r02", "r10"]),
                                                        ["review_id", "start", "end"]].itertuples(index=False)}
    assert sorted(recorded) == sorted(embedded | {after_synopses[3], after_synopses[6]})
    assert "new=" in report.summary() and f"reused={report.reused}" in report.summary()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["update"]["incremental"] and manifest["backend"] == "torch"

    full = build_index(after, out=tmp_path / "full", encoder=tiny_encoder, progress=False, full=True)
    assert not full.incremental and full.chunks == report.chunks
    assert_same_index(out, tmp_path / "full", tiny_encoder)


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda m: m["model"].update(sha256="0" * 64), "other model weights"),
    (lambda m: m.update(backend="onnx"), "onnx backend"),
    (lambda m: m["chunking"].update(overlap=5), "chunking"),
    (lambda m: m.update(format_version=1), "index format 1"),
])
def test_an_incompatible_index_is_rebuilt_in_full_with_its_reason(tmp_path, tiny_encoder, recorded, edit, expected):
    store = write_store(tmp_path / "s.sqlite", BASE, SYNOPSES)
    out = tmp_path / "idx"
    build_index(store, out=out, encoder=tiny_encoder, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    recorded.clear()
    said: list[str] = []
    report = build_index(store, out=out, encoder=tiny_encoder, progress=False, say=said.append)
    assert len(said) == 1 and expected in said[0] and said[0].startswith(f"rebuilding {out} in full:")
    assert not report.incremental and report.reused == 0 and report.new == report.chunks
    assert len(recorded) >= report.chunks  # every chunk embedded again
    assert json.loads((out / "manifest.json").read_text())["model"]["sha256"] == tiny_encoder.sha256


def test_nothing_changed_reuses_every_chunk_and_another_type_reindexes_without_embedding(tmp_path, tiny_encoder,
                                                                                        recorded):
    store = write_store(tmp_path / "s.sqlite", BASE, SYNOPSES)
    out = tmp_path / "idx"
    first = build_index(store, out=out, encoder=tiny_encoder, progress=False)
    recorded.clear()
    said: list[str] = []
    report = build_index(store, out=out, encoder=tiny_encoder, progress=False, index_type="hnsw", say=said.append)
    assert recorded == [] and said == [f"re-indexing {out} as hnsw (it was flat); embeddings are reused"]
    assert (report.new, report.changed, report.deleted, report.reused) == (0, 0, 0, first.chunks)
    assert json.loads((out / "manifest.json").read_text())["index"]["type"] == "hnsw"


def test_sq8_keeps_its_embeddings_for_updates(tmp_path, tiny_encoder, recorded, monkeypatch):
    monkeypatch.setattr(index_module, "MIN_IVF_VECTORS", 10)  # sq8 over a few dozen chunks
    before = write_store(tmp_path / "before.sqlite", BASE, SYNOPSES)
    out = tmp_path / "idx"
    build_index(before, out=out, encoder=tiny_encoder, progress=False, index_type="sq8")
    assert json.loads((out / "manifest.json").read_text())["index"]["type"] == "sq8"
    stored = np.load(out / "embeddings.npy")
    after = write_store(tmp_path / "after.sqlite", edited(BASE), SYNOPSES)
    report = build_index(after, out=out, encoder=tiny_encoder, progress=False, index_type="sq8")
    assert report.incremental and report.reused > 0
    build_index(after, out=tmp_path / "full", encoder=tiny_encoder, progress=False, index_type="sq8", full=True)
    updated, full = np.load(out / "embeddings.npy"), np.load(tmp_path / "full" / "embeddings.npy")
    assert np.allclose(updated, full, atol=1e-5)
    kept = pd.read_parquet(out / "chunks.parquet")["review_id"].eq("r01").to_numpy()
    assert np.array_equal(updated[kept], stored[:kept.sum()])  # r01's vectors (rows 0.. before) taken over as is

    (out / "embeddings.npy").unlink()  # an sq8 index without its vectors cannot be updated
    said: list[str] = []
    report = build_index(after, out=out, encoder=tiny_encoder, progress=False, index_type="sq8", say=said.append)
    assert not report.incremental and len(said) == 1 and "8-bit codes" in said[0]


def test_an_index_without_digests_is_updated_from_its_texts(tmp_path, tiny_encoder, recorded):
    before = write_store(tmp_path / "before.sqlite", BASE, SYNOPSES)
    out = tmp_path / "idx"
    build_index(before, out=out, encoder=tiny_encoder, progress=False)
    (out / "reviews.digests.npy").unlink()  # as written before digests existed
    recorded.clear()
    after = write_store(tmp_path / "after.sqlite", {**BASE, "r05": (1, "The volleyball team loses the final.")},
                        SYNOPSES)
    report = build_index(after, out=out, encoder=tiny_encoder, progress=False)
    assert report.incremental and (report.new, report.changed, report.deleted) == (0, 1, 0)
    assert recorded == ["The volleyball team loses the final."]
    assert (out / "reviews.digests.npy").exists()


def test_killed_update_keeps_the_old_index_and_resumes(tmp_path, tiny_encoder, monkeypatch):
    before = write_store(tmp_path / "before.sqlite", BASE, SYNOPSES)
    out = tmp_path / "idx"
    build_index(before, out=out, encoder=tiny_encoder, progress=False)
    files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    answer = Recommender.load(out, encoder=tiny_encoder).search("cozy camping", top_n=20).to_dict()["results"]

    after = write_store(tmp_path / "after.sqlite", edited(BASE), SYNOPSES)
    calls = {"n": 0}
    real = tiny_encoder.encode

    def dying(texts, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed in the second embedding shard
        return real(texts, **kwargs)

    monkeypatch.setattr(tiny_encoder, "encode", dying)
    with pytest.raises(KeyboardInterrupt):
        build_index(after, out=out, encoder=tiny_encoder, progress=False, shard_size=2)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    old = Recommender.load(out, encoder=tiny_encoder)
    assert old.search("cozy camping", top_n=20).to_dict()["results"] == answer
    assert len(list((work_dir_for(out) / "shards").glob("shard_*.npy"))) == 1

    monkeypatch.setattr(tiny_encoder, "encode", real)
    report = build_index(after, out=out, encoder=tiny_encoder, progress=False, shard_size=2)
    assert report.incremental and report.resumed_chunks == 2 and not work_dir_for(out).exists()
    build_index(after, out=tmp_path / "full", encoder=tiny_encoder, progress=False, full=True)
    assert_same_index(out, tmp_path / "full", tiny_encoder)


def test_cli_summary_line_and_full_flag(tmp_path, tiny_model_dir, capsys):
    from recommender.__main__ import main

    store = write_store(tmp_path / "s.sqlite", BASE, SYNOPSES)
    args = ["build", "--db", str(store), "--model", str(tiny_model_dir), "--out", str(tmp_path / "idx"), "-q"]
    assert main(args) == 0
    first = capsys.readouterr().out.strip().splitlines()
    assert len(first) == 1 and "built in full" in first[0] and "changed=0 deleted=0 reused=0" in first[0]
    assert main(args) == 0
    second = capsys.readouterr().out.strip().splitlines()
    chunks = json.loads((tmp_path / "idx" / "manifest.json").read_text())["counts"]["chunks"]
    assert second == [line for line in second if "updated" in line] and len(second) == 1
    assert f"new=0 changed=0 deleted=0 reused={chunks}" in second[0]
    assert main([*args, "--full"]) == 0
    assert "built in full" in capsys.readouterr().out


def test_console_rebuilds_for_a_model_reexported_under_the_same_name(tmp_path, tiny_encoder, monkeypatch):
    import main as console

    monkeypatch.setattr(config, "INDEX_ROOT", tmp_path / "index")
    db = write_store(tmp_path / "s.sqlite", BASE, SYNOPSES)
    out = io.StringIO()
    index_dir = console.ensure_default_index(db, tiny_encoder, out)
    assert "there is no index yet" in out.getvalue() and "built in full" in out.getvalue()
    assert console.rebuild_reason(index_dir, db, tiny_encoder) is None

    write_store(db, {"r11": (1, "Another space western with a jazz band.")}, {})
    out = io.StringIO()
    console.ensure_default_index(db, tiny_encoder, out)
    assert "the store's reviews changed" in out.getvalue() and "index updated" in out.getvalue()

    # the same name, other weights: rebuilt in full (it used to stop with "rebuild the index")
    reexported = save_tiny_sentence_model(tmp_path / "again" / tiny_encoder.name, seed=1)
    other = Encoder.load(str(reexported), device="cpu")
    assert other.name == tiny_encoder.name and other.sha256 != tiny_encoder.sha256
    assert "other model weights" in console.rebuild_reason(index_dir, db, other)
    out = io.StringIO()
    assert console.ensure_default_index(db, other, out) == index_dir
    assert "other model weights" in out.getvalue() and "built in full" in out.getvalue()
    assert Recommender.load(index_dir, encoder=other).search("space jazz", top_n=10).results

