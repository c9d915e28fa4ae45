"""Small helpers shared by the benchmark scripts: percentiles, memory, machine load, tables, plots, queries.

Import from a script in ``benchmarks/`` with ``from _common import ...`` (the
script's own directory is on ``sys.path`` when it is run as a file).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


def percentiles(samples_ms: Sequence[float], points: Iterable[int] = (50, 95)) -> dict[str, float]:
    """``{"p50": …, "p95": …}`` of a list of durations (NaN for an empty list)."""
    values = np.asarray(samples_ms, dtype=np.float64)
    return {f"p{p}": float(np.percentile(values, p)) if values.size else float("nan") for p in points}


def rss_mib() -> float:
    """Resident set size of this process now, in MiB (psutil when installed, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_split_mib() -> dict[str, float]:
    """This process's resident memory split into ``anon`` (heap: what the process truly holds) and ``file``
    (pages of memory-mapped files, which the kernel can drop and re-read), in MiB; Linux only."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("RssAnon:", "RssFile:")):
                name, value, _unit = line.split()
                fields[name[3:-1].lower()] = int(value) / 1024
    return fields


def load_average() -> str:
    """The 1-minute load average and core count, e.g. ``"load 1.93 on 2 cores"``: context for every timing."""
    try:
        one_minute = os.getloadavg()[0]
    except OSError:
        return f"load ? on {os.cpu_count()} cores"
    return f"load {one_minute:.2f} on {os.cpu_count()} cores"


class Stopwatch:
    """``with Stopwatch() as t: ...`` then ``t.seconds`` (wall clock, perf_counter)."""

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are printed as given, so format them before passing them in."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (benchmarks run on machines without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_path(path: str | Path) -> Path:
    """``path`` with its parent directory created (plots go under data/benchmarks/, which git ignores)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


_MOODS = ("dark", "cozy", "funny", "bittersweet", "slow-burn", "fast-paced", "thoughtful", "brutal", "wholesome",
          "strange", "melancholic", "hopeful")
_SUBJECTS = ("rival students falling for each other", "a morally grey detective", "pirates crossing the stars",
             "a girl who keeps reliving the same day", "soldiers piloting giant robots", "a quiet village doctor",
             "a chef entering a cooking contest", "a high school volleyball team", "a swordsman seeking revenge",
             "friends opening a bakery", "a thief who steals from nobles", "an orphan raised by wolves",
             "a band on their last tour", "siblings searching for their mother", "a chess prodigy")
_SETTINGS = ("", "in a small seaside town", "set in feudal Japan", "on a dying planet", "in modern Tokyo",
             "with great music", "in a magic academy", "after the end of the world", "with a twist ending",
             "told over many years")


def benchmark_queries(count: int, offset: int = 0) -> list[str]:
    """``count`` distinct English queries (our own wording), so no query cache answers for the model."""
    combos = itertools.islice(itertools.product(_SETTINGS, _MOODS, _SUBJECTS), offset, offset + count)
    queries = [f"{mood} anime about {subject} {setting}".strip() for setting, mood, subject in combos]
    if len(queries) < count:
        raise ValueError(f"only {len(_MOODS) * len(_SUBJECTS) * len(_SETTINGS)} distinct benchmark queries exist")
    return queries
