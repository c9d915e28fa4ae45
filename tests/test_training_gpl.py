"""GPL end to end on tiny random models: every stage's output, the export, skipping and resuming (CPU, offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scraping.models import Review
from scraping.store import Store
from training import evalcurve, gpl
from training.config import STAGES, config_from_dict
from training.gpl import run_gpl
from training.rundir import RunDir

pytestmark = pytest.mark.slow

# Our own fixture texts: twelve made-up shows, five short reviews each.
PREMISES = [
    "space bounty hunters who play jazz between jobs", "a volleyball team of misfits aiming for nationals",
    "a detective chasing a killer who leaves riddles", "friends camping by a frozen lake in winter",
    "giant robots in a war between colonies", "rival students at an elite cooking school",
    "a girl who travels back in time to save a friend", "a festival in a haunted mountain village",
    "an idol group that keeps losing members", "pirates looking for a legendary treasure",
    "a wandering samurai after the civil war", "a boy who can hear the voices of ghosts",
]
OPINIONS = [
    "I loved every minute and cried at the end.", "The middle drags but the finale lands hard.",
    "The music carries the quiet scenes.", "The cast grows up in ways that feel earned.",
    "Funny, warm and a little sad, like a good memory.",
]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpl-store") / "reviews.sqlite"
    with Store.open(path) as store:
        store.upsert_reviews([
            Review(f"g{a}-{k}", a + 1, f"This show is about {premise}. {OPINIONS[k]} Episode {k + 1} is the best.",
                   source="test")
            for a, premise in enumerate(PREMISES) for k in range(len(OPINIONS))])
    return path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from training.tiny import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny-models"))


def make_run(root, store_path, models, name="e2e"):
    return config_from_dict({
        "name": name, "seed": 3, "output_dir": str(root / "run"),
        "corpus": {"db": str(store_path), "min_chars": 10, "eval_reviews": 20, "eval_per_anime": 4},
        "models": {"base": models["bi-encoder"], "generator": models["t5"], "retrievers": [models["bi-encoder"]],
                   "cross_encoder": models["cross-encoder"]},
        "generate": {"max_query_tokens": 10, "batch_size": 8, "save_every": 16},
        "mine": {"top_k": 8, "batch_size": 32},
        "label": {"batch_size": 32, "save_every": 40},
        "train": {"steps": 12, "batch_size": 4, "warmup_steps": 2, "max_seq_length": 64, "eval_every": 6,
                  "eval_queries": 20},
        "export": {"dir": str(root / "model")},
    })


@pytest.fixture(scope="module")
def finished(tmp_path_factory, store_path, tiny_models):
    run = make_run(tmp_path_factory.mktemp("gpl-e2e"), store_path, tiny_models)
    infos = run_gpl(run, progress=False, device="cpu")
    return run, infos


def test_every_stage_writes_its_output_and_marker(finished):
    run, infos = finished
    assert [info["stage"] for info in infos] == list(STAGES)
    run_dir = RunDir(run.run_dir)
    for stage in STAGES:
        assert run_dir.is_done(stage, run.stage_hash(stage))

    passages = pd.read_parquet(run.run_dir / "corpus" / "passages.parquet")
    held = pd.read_parquet(run.run_dir / "corpus" / "eval_reviews.parquet")
    assert 30 <= len(passages) <= 120 and len(held) == 20
    assert not set(held["review_id"]) & set(passages["review_id"])

    queries = pd.read_parquet(run.run_dir / "generate" / "queries.parquet")
    assert queries["query_id"].is_unique and (queries["query"].str.len() > 0).all()
    assert queries.groupby("passage_id").size().max() <= 3
    assert set(queries["passage_id"]) == set(passages["passage_id"])

    triplets = pd.read_parquet(run.run_dir / "label" / "triplets.parquet")
    assert len(triplets) == infos[STAGES.index("mine")]["triplets"]
    assert (triplets["negative_id"] != triplets["positive_id"]).all()
    assert set(triplets["negative_id"]) <= set(passages["passage_id"])
    assert np.allclose(triplets["margin"], triplets["positive_score"] - triplets["negative_score"], atol=1e-5)
    assert triplets["margin"].std() > 0  # raw logits, not a constant

    curve = evalcurve.read_curve(run.run_dir / "train" / "eval_curve.csv")
    assert [row["step"] for row in curve] == [0, 6, 12]
    assert all(row["queries"] == 5 for row in curve)  # one held-out review of each of the five eval anime
    assert (run.run_dir / "train" / "eval_curve.png").stat().st_size > 1000
    train = infos[STAGES.index("train")]
    assert train["steps"] == 12 and train["before"]["step"] == 0 and train["best_step"] in (6, 12)


def test_export_is_a_model_the_index_builds_with_its_own_similarity(finished, store_path, tmp_path):
    from recommender.build import build_index
    from recommender.encoder import Encoder

    run, infos = finished
    loaded = Encoder.load(str(run.export_dir), device="cpu")
    assert (loaded.similarity, loaded.pooling, loaded.max_seq_length) == ("dot", "cls", 64)
    card = (run.export_dir / "README.md").read_text()
    assert "arXiv:2112.07577" in card and "before (base model)" in card and "after (best checkpoint)" in card
    assert json.loads((run.export_dir / "gpl_run.json").read_text())["config"]["name"] == run.name

    build_index(store_path, model=str(run.export_dir), out=tmp_path / "index", progress=False)
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["similarity"] == "dot" and manifest["normalized"] is False
    assert manifest["chunking"]["max_tokens"] == loaded.tokens_per_chunk == 62
    assert manifest["model"]["path"] == str(run.export_dir.resolve())


def test_a_second_invocation_skips_finished_stages(finished):
    run, infos = finished
    again = run_gpl(run, progress=False, device="cpu")
    assert all(info.get("skipped") for info in again)
    assert [info["finished_at"] for info in again] == [info["finished_at"] for info in infos]


def test_resume_after_interruptions_gives_the_same_outputs(finished, store_path, tiny_models, tmp_path, monkeypatch):
    reference, _ = finished
    run = make_run(tmp_path, store_path, tiny_models, name=reference.name)
    fired: set[str] = set()
    real_write = gpl.write_parquet

    def killed_after_first_shard(frame, path):
        stage = path.parent.parent.name
        if path.name == "shard-00001.parquet" and stage not in fired:
            fired.add(stage)
            raise KeyboardInterrupt(f"simulated kill in {stage}")
        real_write(frame, path)

    real_eval = evalcurve.KnownItemEvaluator.__call__

    def killed_at_step_12(self, model, output_path=None, epoch=-1, steps=-1):
        if steps == 12 and "train" not in fired:
            fired.add("train")
            raise KeyboardInterrupt("simulated kill in train")
        return real_eval(self, model, output_path=output_path, epoch=epoch, steps=steps)

    monkeypatch.setattr(gpl, "write_parquet", killed_after_first_shard)
    monkeypatch.setattr(evalcurve.KnownItemEvaluator, "__call__", killed_at_step_12)
    for stage in ("generate", "label", "train"):
        with pytest.raises(KeyboardInterrupt, match=stage):
            run_gpl(run, progress=False, device="cpu")
        assert not RunDir(run.run_dir).is_done(stage, run.stage_hash(stage))
    assert (run.run_dir / "train" / "checkpoints" / "checkpoint-6").is_dir()
    infos = run_gpl(run, progress=False, device="cpu")
    assert infos[STAGES.index("train")]["steps_run"] == 6  # resumed from checkpoint-6, not from scratch

    for stage, name in (("corpus", "passages.parquet"), ("generate", "queries.parquet"),
                        ("mine", "negatives.parquet"), ("label", "triplets.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(run.run_dir / stage / name),
                                      pd.read_parquet(reference.run_dir / stage / name))
    columns = ["step", "queries", "hit@1", "hit@10", "mrr@10"]
    assert ([[row[c] for c in columns] for row in evalcurve.read_curve(run.run_dir / "train" / "eval_curve.csv")]
            == [[row[c] for c in columns] for row in evalcurve.read_curve(reference.run_dir / "train" /
                                                                           "eval_curve.csv")])
    from safetensors.numpy import load_file

    resumed = load_file(str(run.run_dir / "train" / "checkpoints" / "checkpoint-12" / "model.safetensors"))
    straight = load_file(str(reference.run_dir / "train" / "checkpoints" / "checkpoint-12" / "model.safetensors"))
    base = load_file(str(Path(tiny_models["bi-encoder"]) / "model.safetensors"))
    assert resumed.keys() == straight.keys() == base.keys()
    assert any(not np.allclose(straight[key], base[key]) for key in base)  # training changed the weights
    for key in straight:
        assert np.allclose(resumed[key], straight[key], atol=1e-5), key


def test_eval_command_scores_a_model_and_reports_errors_in_one_line(finished, store_path, tmp_path, capsys):
    from training.__main__ import main

    run, infos = finished
    assert main(["eval", "--model", str(run.export_dir), "--db", str(store_path), "--max-queries", "12",
                 "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["similarity"] == "dot" and result["reviews"] == 60
    assert result["queries"] == 12 and 0.0 <= result["mrr@10"] <= 1.0
    assert main(["eval", "--model", str(run.export_dir), "--db", str(tmp_path / "missing.sqlite")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing.sqlite" in err
