"""GPL runs that cannot lose work or publish a worse model, evaluation numbers with honest intervals, packaging.

Fast: the pipeline logic runs with stand-in stages; models are tiny and built here.
"""

from __future__ import annotations

import configparser
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_toml
from training import gpl
from training.__main__ import main
from training.config import STAGES, config_from_dict
from training.models import Hardware
from training.rundir import RunDir

PROJECT = Path(__file__).resolve().parents[1]
CPU = Hardware("cpu", "fp32")


# ---- stand-in stages: the run logic without models ------------------------------------------
@pytest.fixture
def fake_stages(monkeypatch):
    """Replace every stage by one that records its call and writes a file saying which settings made it."""
    calls: list[str] = []

    def make(stage):
        def run_stage(run, run_dir, *args):
            calls.append(stage)
            (run_dir.stage(stage) / "work.txt").write_text(f"steps={run.train.steps} lr={run.train.learning_rate}")
            if stage == "export":
                force = args[2]
                return {"items": 1, "seconds": 0.0, "published": force, "forced": force,
                        "model_dir": str(run_dir.stage(stage)), "publish_dir": str(run.export_dir)}
            return {"items": 1, "seconds": 0.0}
        return run_stage

    monkeypatch.setattr(gpl, "STAGE_FUNCTIONS", {stage: make(stage) for stage in STAGES})
    return calls


def _config(tmp_path, **train):
    return write_toml(tmp_path / "run.toml", {"name": "safety", "output_dir": str(tmp_path / "run"),
                                              "train": {"steps": 100, **train}})


def _gpl(config, *extra):
    return main(["gpl", "--config", str(config), "-q", "--device", "cpu", *extra])


def test_cli_overrides_are_kept_with_the_run_so_a_later_stage_keeps_the_training(tmp_path, fake_stages, capsys):
    config = _config(tmp_path)
    assert _gpl(config, "--max-steps", "5", "--stage", "train") == 0
    assert fake_stages == list(STAGES[:-1])
    work = tmp_path / "run" / "train" / "work.txt"
    assert work.read_text().startswith("steps=5")
    assert json.loads((tmp_path / "run" / "overrides.json").read_text()) == {"max_steps": 5}
    fake_stages.clear()
    capsys.readouterr()
    assert _gpl(config, "--stage", "export") == 0  # no --max-steps this time
    assert fake_stages == ["export"]  # train is finished with the stored override: kept, not redone
    assert work.read_text().startswith("steps=5")
    assert "using the overrides stored with this run: --max-steps 5" in capsys.readouterr().err
    fake_stages.clear()
    assert _gpl(config, "--max-steps", "7", "--restart-stage") == 0  # a new value replaces the stored one
    assert fake_stages == ["train", "export"] and work.read_text().startswith("steps=7")


def test_changed_settings_refuse_naming_the_keys_and_keep_the_work_unless_restart(tmp_path, fake_stages, capsys):
    assert _gpl(_config(tmp_path, learning_rate=2e-5)) == 0
    work = tmp_path / "run" / "train" / "work.txt"
    before = work.read_text()
    fake_stages.clear()
    capsys.readouterr()
    changed = _config(tmp_path, learning_rate=3e-5)
    assert _gpl(changed) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: stage train holds finished work")
    assert "train.learning_rate: 2e-05 -> 3e-05" in err and "--restart-stage" in err
    assert fake_stages == [] and work.read_text() == before
    assert _gpl(changed, "--restart-stage") == 0
    assert fake_stages == ["train", "export"] and "lr=3e-05" in work.read_text()


def test_force_export_publishes_a_model_the_guard_held_back(tmp_path, fake_stages, capsys):
    config = _config(tmp_path)
    assert _gpl(config) == 0
    out = capsys.readouterr().out
    assert "NOT published" in out.splitlines()[-1] and "--force-export" in out.splitlines()[-1]
    fake_stages.clear()
    assert _gpl(config, "--force-export") == 0
    assert fake_stages == ["export"]
    assert RunDir(tmp_path / "run").done_info("export")["published"] is True
    assert "published to" in capsys.readouterr().out.splitlines()[-1]


