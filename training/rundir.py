"""The run directory: one folder per stage, a done-marker carrying the config hash, atomic file writes.

Layout of ``data/gpl/<run>/``::

    config.json            the resolved configuration of the last invocation
    corpus/  passages.parquet eval_reviews.parquet DONE.json
    generate/ shards/shard-00000.parquet …  queries.parquet DONE.json
    mine/    cache/ retriever-0.parquet …  negatives.parquet DONE.json
    label/   shards/ …  triplets.parquet DONE.json
    train/   checkpoints/ best/ eval_curve.csv eval_curve.png DONE.json
    export/  DONE.json     (the model itself goes to data/models/<name>/)

A stage whose ``DONE.json`` holds the current hash is skipped. A stage started with other
settings (its ``STARTED.json`` hash differs) is wiped before it runs again, so leftovers
of an old configuration are never mixed into new outputs.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd

DONE = "DONE.json"
STARTED = "STARTED.json"


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

    def begin(self, name: str, config_hash: str) -> Path:
        """Prepare a stage directory for (re)running: keep partial work of the same settings, wipe anything else."""
        directory = self.stage(name)
        started = directory / STARTED
        if directory.exists():
            previous = json.loads(started.read_text()).get("config_hash") if started.exists() else None
            if previous != config_hash or (directory / DONE).exists():
                shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json(started, {"config_hash": config_hash, "started_at": _now()})
        return directory

    def finish(self, name: str, config_hash: str, info: dict) -> dict:
        """Write the done-marker (last, so a crash before it leaves the stage unfinished)."""
        payload = {"stage": name, "config_hash": config_hash, "finished_at": _now(), **info}
        write_json(self.stage(name) / DONE, payload)
        return payload


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
