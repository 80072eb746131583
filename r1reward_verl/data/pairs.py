"""Preference pairs -> verl parquet for RL (``RLHFDataset``) and SFT (``MultiTurnSFTDataset``), streaming.

    python -m preprocess.pairs --input pairs.jsonl [--input more.parquet | SHARDS_DIR | yifanzhang114/R1-Reward-RL]
        --out DIR [--val-fraction 0.02] [--seed 0] [--skip-invalid] [--allow-empty] [--difficulty-filter] [--no-dedup]
        [--sft-out SFT_DIR] [--bt-out BT_DIR] [--critic-out CRITIC_DIR] [--max-pixels N] [--processor MODEL --max-prompt-tokens N --max-sft-tokens N]
        [--max-images 4] [--drop-overlong]

Writes ``DIR/train.parquet`` and ``DIR/val.parquet`` (RL) and, with ``--sft-out``, ``SFT_DIR/train.parquet``
and ``SFT_DIR/val.parquet`` from the rows that carry a ``reasoning``; with ``--bt-out``, ``BT_DIR/{train,val}.parquet``:
every pair that passes de-duplication (before ``--difficulty-filter``), as ``chosen_messages`` / ``rejected_messages``
(the question with its ``<image>`` placeholders, then one response as the assistant's turn), ``images``, ``id``, for the
scalar reward model (``r1reward_verl.bt``); with ``--critic-out``, critic-then-score's two from the same pairs (those
with ``critique_1``/``critique_2``, ``preprocess.annotate --critiques``): ``CRITIC_DIR/sft/`` (the critic's rows, one a
response: the critique request -> the critique) and ``CRITIC_DIR/bt/`` (``--bt-out``'s rows, each response followed by
its critique); ``DIR/summary.json`` in all cases (``bt_written_by_split``, ``critic_written_by_split``).

* RL rows: ``data_source``, ``prompt`` (the Table 1 prompt of R1-Reward §4.3 with one ``<image>``
  placeholder per image), ``images`` ([{bytes, path}]), ``ability``, ``reward_model`` {style: rule,
  ground_truth: "1"|"2"}, ``extra_info`` {index, id, question, source, swapped, attempts, sanitized, split}.
* RL labels are balanced 1:1 per split by swapping the two responses (seeded; each row records
  ``swapped``). SFT rows keep the order their reasoning was written for (a reasoning names the
  responses by position); the annotator (``preprocess.annotate``) balances before it asks.
* ``--difficulty-filter``: keep RL rows the annotator needed >= 2 attempts for, or failed (paper: "RL Training Data");
  the SFT output (``--sft-out``) keeps every row with a reasoning (the cold start learns from all pairs).
* De-duplication of identical pairs (question, both responses in either order, image bytes).
* The train/val split is a seeded hash of the id, so it is stable whatever the input order or size.
* R1-Reward-RL rows have no id: each gets ``rl-`` + a digest of its cells (``records.derived_id``), so
  ids are unique across shards and a row keeps its id and split whatever the sharding or order.
* Inputs, options and output directories are checked before anything is read or written: a
  missing, unsupported or unreadable input (not gzip, not parquet), a parquet file whose columns fit
  no format (a wrong file, not a bad row: ``--skip-invalid`` does not apply), an ``--out``/``--sft-out``
  that is a file, both the same directory, or an input the run would overwrite stop the run with one
  line naming it (exit code 2); a directory stands for its data files (e.g. a data set's parquet
  shards). A file that turns out unreadable later (a truncated ``.gz``) stops the same way. An input
  with no rows stops the run (``no rows read from FILE``), and so does a run that rejects every row
  (``no rows written``), unless ``--allow-empty``, which counts them (``empty_inputs``).
* Bad input stops with an error naming the file and row; ``--skip-invalid`` skips and counts it by
  reason (e.g. ``identical_responses``: the two responses are the same text, whitespace aside, so
  there is nothing to prefer). Always: read = written + rejected, printed and saved in ``summary.json``.
* Limits (``r1reward_verl.data.tokens``): with ``--processor``, each row's tokens are counted as verl 0.9.1 counts
  them at load time (RL: ``RLHFDataset``'s overlong-prompt filter; SFT: ``MultiTurnSFTDataset``'s sequence),
  by verl's own dataset methods. RL rows over ``--max-prompt-tokens`` or ``--max-images`` (default 4, the
  configs' ``rollout.limit_images``) and SFT rows over ``--max-sft-tokens`` are counted and reported (stderr,
  ``over_limit``, ``first_over_limit_rows`` and ``longest`` in ``summary.json``) and kept; with
  ``--drop-overlong`` they are dropped and counted as rejected (``overlong_prompt``, ``too_many_images``;
  ``sft_rejected_by_reason``: ``overlong_sft``), a dropped RL row leaving its label target to the next row.
  The RL and SFT rows of a pair are judged each on its own limits.
* Streaming: rows are read in batches and written in row groups, with memory bounded by the batch
  size (plus a 16-byte digest per row for de-duplication and duplicate ids). Outputs are written to
  temporary files and renamed at the end, so a crash or a refused run never leaves a file that looks
  whole, and an earlier output stays as it was until a run succeeds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from r1reward_verl.data import images, records, tokens
from r1reward_verl.data.outputs import (  # noqa: F401  (the schemas and row builders are part of this module's interface)
    ABILITY,
    IMAGE_TYPE,
    MESSAGES_TYPE,
    RL_SCHEMA,
    BT_SCHEMA,
    SFT_SCHEMA,
    AtomicParquet,
    bt_row,
    commit_all,
    critic_bt_row,
    critic_dirs,
    critic_sft_rows,
    prepare_out_dirs,
    rl_row,
    rl_table,
    sft_row,
)
from r1reward_verl.data.records import (
    BadRow,
    InvalidInput,
    Pair,
    RawRow,
    base_dir_of,
    check_inputs,
    iter_raw_rows,
)
from r1reward_verl.data.workers import normalized, setup, start_pool
from r1reward_verl.cli import ArgumentParser, cli_main, int_at_least, positive_int


@dataclass
class Summary:
    read: int = 0
    written: Counter = field(default_factory=Counter)  # per split
    rejected: Counter = field(default_factory=Counter)  # per reason
    labels: dict = field(default_factory=lambda: {"train": Counter(), "val": Counter()})
    swapped: int = 0
    sft_labels: dict = field(default_factory=lambda: {"train": Counter(), "val": Counter()})
    sanitized: int = 0
    resized_images: int = 0
    sft_written: Counter = field(default_factory=Counter)
    bt_written: Counter = field(default_factory=Counter)  # --bt-out rows per split (every pair de-duplication kept)
    critic_written: Counter = field(default_factory=Counter)  # --critic-out pairs per split (two critic rows each)
    critic_missing: int = 0  # --critic-out: pairs without critiques (their other rows are written)
    examples: dict = field(default_factory=dict)  # first file:row per rejection reason
    empty_inputs: list = field(default_factory=list)  # inputs with no rows (--allow-empty)
    sft_rejected: Counter = field(default_factory=Counter)  # SFT rows dropped over --max-sft-tokens
    limits: dict = field(default_factory=dict)  # tokens.LimitReport.as_dict()

    def as_dict(self) -> dict:
        return {
            "read": self.read,
            "written": sum(self.written.values()),
            "written_by_split": dict(self.written),
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected),
            "first_rejected_row_by_reason": self.examples,
            "labels_by_split": {k: {str(lab): n for lab, n in sorted(v.items())} for k, v in self.labels.items()},
            "swapped": self.swapped,
            "sft_labels_by_split": {k: {str(lab): n for lab, n in sorted(v.items())} for k, v in self.sft_labels.items()},
            "sanitized_placeholders": self.sanitized,
            "resized_images": self.resized_images,
            "sft_written_by_split": dict(self.sft_written),
            "sft_rejected_by_reason": dict(self.sft_rejected),
            "bt_written_by_split": dict(self.bt_written),
            "critic_written_by_split": dict(self.critic_written),
            "critic_missing": self.critic_missing,
            "empty_inputs": self.empty_inputs,
            **self.limits,
            "balanced": self.read == sum(self.written.values()) + sum(self.rejected.values()),
        }


def split_of(pair_id: str, seed: int, val_fraction: float) -> str:
    """Stable train/val assignment from a seeded hash of the id."""
    h = hashlib.blake2b(f"{seed}:{pair_id}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(h, "big") / 2**64 < val_fraction else "train"


def content_key(p: Pair) -> bytes:
    """Identity of a pair for de-duplication: question, the two responses in either order, image bytes."""
    a, b = sorted((p.response_1, p.response_2))
    h = hashlib.blake2b(f"{p.question}\0{a}\0{b}\0".encode(), digest_size=16)
    for im in p.images:
        h.update(images.image_digest(im["path"], im["bytes"]))
    return h.digest()


class Balancer:
    """Target labels for one split: a seeded shuffle of (1, 2) per block of two rows -> exact 1:1 (+-1)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.pending: list[int] = []

    def peek(self) -> int:
        """The next target without taking it (a row dropped over a limit leaves it to the next row)."""
        if not self.pending:
            self.pending = [1, 2]
            self.rng.shuffle(self.pending)
        return self.pending[-1]

    def next_target(self) -> int:
        self.peek()
        return self.pending.pop()