def test_a_fresh_machine_resumes_from_the_mirror_without_redoing_finished_stages(tmp_path, fake_stages):
    import shutil

    config = _config(tmp_path)
    mirror = tmp_path / "drive"
    assert _gpl(config, "--mirror", str(mirror), "--stage", "label") == 0
    assert (mirror / "label" / "DONE.json").exists() and (mirror / "config.json").exists()
    shutil.rmtree(tmp_path / "run")  # the VM is gone, its local disk with it
    fake_stages.clear()
    assert _gpl(config, "--mirror", str(mirror)) == 0
    assert fake_stages == ["train", "export"]  # corpus … label came back from the mirror
    assert (tmp_path / "run" / "generate" / "work.txt").exists() and (mirror / "export" / "DONE.json").exists()


def test_shard_sizes_are_settings_of_their_stage():
    base = config_from_dict({})
    for section in ("generate", "label"):
        changed = config_from_dict({section: {"save_every": 7}})
        assert base.stage_hash(section) != changed.stage_hash(section), section
        assert base.stage_hash("corpus") == changed.stage_hash("corpus")
    assert "generate.save_every" in base.stage_settings("generate")


# ---- the mirror (Google Drive on Colab) -----------------------------------------------------
def _fake_checkpoint(folder: Path, step: int) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(os.urandom(2048))
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return checkpoint


def test_mirror_restores_finished_stages_and_only_a_completely_copied_checkpoint(tmp_path):
    from training.mirror import Mirror

    run = config_from_dict({"output_dir": str(tmp_path / "local")})
    hashes = {stage: run.stage_hash(stage) for stage in STAGES}
    local, mirror = RunDir(tmp_path / "local"), Mirror(tmp_path / "drive")
    for stage in ("corpus", "generate"):
        local.begin(stage, hashes[stage], run.stage_settings(stage))
        (local.stage(stage) / "out.parquet").write_text(stage)
        (local.stage(stage) / "shards").mkdir()
        (local.stage(stage) / "shards" / "shard-00000.parquet").write_text("bulky")
        local.finish(stage, hashes[stage], {"items": 1})
        mirror.push_stage(local, stage)
    local.begin("train", hashes["train"], run.stage_settings("train"))
    mirror.push_checkpoint(local, _fake_checkpoint(local.stage("train") / "checkpoints", 10))
    mirror.push_checkpoint(local, _fake_checkpoint(local.stage("train") / "checkpoints", 20))
    assert [p.name for p in (tmp_path / "drive" / "train" / "checkpoints").iterdir()] == ["checkpoint-20"]
    assert not (tmp_path / "drive" / "generate" / "shards").exists()  # re-creatable bulk stays local

    fresh = RunDir(tmp_path / "fresh-vm")
    restored = mirror.restore(fresh, hashes)
    assert restored == ["corpus (finished)", "generate (finished)", "train from checkpoint-20"]
    assert fresh.is_done("generate", hashes["generate"]) and (fresh.stage("generate") / "out.parquet").exists()
    copied = fresh.stage("train") / "checkpoints" / "checkpoint-20" / "model.safetensors"
    assert copied.read_bytes() == (local.stage("train") / "checkpoints" / "checkpoint-20" /
                                   "model.safetensors").read_bytes()
    fresh.begin("train", hashes["train"], run.stage_settings("train"))  # the same settings: the checkpoint stays
    assert copied.exists()

    # A VM lost while uploading: the half-copied checkpoint (one file short) is not used.
    half = tmp_path / "drive" / "train" / "checkpoints" / "checkpoint-20" / "model.safetensors"
    half.write_bytes(half.read_bytes()[:100])
    assert mirror.restore(RunDir(tmp_path / "another-vm"), hashes) == ["corpus (finished)", "generate (finished)"]
    other = config_from_dict({"output_dir": str(tmp_path / "x"), "corpus": {"min_chars": 5}})
    assert mirror.restore(RunDir(tmp_path / "other-settings"), {s: other.stage_hash(s) for s in STAGES}) == []


