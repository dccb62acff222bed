"""Progress of long jobs, on stderr: a tqdm bar on a terminal, a plain line every few seconds otherwise.

A bar redrawn with carriage returns turns a log file into one unreadable line, so when stderr is not a terminal
(a pipe, a file, a scheduler's log) :func:`progress` prints ``DESC: 1200/5000 records (24%), 310 records/s, 3.9 s``
lines instead: at most one every :data:`INTERVAL_ENV` seconds (default 10), and one at the end.

``SCARCE_PROGRESS=0`` turns progress off; ``SCARCE_PROGRESS=lines`` prints lines on a terminal too.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["INTERVAL_ENV", "PROGRESS_ENV", "progress"]

PROGRESS_ENV = "SCARCE_PROGRESS"
INTERVAL_ENV = "SCARCE_PROGRESS_INTERVAL"
_DEFAULT_INTERVAL_S = 10.0

T = TypeVar("T")


def _mode() -> str:
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if value in ("0", "off", "false", "no"):
        return "off"
    if value == "lines" or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return "lines"
    return "bar"


def _line(desc: str, done: int, total: int | None, unit: str, elapsed: float) -> str:
    share = f"/{total} {unit} ({100 * done / total:.0f}%)" if total else f" {unit}"
    rate = f", {done / elapsed:.1f} {unit}/s" if elapsed > 0 else ""
    return f"{desc}: {done}{share}{rate}, {elapsed:.1f} s"


def progress(items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Yield ``items``, showing how far the iteration is (see the module docstring).

    Args:
        items: what to iterate.
        desc: what is being done, e.g. ``"convert cityscapes train"``.
        total: the number of items, if known (``len(items)`` when it has one).
        unit: what an item is, e.g. ``"record"``, ``"image"``.
    """
    mode = _mode()
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if mode == "off":
        yield from items
        return
    if mode == "bar":
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True)
        return
    interval = float(os.environ.get(INTERVAL_ENV, _DEFAULT_INTERVAL_S))
    start = last = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= interval and (total is None or done < total):
            print(_line(desc, done, total, unit, now - start), file=sys.stderr, flush=True)
            last = now
    print(_line(desc, done, total, unit, time.perf_counter() - start), file=sys.stderr, flush=True)
