"""Command lines whose reader goes away (``… | head -1``) end quietly, as any Unix tool does."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

#: The status of a process ended by SIGPIPE (128 + 13): what ``tool | head -1`` reports for other tools too.
EXIT_BROKEN_PIPE = 141


def quiet_on_broken_pipe(command: Callable[[], int]) -> int:
    """Run ``command``; if its stdout reader has gone, stop at once without a traceback.

    Returns:
        The command's exit status, or :data:`EXIT_BROKEN_PIPE`.
    """
    try:
        return command()
    except BrokenPipeError:
        # Python flushes stdout once more at exit and would report that failure too: point it at /dev/null.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # not a real file descriptor (captured output): nothing to flush later
            pass
        return EXIT_BROKEN_PIPE