# ---- evaluation statistics ------------------------------------------------------------------
def test_paired_bootstrap_intervals():
    from training.evalcurve import paired_bootstrap, reciprocal_ranks

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 5)
    same = rng.random(200)
    result = paired_bootstrap(same, same, groups, resamples=2000)
    assert result["difference"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    low, high = result["before"]["low"], result["before"]["high"]
    assert low < same.mean() < high and high - low < 0.2
    shifted = paired_bootstrap(same, same + 0.05, groups, resamples=2000)["difference"]
    assert shifted["low"] == pytest.approx(0.05) and shifted["high"] == pytest.approx(0.05)
    # Coverage: the 95 % interval of a noisy zero-mean difference holds 0 about 95 % of the time.
    covered = 0
    for trial in range(60):
        noise = np.random.default_rng(trial).normal(0, 0.3, 200)
        d = paired_bootstrap(same, same + noise, groups, resamples=500, seed=trial)["difference"]
        covered += d["low"] <= 0 <= d["high"]
    assert covered >= 51  # 85 %: loose for 60 trials, but fails for a badly narrow interval
    # Brute force: one resample of anime, by hand.
    draw = np.random.default_rng(7).integers(0, 40, size=(1, 40))
    expected = np.concatenate([same[groups == g] for g in draw[0]]).mean()
    picked = paired_bootstrap(same, same, groups, resamples=1, seed=7)["before"]
    assert picked["low"] == pytest.approx(expected) and picked["high"] == pytest.approx(expected)
    assert list(reciprocal_ranks([1, 2, None, 11, 10])) == [1.0, 0.5, 0.0, 0.0, 0.1]


def test_guard_verdict_needs_the_whole_interval_above_zero():
    from recommender.evaluate import KnownItemQuery
    from training.evalcurve import before_after

    queries = [KnownItemQuery(f"q{i}", anime_id=i % 20, review_id=f"r{i}") for i in range(200)]
    base = [(i % 7) + 1 for i in range(200)]
    better = [max(1, r - 1) for r in base]
    noisy = [r + (1 if i % 2 else -1) if r > 1 else r for i, r in enumerate(base)]
    wins = before_after(base, better, queries, seed=1, max_seq_length=350)
    assert wins["beats_base"] and wins["difference"]["low"] > 0 and wins["queries"] == 200
    assert wins["max_seq_length"] == 350
    assert not before_after(base, noisy, queries, seed=1, max_seq_length=350)["beats_base"]
    assert not before_after(base, base, queries, seed=1, max_seq_length=350)["beats_base"]


def test_default_encoder_is_only_an_adapted_model_that_beat_its_base(tmp_path):
    from recommender.encoder import newest_adapted_model

    def model(name, record, mtime):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "modules.json").write_text("[]")
        if record is not None:
            (folder / "gpl_run.json").write_text(json.dumps(record))
        os.utime(folder / "modules.json", (mtime, mtime))

    model("winner", {"beats_base": True}, 1_000)
    model("forced-loser", {"beats_base": False, "published": True, "forced": True}, 2_000)
    model("no-record", None, 3_000)
    assert newest_adapted_model(tmp_path).name == "winner"
    model("newer-winner", {"beats_base": True}, 4_000)
    assert newest_adapted_model(tmp_path).name == "newer-winner"
    assert newest_adapted_model(tmp_path / "none") is None


# ---- GPL details ----------------------------------------------------------------------------
def test_cross_encoder_reads_query_and_passage_each_cut_to_the_training_length(tmp_path):
    import torch
    from sentence_transformers import CrossEncoder

    from training.models import clip_to_tokens, load_cross_encoder
    from training.tiny import save_tiny_cross_encoder

    path = save_tiny_cross_encoder(tmp_path / "ce")
    run = config_from_dict({"models": {"cross_encoder": str(path)}, "train": {"max_seq_length": 32}})
    cross_encoder = load_cross_encoder(run, CPU)
    query = "which anime has a detective chasing a murder mystery in the city"
    passage = " ".join(["the detective story was dark and slow but the ending was great"] * 4)
    q, p = clip_to_tokens(cross_encoder.tokenizer, [query, passage], 32)
    count = len(cross_encoder.tokenizer(p, add_special_tokens=False)["input_ids"])
    assert q == query and passage.startswith(p) and p != passage and count == 32
    identity = torch.nn.Identity()

    def scores(max_length):
        reference = CrossEncoder(str(path), max_length=max_length, device="cpu", local_files_only=True)
        return reference.predict([(q, p)], activation_fn=identity, convert_to_numpy=True)

    got = gpl.score_pairs(cross_encoder, [(q, p)], batch_size=4)
    assert np.allclose(got, scores(512), atol=1e-5)  # the pair is read whole (≈ 46 tokens) ...
    assert not np.allclose(got, scores(32), atol=1e-5)  # ... not cut at the training length


