"""Where a ``--db`` option may point: one rule for every command that opens the review store by path."""

from __future__ import annotations

from pathlib import Path


class StorePathError(ValueError):
    """A ``--db`` path that would silently create a store nobody meant to create."""


def check_store_path(path: str | Path, *, must_exist: bool) -> Path:
    """Check a store path the user typed.

    A folder that does not exist is always refused: a typo there must not create a new
    tree and an empty store. A new file in an existing folder is fine for commands that
    fill a store (``python -m scraping import``); commands that only read one pass
    ``must_exist=True``.

    Raises:
        StorePathError: the folder is missing, the path is a folder, or (``must_exist``) there is no store there.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise StorePathError(f"--db {path} is a folder; give the store file, e.g. {path / 'mal.sqlite'}")
    if not path.parent.is_dir():
        raise StorePathError(f"--db {path}: the folder {path.parent} does not exist; fix the path or create the"
                             f" folder first (mkdir -p {path.parent})")
    if must_exist and not path.exists():
        raise StorePathError(f"--db {path}: no review store there; check the path, or import reviews into it"
                             f" first: python -m scraping import FILE --db {path}")
    return path
