"""Errors of the training package; the CLI prints them as one line (no traceback)."""


class TrainingError(Exception):
    """Base class: a problem with a GPL run the user can fix."""


class ConfigError(TrainingError):
    """The run configuration is missing, unreadable or has an invalid value; the message names the key."""


class StageError(TrainingError):
    """A stage cannot run (e.g. its input is empty or a model cannot be loaded)."""