def test_mining_spreads_over_every_gpu_when_there_are_several(tmp_path, monkeypatch):
    import sentence_transformers.util
    import torch
    from datasets import Dataset

    seen = {}

    def fake_mine(dataset, model, **kwargs):
        seen.update(kwargs)
        return Dataset.from_dict({"query": list(dataset["query"]), "positive": list(dataset["positive"]),
                                  "negative_1": [kwargs["corpus"][-1]] * len(dataset)})

    monkeypatch.setattr(sentence_transformers.util, "mine_hard_negatives", fake_mine)
    monkeypatch.setattr(gpl, "load_bi_encoder", lambda *a, **k: object())
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    run = config_from_dict({"output_dir": str(tmp_path), "models": {"retrievers": ["a", "b"]}})
    run_dir = RunDir(tmp_path)
    for stage, frame in (("corpus", pd.DataFrame({"passage_id": [0, 1, 2], "text": ["x one", "y two", "z three"]})),
                         ("generate", pd.DataFrame({"query_id": [0, 1], "passage_id": [0, 1],
                                                    "query": ["q one", "q two"]}))):
        run_dir.stage(stage).mkdir(parents=True)
        frame.to_parquet(run_dir.stage(stage) / ("passages.parquet" if stage == "corpus" else "queries.parquet"))
    run_dir.stage("mine").mkdir()
    gpl.stage_mine(run, run_dir, Hardware("cuda", "bf16"), progress=False)
    assert seen["use_multi_process"] == ["cuda:0", "cuda:1"]
    assert Path(seen["cache_folder"]).name == "retriever-1"  # and each retriever its own cache


def test_data_loader_workers_follow_the_cpu_count():
    from training.models import dataloader_workers

    assert dataloader_workers("cuda", cpus=12, processes=1) == 8
    assert dataloader_workers("cuda", cpus=12, processes=4) == 2
    assert dataloader_workers("cuda", cpus=4, processes=1) == 3
    assert dataloader_workers("cuda", cpus=1, processes=1) == 0
    assert dataloader_workers("cpu", cpus=64, processes=1) == 0  # the cores are training


# ---- packaging ------------------------------------------------------------------------------
def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(PROJECT / "setup.cfg")
    return parser


def _requirements(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def test_python_floor_matches_the_standard_library_the_code_uses():
    cfg = _setup_cfg()
    floor = tuple(int(x) for x in re.fullmatch(r">=\s*(\d+)\.(\d+)", cfg["options"]["python_requires"]).groups())
    requirements = _requirements(cfg["options"]["install_requires"])
    uses_tomllib = any("import tomllib" in p.read_text() for p in (PROJECT / "training").glob("*.py"))
    if uses_tomllib and floor < (3, 11):
        assert any(r.startswith("tomli") and "python_version" in r for r in requirements), \
            "tomllib is Python 3.11+: raise python_requires or add tomli for older Pythons"
    pyproject = (PROJECT / "pyproject.toml").read_text()
    target = re.search(r'target-version = "py3(\d+)"', pyproject).group(1)
    assert int(target) == floor[1]  # ruff checks the syntax of the oldest supported Python


def test_faiss_comes_from_exactly_one_provider_extra():
    cfg = _setup_cfg()
    base = _requirements(cfg["options"]["install_requires"])
    extras = {name: _requirements(value) for name, value in cfg["options.extras_require"].items()}
    providers = {name: [r for r in reqs if r.startswith("faiss")] for name, reqs in extras.items()}
    assert not [r for r in base if r.startswith("faiss")], "faiss-cpu in install_requires would sit beside faiss-gpu"
    assert [r.split(">")[0].split("=")[0] for r in providers["cpu"]] == ["faiss-cpu"]
    assert [r.split(">")[0].split("=")[0] for r in providers["gpu"]] == ["faiss-gpu-cu12"]
    assert all(not found for name, found in providers.items() if name not in ("cpu", "gpu"))
    ci = (PROJECT / ".ci" / "run").read_text()
    assert re.search(r'pip install -q -e "\.\[cpu,', ci)
    readme = (PROJECT / "README.md").read_text()
    assert '".[cpu,dev,train]"' in readme and '".[gpu,train]"' in readme
