"""GPL training: config validation, corpus sampling, negative merging, the eval curve (fast, no models)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from recommender.chunking import chunk_reviews
from scraping.models import Review
from training.config import STAGES, CorpusConfig, config_from_dict, load_config
from training.corpus import build_corpus, choose_eval_reviews, dedupe_passages, sample_positions
from training.errors import ConfigError
from training.evalcurve import best_row, curve_table, plot_curve, read_curve, write_curve
from training.gpl import interleave_negatives, latest_checkpoint, training_rows
from training.rundir import RunDir, SettingsChangedError

PROJECT = Path(__file__).resolve().parents[1]


# ---- config -------------------------------------------------------------------------------
def test_defaults_follow_the_gpl_paper_and_keep_tasb_cls_dot():
    run = config_from_dict({})
    assert run.models.generator == "BeIR/query-gen-msmarco-t5-base-v1"
    assert run.models.retrievers == ("sentence-transformers/msmarco-distilbert-base-v3",
                                     "sentence-transformers/msmarco-MiniLM-L-6-v3")
    assert run.models.cross_encoder == "cross-encoder/ms-marco-MiniLM-L-6-v2"
    assert (run.generate.queries_per_passage, run.train.batch_size, run.train.learning_rate,
            run.train.warmup_steps, run.train.max_seq_length) == (3, 32, 2e-5, 1000, 350)
    assert run.models.base == "sebastian-hofstaetter/distilbert-dot-tas_b-b256-msmarco"
    assert run.base_pooling_and_similarity() == ("cls", "dot")
    other = config_from_dict({"models": {"base": "some/cosine-model"}})
    assert other.base_pooling_and_similarity() == ("auto", "auto")  # keep whatever that model has
    explicit = config_from_dict({"models": {"pooling": "mean", "similarity": "cosine"}})
    assert explicit.base_pooling_and_similarity() == ("mean", "cosine")


@pytest.mark.parametrize("data, key", [
    ({"train": {"steps": 0}}, "train.steps"),
    ({"train": {"stpes": 10}}, "train.stpes"),
    ({"train": {"learning_rate": "fast"}}, "train.learning_rate"),
    ({"train": {"precision": "fp8"}}, "train.precision"),
    ({"models": {"pooling": "avg"}}, "models.pooling"),
    ({"models": {"retrievers": []}}, "models.retrievers"),
    ({"models": {"retrievers": "one"}}, "models.retrievers"),
    ({"generate": {"top_p": 0}}, "generate.top_p"),
    ({"generate": {"queries_per_passage": True}}, "generate.queries_per_passage"),
    ({"corpus": {"anime_ids": [1, "x"]}}, "corpus.anime_ids[1]"),
    ({"corpus": {"sample": -1}}, "corpus.sample"),
    ({"mine": {"negatives_per_query": 60, "top_k": 50}}, "mine.negatives_per_query"),
    ({"train": 5}, "[train]"),
    ({"stpes": 5}, "'stpes'"),
    ({"name": "../escape"}, "name"),
    ({"models": {"generator": "tiny:gpt"}}, "models.generator"),
])
def test_validation_errors_are_one_line_naming_the_key(data, key):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    message = str(caught.value)
    assert key in message
    assert "\n" not in message


def test_load_config_reports_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_cli_prints_a_config_error_as_one_line(tmp_path, capsys):
    from training.__main__ import main

    config = tmp_path / "run.toml"
    config.write_text("[train]\nbatch_size = 0\n")
    assert main(["gpl", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: train.batch_size must be >= 1, got 0"


def test_cli_overrides_are_validated(tmp_path):
    run = config_from_dict({"train": {"steps": 100}, "corpus": {"sample": 0}})
    changed = run.with_overrides(max_steps=7, sample=30)
    assert (changed.train.steps, changed.corpus.sample) == (7, 30)
    with pytest.raises(ConfigError, match="train.steps"):
        run.with_overrides(max_steps=0)


def test_stage_hash_changes_only_downstream_of_the_changed_setting():
    base = config_from_dict({})
    more_steps = config_from_dict({"train": {"steps": 99}})
    other_generator = config_from_dict({"models": {"generator": "my/t5"}})
    bigger_batch = config_from_dict({"generate": {"batch_size": 7}})  # speed only: same queries
    for stage in STAGES[:4]:
        assert base.stage_hash(stage) == more_steps.stage_hash(stage)
    assert base.stage_hash("train") != more_steps.stage_hash("train")
    assert base.stage_hash("corpus") == other_generator.stage_hash("corpus")
    assert all(base.stage_hash(s) != other_generator.stage_hash(s) for s in STAGES[1:])
    assert all(base.stage_hash(s) == bigger_batch.stage_hash(s) for s in STAGES)


def test_shipped_configs_are_valid():
    quick = load_config(PROJECT / "configs" / "gpl-quick.toml")
    full = load_config(PROJECT / "configs" / "gpl-full.toml")
    assert quick.models.base == "sentence-transformers/all-MiniLM-L6-v2"
    assert quick.models.generator.startswith("tiny:") and quick.models.cross_encoder.startswith("tiny:")
    assert full.models.base == "sebastian-hofstaetter/distilbert-dot-tas_b-b256-msmarco"
    assert full.base_pooling_and_similarity() == ("cls", "dot")
    assert full.models.generator == "BeIR/query-gen-msmarco-t5-base-v1"
    assert full.train.precision in ("auto", "bf16")


# ---- corpus -------------------------------------------------------------------------------
def _reviews():
    out = []
    for anime_id in range(1, 7):
        for k in range(anime_id):  # anime 1 has a single review
            out.append(Review(f"a{anime_id}-{k}", anime_id, f"Show {anime_id} review {k}: " + "word " * (5 + k)))
    return out


def test_eval_reviews_are_whole_anime_groups_with_queries_documents_and_two_splits():
    pairs = [(r.review_id, r.anime_id) for r in _reviews()]
    chosen = choose_eval_reviews(pairs, total=11, per_anime=4, seed=5)
    assert chosen == choose_eval_reviews(pairs, total=11, per_anime=4, seed=5)
    assert 4 <= len(chosen) <= 11
    anime_of = dict(pairs)
    frame = pd.DataFrame([(anime_of[r], role, split) for r, (role, split) in chosen.items()],
                         columns=["anime", "role", "split"])
    per_anime = frame.groupby("anime")
    assert per_anime.size().max() <= 4 and per_anime.size().min() >= 2  # groups, not scattered singles
    assert 1 not in per_anime.groups  # an anime with one review cannot be a known-item answer
    for _, group in per_anime:  # every anime asks at least one query and answers with at least one document
        assert set(group["role"]) == {"query", "document"} and group["split"].nunique() == 1
    splits = frame.groupby("split")["anime"].agg(set)
    assert set(splits.index) == {"selection", "report"} and not splits["selection"] & splits["report"]
    assert choose_eval_reviews(pairs, total=0, per_anime=3, seed=5) == {}


def test_dedupe_and_sample():
    rows = [("r1", 1, 0, "Same  text"), ("r2", 1, 0, "same text"), ("r3", 2, 0, "Same text"), ("r4", 2, 0, " ")]
    kept, dropped = dedupe_passages(rows)
    assert [r[0] for r in kept] == ["r1", "r2"] and dropped == 2  # whitespace-normalised exact duplicates
    first = sample_positions(100, 10, seed=3)
    assert list(first) == sorted(first) and len(set(first)) == 10
    assert (first == sample_positions(100, 10, seed=3)).all()
    assert (first != sample_positions(100, 10, seed=4)).any()
    assert len(sample_positions(5, 0, seed=3)) == 5


def _word_offsets(texts):
    import re

    return [[m.span() for m in re.finditer(r"\S+", t)] for t in texts]


def test_build_corpus_cuts_passages_like_the_index():
    reviews = _reviews()
    settings = CorpusConfig(eval_reviews=4, eval_per_anime=2, sample=0)
    built = build_corpus(reviews, _word_offsets, tokens_per_chunk=6, corpus=settings, seed=1, overlap=2)
    held = set(built.eval_reviews["review_id"])
    held_anime = set(built.eval_reviews["anime_id"])
    assert len(held) == 4 and built.held_out_anime == len(held_anime) == 2
    # Held-out anime are out of training whole: none of their reviews is a passage, chosen for evaluation or not.
    assert not held_anime & set(built.passages["anime_id"])
    train = [r for r in reviews if r.anime_id not in held_anime]
    expected = [(c.review_id, r.text[c.start:c.end].strip())
                for r in train for c in chunk_reviews([(r.review_id, r.anime_id, r.text)], _word_offsets, 6, 2)]
    expected = [e for i, e in enumerate(expected) if e[1] not in {x[1] for x in expected[:i]}]
    got = list(zip(built.passages["review_id"], built.passages["text"], strict=True))
    assert got == expected
    assert list(built.passages["passage_id"]) == list(range(len(got)))
    capped = build_corpus(reviews, _word_offsets, 6, CorpusConfig(eval_reviews=4, eval_per_anime=2, sample=5), 1, 2)
    assert len(capped.passages) == 5 and capped.sampled_out == len(got) - 5
    assert set(capped.passages["text"]) <= set(built.passages["text"])


# ---- mining, training rows, checkpoints --------------------------------------------------
def test_interleave_negatives_alternates_retrievers_and_dedupes():
    first = {0: [10, 11], 1: [20, 21], 2: [30]}
    second = {0: [10, 12], 1: [22, 23], 2: []}
    pairs = interleave_negatives([first, second], [0, 1, 2], per_query=2)
    assert pairs == [(0, 10), (0, 11), (1, 22), (1, 20), (2, 30)]
    assert interleave_negatives([first, second], [0], per_query=1) == [(0, 10)]


def test_training_rows_are_a_seeded_shuffle_capped_at_one_pass():
    frame = pd.DataFrame({"query_id": range(50), "margin": [float(i) for i in range(50)]})
    rows = training_rows(frame, steps=4, batch_size=5, seed=2)
    assert len(rows) == 20 and rows["query_id"].is_unique
    assert rows.equals(training_rows(frame, steps=4, batch_size=5, seed=2))
    assert len(training_rows(frame, steps=100, batch_size=5, seed=2)) == 50


def test_latest_checkpoint_ignores_unfinished_ones(tmp_path):
    assert latest_checkpoint(tmp_path / "none") is None
    for step, finished in ((5, True), (10, True), (15, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if finished:
            (folder / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path).name == "checkpoint-10"


# ---- evaluation curve ----------------------------------------------------------------------
def _row(step, mrr):
    return {"step": step, "queries": 20, "hit@1": mrr / 2, "hit@10": min(1.0, mrr * 1.5), "mrr@10": mrr,
            "macro_mrr@10": mrr, "seconds": 1.0}


def test_curve_round_trip_best_and_plot(tmp_path):
    path = tmp_path / "curve.csv"
    write_curve(path, [_row(0, 0.40), _row(100, 0.52), _row(200, 0.52), _row(100, 0.50)])
    rows = read_curve(path)
    assert [r["step"] for r in rows] == [0, 100, 200]
    assert math.isclose(rows[1]["mrr@10"], 0.50)  # a later row for the same step wins
    assert best_row(rows)["step"] == 200
    write_curve(path, [*rows, _row(300, 0.52)])
    assert best_row(read_curve(path))["step"] == 200  # a tie goes to the earlier checkpoint
    png = plot_curve(read_curve(path), tmp_path / "curve.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = curve_table(read_curve(path))
    assert "| 200 | 20 |" in table and table.count("\n") == 5


# ---- run directory ------------------------------------------------------------------------
def test_run_dir_keeps_partial_work_and_refuses_to_drop_work_of_other_settings(tmp_path):
    run_dir = RunDir(tmp_path)
    old, new = {"generate.top_p": 0.95, "seed": 1}, {"generate.top_p": 0.9, "seed": 1}
    stage = run_dir.begin("generate", "hash-a", old)
    (stage / "shard-00000.parquet").write_text("partial")
    run_dir.begin("generate", "hash-a", old)  # a resumed run of the same settings keeps its shards
    assert (stage / "shard-00000.parquet").exists()
    assert not run_dir.is_done("generate", "hash-a")
    with pytest.raises(SettingsChangedError, match=r"partial work .*generate.top_p: 0.95 -> 0.9"):
        run_dir.begin("generate", "hash-b", new)  # partial work is work: not dropped silently either
    run_dir.finish("generate", "hash-a", {"items": 3}, old)
    assert run_dir.is_done("generate", "hash-a") and not run_dir.is_done("generate", "hash-b")
    assert run_dir.done_info("generate")["items"] == 3
    with pytest.raises(SettingsChangedError) as refused:
        run_dir.begin("generate", "hash-b", new)
    assert "finished work" in str(refused.value) and "--restart-stage" in str(refused.value)
    assert "\n" not in str(refused.value) and run_dir.is_done("generate", "hash-a")
    run_dir.begin("generate", "hash-b", new, restart=True)  # asked for: nothing of the old run may leak in
    assert not (stage / "shard-00000.parquet").exists() and run_dir.done_info("generate") is None
    empty = run_dir.begin("label", "hash-c", {})  # a stage that never wrote anything restarts freely
    assert run_dir.begin("label", "hash-d", {}) == empty
