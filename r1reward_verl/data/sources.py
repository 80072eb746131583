"""Where pairs come from: local files (``.jsonl``, ``.json`` lines or list, optionally ``.gz``; ``.parquet``),
directories of them, or a hub dataset name (``owner/name``), read as raw rows.

A source that cannot be used (missing, unsupported, unreadable) is an :class:`InvalidInput`: one line
naming it (``r1reward_verl.cli``: exit code 2). A row that cannot be converted is a :class:`BadRow`,
which the caller stops on or skips and counts.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from r1reward_verl.cli import UserError

DATA_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")
# a hub dataset id: exactly "owner/name"; anything else that does not exist locally is a missing path
_HUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


class InvalidInput(UserError, ValueError):
    """An input that cannot be used (missing, unsupported, unreadable, wrong columns, no rows), or a bad
    row without --skip-invalid: one line naming the file (and the row). Also a ValueError, as the readers
    raised before it existed."""


class MissingInput(InvalidInput, FileNotFoundError):
    """A local input that does not exist (also a FileNotFoundError)."""


class BadRow(Exception):
    """A row that cannot be converted; ``reason`` is a stable key used in the summary counts."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # picklable, so worker processes can return it
        return (BadRow, (self.reason, str(self)))


@dataclass
class RawRow:
    file: str
    row: int  # 1-based line (JSONL) or row number (parquet, hub)
    data: Any


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def source_kind(source: str) -> str:
    """``json`` (a local ``.jsonl``/``.json`` file, optionally ``.gz``), ``parquet`` or ``hub`` (an
    ``owner/name`` that is not a local path). Raises MissingInput or InvalidInput (unsupported)."""
    path = Path(source)
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    if path.is_file():
        if plain.suffix in (".jsonl", ".json"):
            return "json"
        if path.suffix == ".parquet":
            return "parquet"
    if path.exists():
        raise InvalidInput(f"{source}: unsupported input (use .jsonl, .json (lines or a list), optionally .gz, "
                           ".parquet, a directory of such files or a hub dataset name)")  # fmt: skip
    if plain.suffix in (".jsonl", ".json", ".parquet"):
        raise MissingInput(f"{source}: no such file")
    if not _HUB_NAME.fullmatch(source):  # "data/", "./x", "a/b/c": a local path, never a hub name
        raise MissingInput(f"{source}: no such file or directory")
    return "hub"


def expand_sources(inputs: list[str]) -> list[str]:
    """The inputs, checked before anything is read: a directory becomes its data files (sorted, not
    recursive; e.g. a data set's parquet shards). Raises InvalidInput (MissingInput for a missing one)."""
    out = []
    for source in inputs:
        path = Path(source)
        if path.is_dir():
            files = sorted(str(f) for f in path.iterdir() if f.is_file() and f.name.endswith(DATA_SUFFIXES))
            if not files:
                raise InvalidInput(f"{source}: a directory without data files ({', '.join(DATA_SUFFIXES)})")
            out.extend(files)
        else:
            source_kind(source)
            out.append(source)
    return out


def probe(source: str) -> Optional[list[str]]:
    """Open a source before any output is made: a parquet file's column names (from its footer), None
    for JSON (its first bytes are read, so a file that is not gzip is caught) and hub names. Raises
    InvalidInput naming the file if it cannot be read."""
    kind = source_kind(source)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(source).schema_arrow.names)
        if kind == "json":
            with _open_json(Path(source)) as f:
                f.read(1)
    except _read_errors(kind) as e:
        raise InvalidInput(f"{source}: cannot be read as {_KIND_NAMES[kind]} ({first_line(e)})") from None
    return None


_KIND_NAMES = {"json": "JSON", "parquet": "a parquet file", "hub": "a hub dataset"}


def _read_errors(kind: str) -> tuple:
    """What reading a source of this kind raises when the file (or the hub) is at fault."""
    if kind == "hub":  # datasets/huggingface_hub raise many types (not found, offline, validation)
        return (Exception,)
    errors = (OSError, EOFError, zlib.error, UnicodeDecodeError)
    if kind == "parquet":
        import pyarrow as pa

        errors += (pa.ArrowException,)
    return errors


def _open_json(path: Path):
    import gzip

    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_raw_rows(source: str, batch_size: int = 1024, hub_split: str = "train") -> Iterator[RawRow]:
    """Stream raw rows from a local ``.jsonl``/``.json`` file (one object a line, or one JSON list of
    objects; either may be gzip-compressed, ``.gz``) or ``.parquet`` file, or a hub name. A file (or hub
    dataset) that cannot be read stops with InvalidInput naming it and the last row read."""
    kind = source_kind(source)
    reader = {"json": _json_rows, "parquet": _parquet_rows, "hub": _hub_rows}[kind]
    last = 0
    try:
        for raw in reader(source, batch_size, hub_split):
            last = raw.row
            yield raw
    except _read_errors(kind) as e:
        where = f" after row {last}" if last else ""
        hint = "; no local file or directory of that name either" if kind == "hub" and not last else ""
        raise InvalidInput(f"{source}: cannot be read as {_KIND_NAMES[kind]}{where} ({first_line(e)}){hint}") from None


def _json_rows(source: str, batch_size: int, hub_split: str) -> Iterator[RawRow]:
    import orjson  # strict RFC 8259 JSON (and UTF-8), several times faster than json

    path = Path(source)
    name = str(path)
    with _open_json(path) as f:
        first = f.read(1)
        while first.isspace():
            first = f.read(1)
        if first == b"[":  # a JSON list (e.g. Multimodal RewardBench's all_data.json): rows are its items
            try:
                items = orjson.loads(first + f.read())
            except orjson.JSONDecodeError as e:
                yield RawRow(name, 1, BadRow("bad_json", f"invalid JSON list: {e}"))
                return
            for i, rec in enumerate(items, 1):
                yield RawRow(name, i, rec)
            return
        f.seek(0)
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield RawRow(name, i, orjson.loads(line))
            except orjson.JSONDecodeError as e:
                yield RawRow(name, i, BadRow("bad_json", f"invalid JSON: {e}"))


def _parquet_rows(source: str, batch_size: int, hub_split: str) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(source).iter_batches(batch_size=batch_size):
        for rec in batch.to_pylist():
            n += 1
            yield RawRow(str(source), n, rec)


def _hub_rows(source: str, batch_size: int, hub_split: str) -> Iterator[RawRow]:
    from datasets import load_dataset  # a hub name: streamed, never fully downloaded first

    for n, rec in enumerate(load_dataset(source, split=hub_split, streaming=True), 1):
        yield RawRow(source, n, rec)
