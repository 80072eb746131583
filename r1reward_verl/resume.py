"""Resuming an append-only JSONL output (one record per line, flushed per record), the way every command does.

A crash can leave only one thing behind: a last line cut short while it was written. So a resume cuts a torn
last line that is not a whole record (it is redone), gives a whole last record its missing newline, skips blank
lines, and refuses any other line that is not a record, naming ``FILE:LINE`` and touching nothing: work that was
paid for (annotations, judge calls) is never thrown away silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, TypeVar

from r1reward_verl.cli import UserError

T = TypeVar("T")


def read_resumable(path: Path, parse: Callable[[bytes], Optional[T]], what: str) -> list[T]:
    """``parse(line)`` of every record of ``path`` (``[]`` when it does not exist); ``parse`` returns None for a
    line that is not a record. Repairs the last line as above; raises :class:`UserError` for a bad line elsewhere
    (``what``: what a record is, for the message)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read it to resume: {e.strerror}") from None
    records: list[T] = []
    start = 0
    for lineno, line in enumerate(data.splitlines(keepends=True), 1):
        whole = line.endswith(b"\n")
        rec = parse(line) if line.strip() else None
        if rec is None and whole and line.strip():
            raise UserError(f"{path}:{lineno}: not {what}; the file is left as it is: fix or delete that line, "
                            "then rerun")  # fmt: skip
        if rec is not None:
            records.append(rec)
        if not whole:  # the last line, torn or not
            with open(path, "rb+") as f:
                if rec is not None:
                    f.seek(0, os.SEEK_END)
                    f.write(b"\n")
                else:
                    f.truncate(start)
        start += len(line)
    return records