def swap(p: Pair) -> Pair:
    p.response_1, p.response_2 = p.response_2, p.response_1
    p.preferred = 3 - p.preferred
    return p


def _free_id(base: str, taken: set[str]) -> str:
    k = 2
    while f"{base}-{k}" in taken:
        k += 1
    return f"{base}-{k}"


def convert(
    inputs: list[str],
    out: str | Path,
    *,
    sft_out: Optional[str | Path] = None,
    bt_out: Optional[str | Path] = None,
    critic_out: Optional[str | Path] = None,
    val_fraction: float = 0.02,
    seed: int = 0,
    skip_invalid: bool = False,
    allow_empty: bool = False,
    difficulty_filter: bool = False,
    dedup: bool = True,
    data_source: str = "r1reward",
    fmt: str = "auto",
    rows_per_group: int = 512,
    progress: bool = True,
    workers: int = 1,
    max_pixels: Optional[int] = None,
    processor: Optional[str] = None,
    max_prompt_tokens: Optional[int] = None,
    max_sft_tokens: Optional[int] = None,
    max_images: Optional[int] = 4,
    drop_overlong: bool = False,
) -> dict:
    """Convert ``inputs`` into verl parquet under ``out`` (see the module docstring). Returns the summary.

    Raises ValueError for a ``val_fraction`` or ``max_pixels`` out of range; InvalidInput (a UserError)
    for an input or output directory that cannot be used (MissingInput, also a FileNotFoundError, for a
    missing input), a limit below 1, a token limit without ``processor`` or a processor that cannot be
    loaded, all before anything is written; and InvalidInput for an unreadable file, a bad row
    (unless ``skip_invalid``) or an empty input or result (unless ``allow_empty``), leaving earlier outputs.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    limits = tokens.Limits(processor, max_prompt_tokens, max_sft_tokens, max_images, drop_overlong)
    setup(max_pixels, processor, sft_out is not None, difficulty_filter)
    sources = check_inputs(inputs, fmt)
    if processor is not None:
        tokens.counter()  # loaded (or refused, naming --processor) before anything is written
    prepare_out_dirs(out, sft_out, sources, bt_out, critic_out)
    out = Path(out)
    images.new_run()  # image files are re-checked against the file system once per run
    writers = {s: AtomicParquet(out / f"{s}.parquet", RL_SCHEMA, rows_per_group, rl_table) for s in ("train", "val")}
    sft_writers = {}
    if sft_out is not None:
        sft_writers = {s: AtomicParquet(Path(sft_out) / f"{s}.parquet", SFT_SCHEMA, rows_per_group) for s in ("train", "val")}
    bt_writers = {}
    if bt_out is not None:
        bt_writers = {s: AtomicParquet(Path(bt_out) / f"{s}.parquet", BT_SCHEMA, rows_per_group) for s in ("train", "val")}
    critic_writers = {}
    if critic_out is not None:
        critic_writers = {(kind, s): AtomicParquet(d / f"{s}.parquet", SFT_SCHEMA if kind == "sft" else BT_SCHEMA, rows_per_group)
                          for kind, d in critic_dirs(critic_out).items() for s in ("train", "val")}  # fmt: skip
    balancers = {"train": Balancer(seed), "val": Balancer(seed + 1)}
    summary = Summary()
    report = tokens.LimitReport(limits)
    seen_ids: set[str] = set()
    seen_content: set[bytes] = set()
    index = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="pairs", unit=" rows", mininterval=1.0, file=sys.stderr)

    def reject(raw: RawRow, reason: str, message: str) -> None:
        if not skip_invalid and reason not in ("duplicate_content", "difficulty_filtered", *tokens.LIMITS):
            raise InvalidInput(f"{raw.file}: row {raw.row}: {reason}: {message} (use --skip-invalid to skip and count)")
        summary.rejected[reason] += 1
        summary.examples.setdefault(reason, f"{raw.file}:{raw.row}: {message}")

    pool = None
    if workers > 1:
        pool = start_pool(workers, max_pixels, processor, sft_out is not None, difficulty_filter)
    try:
        for source in sources:
            base_dir = base_dir_of(source)
            read_before = summary.read
            for raw, pair in normalized(iter_raw_rows(source), fmt, base_dir, pool, workers):
                summary.read += 1
                if bar is not None:
                    bar.update(1)
                if isinstance(pair, BadRow):
                    reject(raw, pair.reason, str(pair))
                    continue
                if pair.id in seen_ids and pair.extra.get("derived_id"):  # an exact copy of a row without an id
                    pair.id = _free_id(pair.id, seen_ids)  # gets one of its own (de-duplication then drops it)
                elif pair.id in seen_ids:
                    reject(raw, "duplicate_id", f"id {pair.id!r} appeared before")
                    continue
                seen_ids.add(pair.id)
                if difficulty_filter and pair.attempts is None:
                    reject(raw, "missing_attempts", "--difficulty-filter needs 'attempts' on every row")
                    continue
                if dedup:
                    key = content_key(pair)
                    if key in seen_content:
                        reject(raw, "duplicate_content", f"same pair as an earlier row (id {pair.id})")
                        continue
                    seen_content.add(key)

                split = split_of(pair.id, seed, val_fraction)
                where = f"{raw.file}:{raw.row} (id {pair.id})"
                if sft_writers and pair.reasoning is not None:  # in the order the reasoning was written for
                    if report.sft(pair, where) and drop_overlong:
                        summary.sft_rejected["overlong_sft"] += 1
                    else:
                        sft_writers[split].add(sft_row(pair))
                        summary.sft_written[split] += 1
                        summary.sft_labels[split][pair.preferred] += 1
                if bt_writers:  # every pair, as preferred (the scalar model reads each response on its own)
                    bt_writers[split].add(bt_row(pair))
                    summary.bt_written[split] += 1
                if critic_writers and pair.critiques is None:
                    summary.critic_missing += 1
                elif critic_writers:  # each response with its critique, before any swap
                    for row in critic_sft_rows(pair):
                        critic_writers["sft", split].add(row)
                    critic_writers["bt", split].add(critic_bt_row(pair))
                    summary.critic_written[split] += 1
                # the paper's split (§4.3): the cold start learns from every pair, RL from the hard ones only
                if difficulty_filter and pair.attempts != "failed" and int(pair.attempts) < 2:
                    reject(raw, "difficulty_filtered", f"attempts={pair.attempts} (< 2)")
                    continue
                swapped = balancers[split].peek() != pair.preferred
                over = report.rl(pair, swapped, where)
                if over and drop_overlong:  # the label target stays for the next row: the balance holds
                    reject(raw, *over)
                    continue
                balancers[split].next_target()
                if swapped:
                    swap(pair)
                    summary.swapped += 1
                summary.sanitized += pair.sanitized
                summary.resized_images += pair.resized_images
                writers[split].add(rl_row(pair, index, split, swapped, data_source))
                index += 1
                summary.written[split] += 1
                summary.labels[split][pair.preferred] += 1
            if summary.read == read_before:
                if not allow_empty:
                    raise InvalidInput(f"no rows read from {source} (use --allow-empty to accept an empty input)")
                summary.empty_inputs.append(source)
        if summary.read and not summary.written and not allow_empty:
            raise InvalidInput(f"no rows written: all {summary.read} rows read were rejected {dict(summary.rejected)} "
                               "(use --allow-empty to accept an empty output)")  # fmt: skip
        commit_all([*writers.values(), *sft_writers.values(), *bt_writers.values(), *critic_writers.values()])
    except BaseException:
        for w in (*writers.values(), *sft_writers.values(), *bt_writers.values(), *critic_writers.values()):
            w.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.terminate()
    summary.limits = report.as_dict()
    result = summary.as_dict()
    assert result["balanced"], result
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out / "summary.json")
    return result


def fraction(text: str) -> float:
    """argparse ``type=`` for --val-fraction: a number in [0, 1) (1 would leave no training rows)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"wants a number in [0, 1), got {value}")
    return value


