"""The progress bar of the ``publish`` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from tqdm import tqdm


def count_lines(paths: list[str]) -> Optional[int]:
    """Return the number of non-blank lines in the files, or None when one is standard input or cannot be read."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        try:
            with Path(path).open("rb") as handle:
                total += sum(1 for line in handle if line.strip())
        except OSError:
            # The publisher reports the file itself when it tries to read it.
            return None
    return total


def publish_progress(paths: list[str], enabled: Optional[bool]) -> Optional[tqdm]:
    """Return a progress bar of published events on stderr, or None when it is off.

    ``enabled`` None turns the bar on when stderr is a terminal.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    return tqdm(
        total=count_lines(paths),
        desc="publish",
        unit=" events",
        file=sys.stderr,
        mininterval=0.5,
        dynamic_ncols=True,
    )
