"""Rows of ``preprocess.pairs`` normalized (images loaded and checked, tokens counted) in input order, in
this process or, with ``--workers``, in a pool of worker processes."""

from __future__ import annotations

import itertools
from collections import deque
from typing import Optional

from r1reward_verl.data import records, tokens
from r1reward_verl.data.records import BadRow, InvalidInput, RawRow, detect_format, normalize_pair, normalize_r1reward_rl
from r1reward_verl.data.sources import first_line


def start_pool(workers: int, max_pixels: Optional[int], processor: Optional[str], count_sft: bool,
               difficulty_filter: bool):
    """``workers`` processes set up as this one (:func:`setup`). A process forked after torch or the tokenizer
    ran can hang, so with a processor they are spawned and load their own."""
    import multiprocessing as mp

    fork = "fork" in mp.get_all_start_methods() and processor is None
    return mp.get_context("fork" if fork else "spawn").Pool(
        workers, initializer=setup, initargs=(max_pixels, processor, count_sft, difficulty_filter, True))


def setup(max_pixels: Optional[int], processor: Optional[str], count_sft: bool, difficulty_filter: bool,
          worker: bool = False) -> None:
    """This process's (or a worker's) image bound and token counter (a worker's loads at its first row)."""
    records.set_max_pixels(max_pixels)
    tokens.configure(processor, count_sft, difficulty_filter)
    if worker and processor is not None:
        import torch

        torch.set_num_threads(1)  # one core per worker process


def _normalize_one(raw: RawRow, fmt: str, base_dir: str):
    try:
        if isinstance(raw.data, BadRow):
            raise raw.data
        if fmt == "auto":
            fmt = detect_format(raw.data)
        pair = normalize_r1reward_rl(raw.data, base_dir) if fmt == "r1reward_rl" else normalize_pair(raw.data, base_dir)
    except BadRow as e:
        return e
    try:
        tokens.count_pair(pair)
    except InvalidInput:
        raise
    except Exception as e:  # verl's processor failed on the row (verl's own filter would drop it without a word)
        return BadRow("untokenizable", f"the processor cannot tokenize the row as verl does ({first_line(e)})")
    return pair


def _normalize_chunk(args) -> list:
    chunk, fmt, base_dir = args
    return [_normalize_one(raw, fmt, base_dir) for raw in chunk]


def normalized(rows, fmt: str, base_dir: str, pool, workers: int = 1, chunk_size: int = 256):
    """(raw, Pair or BadRow) in input order; with a pool, chunks are normalized in worker processes.

    The format of a source is fixed by its first row (``auto``), so every chunk uses the same one.
    """
    if pool is None:
        for raw in rows:
            if fmt == "auto" and not isinstance(raw.data, BadRow):
                fmt = detect_format(raw.data)
            yield raw, _normalize_one(raw, fmt, base_dir)
        return
    rows = iter(rows)
    first = list(itertools.islice(rows, 1))
    if fmt == "auto" and first and not isinstance(first[0].data, BadRow):
        fmt = detect_format(first[0].data)

    it = itertools.chain(first, rows)
    inflight: deque = deque()  # bounded: at most 4 chunks per worker in flight
    while chunk := list(itertools.islice(it, chunk_size)):
        inflight.append((chunk, pool.apply_async(_normalize_chunk, ((chunk, fmt, base_dir),))))
        if len(inflight) >= 4 * workers:
            done_chunk, result = inflight.popleft()
            yield from zip(done_chunk, result.get())
    while inflight:
        done_chunk, result = inflight.popleft()
        yield from zip(done_chunk, result.get())
