"""The run directory: one folder per stage, a done-marker carrying the config hash, atomic file writes.

Layout of ``data/gpl/<run>/``::

    config.json            the resolved configuration of the last invocation
    overrides.json         command-line overrides (--max-steps, --sample) that later invocations reuse
    corpus/  passages.parquet eval_reviews.parquet DONE.json
    generate/ shards/shard-00000.parquet …  queries.parquet DONE.json
    mine/    cache/retriever-<i>/ retriever-<i>.parquet …  negatives.parquet DONE.json
    label/   shards/ …  triplets.parquet DONE.json
    train/   checkpoints/ best/ eval_curve.csv eval_curve.png report.json DONE.json
    export/  DONE.json  model/ (only when held back: a published model goes to data/models/<name>/)

A stage whose ``DONE.json`` holds the current hash is skipped. Finished or partial work of a
stage made with other settings is never deleted silently: :meth:`RunDir.begin` refuses, naming
the settings that differ, unless the caller asks to restart the stage (``--restart-stage``);
then the old work is wiped first, so leftovers of an old configuration never mix into new outputs.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd

from training.config import settings_diff
from training.errors import StageError

DONE = "DONE.json"
STARTED = "STARTED.json"
OVERRIDES = "overrides.json"


class SettingsChangedError(StageError):
    """A stage holds work made with other settings; the message names the settings that differ."""


class RunDir:
    """Paths and markers of one GPL run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def stage(self, name: str) -> Path:
        return self.root / name

    def done_info(self, name: str) -> dict | None:
        """The done-marker of a stage, or None."""
        path = self.stage(name) / DONE
        return json.loads(path.read_text()) if path.exists() else None

    def is_done(self, name: str, config_hash: str) -> bool:
        info = self.done_info(name)
        return info is not None and info.get("config_hash") == config_hash

    def begin(self, name: str, config_hash: str, settings: dict | None = None, *, restart: bool = False) -> Path:
        """Prepare a stage directory for (re)running: keep partial work of the same settings.

        Work made with other settings (finished, or partial: shards, checkpoints) is only
        wiped when ``restart`` is true; otherwise this refuses and names the differing settings.

        Raises:
            SettingsChangedError: the stage holds work of other settings and ``restart`` is false.
        """
        directory = self.stage(name)
        started = directory / STARTED
        if directory.exists():
            marker = directory / DONE if (directory / DONE).exists() else started
            previous = json.loads(marker.read_text()) if marker.exists() else {}
            same = previous.get("config_hash") == config_hash
            has_work = any(path.name != STARTED for path in directory.iterdir())
            if has_work and not same and not restart:
                raise SettingsChangedError(_refusal(name, previous, settings, marker.name == DONE))
            if not same or (directory / DONE).exists():
                shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json(started, {"config_hash": config_hash, "settings": settings or {}, "started_at": _now()})
        return directory

    def finish(self, name: str, config_hash: str, info: dict, settings: dict | None = None) -> dict:
        """Write the done-marker (last, so a crash before it leaves the stage unfinished)."""
        payload = {"stage": name, "config_hash": config_hash, "finished_at": _now(), **info,
                   "settings": settings or {}}
        write_json(self.stage(name) / DONE, payload)
        return payload

    # ---- command-line overrides ------------------------------------------------------------
    def overrides(self) -> dict:
        """The overrides stored by earlier invocations (``{}`` when none)."""
        path = self.root / OVERRIDES
        return json.loads(path.read_text()) if path.exists() else {}

    def save_overrides(self, overrides: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.root / OVERRIDES, overrides)


def _refusal(name: str, previous: dict, settings: dict | None, finished: bool) -> str:
    state = "finished" if finished else "partial"
    recorded = previous.get("settings")
    if recorded and settings is not None:
        diff = settings_diff(recorded, settings)
        changes = "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in diff.items())
    else:
        changes = "settings not recorded (made by an older version)"
    return (f"stage {name} holds {state} work made with other settings ({changes}); it is kept. "
            f"Run with the same settings, or add --restart-stage to redo {name} and the stages after it")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, payload: dict) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write a parquet file atomically (a killed run never leaves a truncated shard that looks finished)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
