"""A second copy of a run directory on slower, safer storage (Google Drive on Colab).

The run works on local disk; the mirror gets each stage when it finishes and the best
checkpoint while training, so a lost VM costs at most the stage that was running. A fresh
VM restores from the mirror what its local run directory lacks, then resumes as usual.

Nothing half-copied is ever used: a stage or checkpoint is copied into a hidden ``.partial``
folder and renamed into place only when complete, and a checkpoint carries ``SYNCED.json``
listing its files and sizes, checked before it is restored. Bulky, re-creatable files stay
local: the embedding cache of ``mine``, generation and label shards (their stage outputs hold
everything), and all checkpoints but the best.

Layout of the mirror: the run directory's own (``<stage>/…``, ``config.json``,
``overrides.json``, ``train/checkpoints/checkpoint-N``), plus ``model/`` for the exported model.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from training.config import STAGES
from training.rundir import OVERRIDES, STARTED, RunDir, write_json

log = logging.getLogger(__name__)

SYNCED = "SYNCED.json"
#: Parts of a stage folder that are not mirrored (re-creatable, large).
LOCAL_ONLY = {"mine": {"cache"}, "generate": {"shards"}, "label": {"shards"}, "train": {"checkpoints"}}
ROOT_FILES = ("config.json", OVERRIDES)


def _copy_into_place(source: Path, target: Path, ignore: set[str] = frozenset()) -> None:
    """Copy the folder ``source`` to ``target`` through ``.<name>.partial`` and a rename (replacing ``target``)."""
    partial = target.parent / f".{target.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, partial, ignore=lambda folder, names: [n for n in names if n in ignore
                                                                   and Path(folder) == source])
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _copy_file(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    shutil.copyfile(source, tmp)
    tmp.replace(target)


def _file_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != SYNCED}


def _complete(checkpoint: Path) -> bool:
    """A mirrored checkpoint whose every listed file is there with its size."""
    marker = checkpoint / SYNCED
    if not marker.exists():
        return False
    try:
        listed = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError):
        return False
    return bool(listed) and _file_sizes(checkpoint) == listed


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


class Mirror:
    """Push a run directory's finished work to ``root`` and restore it from there."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ---- push ------------------------------------------------------------------------------
    def push_root_files(self, run_dir: RunDir) -> None:
        for name in ROOT_FILES:
            if (run_dir.root / name).exists():
                _copy_file(run_dir.root / name, self.root / name)

    def push_stage(self, run_dir: RunDir, stage: str) -> None:
        """Copy a finished stage (without its local-only parts) into the mirror."""
        _copy_into_place(run_dir.stage(stage), self.root / stage, LOCAL_ONLY.get(stage, set()))

    def push_checkpoint(self, run_dir: RunDir, checkpoint: Path) -> None:
        """Copy one trainer checkpoint (the best so far) and the train stage's marker and curve; drop older ones."""
        checkpoint = Path(checkpoint)
        folder = self.root / "train" / "checkpoints"
        target = folder / checkpoint.name
        if not (target.exists() and _complete(target)):
            partial = folder / f".{checkpoint.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(checkpoint, partial)
            write_json(partial / SYNCED, {"files": _file_sizes(partial)})
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        for other in folder.glob("checkpoint-*"):
            if other != target:
                shutil.rmtree(other, ignore_errors=True)
        for name in (STARTED, "eval_curve.csv"):
            if (run_dir.stage("train") / name).exists():
                _copy_file(run_dir.stage("train") / name, self.root / "train" / name)

    def push_model(self, model_dir: Path) -> None:
        _copy_into_place(Path(model_dir), self.root / "model")

    # ---- restore ---------------------------------------------------------------------------
    def restore(self, run_dir: RunDir, hashes: dict[str, str]) -> list[str]:
        """Bring back what the local run directory lacks: stages finished with the current settings, then
        the mirrored checkpoint of an unfinished ``train`` stage.

        Args:
            run_dir: the local run directory.
            hashes: the current settings hash of every stage; a mirrored stage made with other
                settings is left where it is.

        Returns:
            What was restored, one short line each.
        """
        restored = []
        if not self.root.is_dir():
            return restored
        for name in ROOT_FILES:
            if (self.root / name).exists() and not (run_dir.root / name).exists():
                _copy_file(self.root / name, run_dir.root / name)
        for stage in STAGES:
            remote = RunDir(self.root).done_info(stage)
            if run_dir.is_done(stage, hashes[stage]) or not remote or remote.get("config_hash") != hashes[stage]:
                continue
            _copy_into_place(self.root / stage, run_dir.stage(stage))
            restored.append(f"{stage} (finished)")
        if not run_dir.is_done("train", hashes["train"]):
            restored += self._restore_checkpoint(run_dir, hashes["train"])
        return restored

    def _restore_checkpoint(self, run_dir: RunDir, train_hash: str) -> list[str]:
        started = self.root / "train" / STARTED
        if not started.exists() or json.loads(started.read_text()).get("config_hash") != train_hash:
            return []
        complete = [c for c in (self.root / "train" / "checkpoints").glob("checkpoint-*") if _complete(c)]
        if not complete:
            return []
        best = max(complete, key=_step)
        local = run_dir.stage("train") / "checkpoints"
        have = [c for c in local.glob("checkpoint-*") if (c / "trainer_state.json").exists()]
        if have and max(_step(c) for c in have) >= _step(best):
            return []
        local_started = run_dir.stage("train") / STARTED
        if local_started.exists() and json.loads(local_started.read_text()).get("config_hash") != train_hash:
            return []  # local partial work of other settings: the stage's own refusal speaks for it
        _copy_file(started, local_started)
        if (self.root / "train" / "eval_curve.csv").exists():
            _copy_file(self.root / "train" / "eval_curve.csv", run_dir.stage("train") / "eval_curve.csv")
        _copy_into_place(best, local / best.name)
        (local / best.name / SYNCED).unlink(missing_ok=True)
        return [f"train from {best.name}"]


def checkpoint_callback(mirror: Mirror, run_dir: RunDir):
    """A ``TrainerCallback`` that mirrors the best checkpoint (the newest when there is no evaluation) on save."""
    from transformers import TrainerCallback

    class MirrorBestCheckpoint(TrainerCallback):
        def __init__(self) -> None:
            self.last: str | None = None

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            checkpoint = state.best_model_checkpoint or str(Path(args.output_dir) / f"checkpoint-{state.global_step}")
            if checkpoint != self.last and Path(checkpoint).is_dir():
                try:
                    mirror.push_checkpoint(run_dir, Path(checkpoint))
                    self.last = checkpoint
                except OSError as exc:  # a full or unmounted Drive must not stop training
                    log.warning("could not mirror %s to %s: %s", checkpoint, mirror.root, exc)

    return MirrorBestCheckpoint()
