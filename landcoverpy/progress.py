"""Progress bars for long steps: shown on a terminal, silent when output is a file or a pipe
(logs and CI stay clean), and always framed by log lines saying what starts and how it ended."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm


@contextlib.contextmanager
def step(log: logging.Logger, what: str, total: int, unit: str, enabled: bool = True) -> Iterator[Any]:
    """A tqdm bar over ``total`` items (silent off a terminal, or when not ``enabled``), between
    an INFO line announcing the step and one reporting its duration."""

    if total:
        log.info("%s: %d %s(s)", what, total, unit)
    started = time.perf_counter()
    bar = tqdm(total=total, desc=what, unit=unit, disable=None if enabled and total else True, leave=False)
    try:
        yield bar
    finally:
        bar.close()
        if total:
            log.info("%s: done in %.1f s", what, time.perf_counter() - started)