max_pixels_type = int_at_least(records.MIN_PIXELS, "one 28x28 image token of Qwen2.5-VL")  # set_max_pixels refuses less


@cli_main
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m preprocess.pairs", description="Preference pairs -> verl parquet (RL and SFT).")
    parser.add_argument("--input", action="append", required=True,
                        help="a .jsonl/.json/.parquet file in the pair format or R1-Reward-RL's, a directory of such "
                             "files, or a hub dataset name; repeatable")  # fmt: skip
    parser.add_argument("--out", required=True, help="output directory for train.parquet, val.parquet, summary.json")
    parser.add_argument("--sft-out", help="also write SFT parquet (rows with 'reasoning') to this directory")
    parser.add_argument("--bt-out", help="also write every pair as chosen/rejected conversations (the scalar reward "
                                         "model's parquet, hydra_configs/r1reward_bt.yaml) to this directory")
    parser.add_argument("--critic-out", help="also write critic-then-score's parquet from the pairs with critique_1/"
                                             "critique_2 (preprocess.annotate --critiques): DIR/sft (the critic) and "
                                             "DIR/bt (the scorer)")  # fmt: skip
    parser.add_argument("--format", choices=["auto", "pairs", "r1reward_rl"], default="auto")
    parser.add_argument("--val-fraction", type=fraction, default=0.02, help="in [0, 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-invalid", action="store_true", help="skip bad rows and count them by reason")
    parser.add_argument("--allow-empty", action="store_true",
                        help="accept an input with no rows (listed in summary.json's empty_inputs), or a run whose "
                             "every row is rejected, instead of stopping")  # fmt: skip
    parser.add_argument("--difficulty-filter", action="store_true",
                        help="keep rows with attempts >= 2 or 'failed' (R1-Reward's RL subset)")  # fmt: skip
    parser.add_argument("--no-dedup", action="store_true")
    parser.add_argument("--data-source", default="r1reward")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="processes that read and check rows and images; pays off when images are large and "
                             "unique (e.g. inline base64); output is identical for any number")  # fmt: skip
    parser.add_argument("--max-pixels", type=max_pixels_type,
                        help="downscale images above this many pixels (width x height, aspect kept; at least 784); "
                             "bounds the image tokens of Qwen2.5-VL (28x28 pixels per token), e.g. 1003520 = 1280 "
                             "tokens")  # fmt: skip
    parser.add_argument("--processor",
                        help="the policy's HF processor (checkpoint directory or hub id, e.g. "
                             "Qwen/Qwen2.5-VL-7B-Instruct): count each row's tokens as verl's datasets do "
                             "(the longest in summary.json)")  # fmt: skip
    parser.add_argument("--max-prompt-tokens", type=positive_int,
                        help="RL prompts (chat template + image tokens) over this many tokens are reported (the "
                             "configs' data.max_prompt_length: 8192); needs --processor")  # fmt: skip
    parser.add_argument("--max-sft-tokens", type=positive_int,
                        help="SFT rows (prompt + image tokens + reasoning answer) over this many tokens are reported "
                             "(r1reward_sft.yaml's data.max_length: 8192); needs --processor")  # fmt: skip
    parser.add_argument("--max-images", type=positive_int, default=4,
                        help="RL rows with more images are reported (the configs' rollout.limit_images; default 4)")
    parser.add_argument("--drop-overlong", action=argparse.BooleanOptionalAction, default=False,
                        help="drop the rows over --max-prompt-tokens, --max-sft-tokens or --max-images and count "
                             "them as rejected (overlong_prompt, overlong_sft, too_many_images); default: keep them "
                             "and report")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.processor is None:
        for flag in ("max_prompt_tokens", "max_sft_tokens"):
            if getattr(args, flag) is not None:
                parser.error(f"argument --{flag.replace('_', '-')}: needs --processor to count tokens as verl does")
    s = convert(args.input, args.out, sft_out=args.sft_out, bt_out=args.bt_out, critic_out=args.critic_out, val_fraction=args.val_fraction, seed=args.seed,
                skip_invalid=args.skip_invalid, allow_empty=args.allow_empty,
                difficulty_filter=args.difficulty_filter, dedup=not args.no_dedup,
                data_source=args.data_source, fmt=args.format, progress=not args.no_progress,
                workers=args.workers, max_pixels=args.max_pixels, processor=args.processor,
                max_prompt_tokens=args.max_prompt_tokens, max_sft_tokens=args.max_sft_tokens,
                max_images=args.max_images, drop_overlong=args.drop_overlong)  # fmt: skip
    for line in tokens.warning_lines(s):
        print(line, file=sys.stderr)
    empty = f"; empty inputs {len(s['empty_inputs'])}" if s["empty_inputs"] else ""
    critic = f"; critic {s['critic_written_by_split']} (no critiques {s['critic_missing']})" if args.critic_out else ""
    print(f"read {s['read']} = written {s['written']} {s['written_by_split']} + rejected {s['rejected']} "
          f"{s['rejected_by_reason']}; labels {s['labels_by_split']}; swapped {s['swapped']}; "
          f"SFT {s['sft_written_by_split']}; BT {s['bt_written_by_split']}{critic}{tokens.summary_text(s)}{empty}; "
          f"summary: {Path(args.out) / 'summary.json'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
