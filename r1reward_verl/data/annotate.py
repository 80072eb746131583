"""The cold-start annotator (R1-Reward §4.3, "Long-CoT Cold Start"): reasoning and difficulty for each pair.

    python -m preprocess.annotate --input pairs.jsonl --out annotated.jsonl \\
        --base-url https://api.openai.com/v1 --model gpt-4o --api-key-env OPENAI_API_KEY [--concurrency 16]
    python -m preprocess.annotate --critiques --input annotated.jsonl --out critiqued.jsonl --base-url ... --model ...

For every pair (generic pair format, see ``r1reward_verl/data/records.py``) it sends the Table 1 prompt with
the images to any OpenAI-compatible endpoint (GPT-4o as in the paper, or a local vLLM server) at
temperature 0, up to ``--max-attempts`` (3) times, and records how many attempts gave the human
label (``attempts``: 1, 2, 3 or ``failed``) and, when one did, its reasoning. The output is the same
pair format plus ``attempts``, ``reasoning``, ``annotator`` and ``swapped``, ready for
``python -m preprocess.pairs --sft-out ... [--difficulty-filter]``.

* Balanced before asking: the two responses are swapped for a seeded half of the rows (exact 1:1
  in input order), so the reasoning is written for the order the SFT data will show.
* Concurrent with a cap, through the shared OpenAI client (``r1reward_verl.openai_client``: one HTTP
  session for the run); transport faults are retried with backoff (``--request-retries``) and do
  not count as attempts; a row whose requests keep failing is reported and left for the next run.
* Resumable: the output is append-only JSONL keyed by id, flushed per row; a rerun skips the ids
  already there and never rewrites a line that was done: blank lines are skipped, only a torn last
  line (a crash while writing) is cut and redone, and any other line that is not a record stops the
  run naming it (``FILE:LINE``) with the file left as it is.
* Checked before any output is made (one line, exit code 2): the inputs (missing, unsupported,
  unreadable, wrong columns), an ``--out`` that is an input or a directory, an ``--api-key-env``
  naming an unset variable. A duplicate id in the input stops the run naming file and row
  (``--skip-invalid`` skips and counts it, ``rejected_duplicate_id``, like other bad rows).
* The API key comes from the environment variable named by ``--api-key-env``, never from arguments.
* ``--critiques``: instead of the reasoning, a critique of each response for critic-then-score
  (:mod:`r1reward_verl.data.critiques`: ``critique_1``, ``critique_2``, ``critic``; the pairs keep their order, no
  balancing), with the same checks, concurrency, retries and resume; for ``preprocess.pairs --critic-out``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

from r1reward_verl.data.critiques import critique_pair
from r1reward_verl.data.pairs import Balancer, swap
from r1reward_verl.data.records import BadRow, InvalidInput, Pair, base_dir_of, check_inputs, iter_raw_rows, normalize_pair
from r1reward_verl.cli import ArgumentParser, cli_main, non_negative_int, positive_int
from r1reward_verl.openai_client import api_key_from_env, chat_url, chat_with_retries, table1_messages
from r1reward_verl.resume import read_resumable
from r1reward_verl.reward.parse import parse_output


def openai_messages(p: Pair) -> list[dict]:
    """The Table 1 prompt of a pair as an OpenAI chat message (:func:`r1reward_verl.openai_client.table1_messages`)."""
    return table1_messages(p.question, p.response_1, p.response_2, [im["bytes"] for im in p.images])


def _record_id(line: bytes) -> Optional[str]:
    try:
        rec = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    return str(rec["id"]) if isinstance(rec, dict) and rec.get("id") is not None else None


def load_done(out: Path) -> set[str]:
    """Ids already annotated, read by :func:`r1reward_verl.resume.read_resumable` (a torn last line is redone, a
    bad line elsewhere stops the run naming ``FILE:LINE``, the file untouched)."""
    return set(read_resumable(out, _record_id, "an annotation record (a JSON object with an id)"))


async def annotate_pair(p: Pair, url: str, model: Optional[str], api_key: Optional[str], max_attempts: int,
                        timeout: float, request_retries: int, backoff: float) -> tuple[Optional[dict], Optional[str]]:
    """Up to ``max_attempts`` asks; returns (record, None) or (None, transport error kind)."""
    payload = {"messages": openai_messages(p), "temperature": 0.0}
    if model:
        payload["model"] = model
    reasoning = None
    attempts: str = "failed"
    for k in range(1, max_attempts + 1):
        content, _, error = await chat_with_retries(url, payload, api_key=api_key, timeout=timeout,
                                                    max_retries=request_retries, backoff=backoff)  # fmt: skip
        if content is None:
            return None, error
        parsed = parse_output(content)
        if parsed.pred == p.preferred:
            attempts = str(k)
            reasoning = parsed.reasoning if parsed.format_ok else content[: content.find("<answer>")].strip()
            break
    return {**pair_record(p, attempts, reasoning), "annotator": model or ""}, None


def pair_record(p: Pair, attempts: Optional[str], reasoning: Optional[str]) -> dict:
    """A pair as the annotator writes it (the generic pair format): images by path, else base64."""
    return {"id": p.id, "question": p.question, "images": [im["path"] or base64.b64encode(im["bytes"]).decode()
                                                         for im in p.images],
            "response_1": p.response_1, "response_2": p.response_2, "preferred": p.preferred, "source": p.source,
            "attempts": attempts if attempts in (None, "failed") else int(attempts), "reasoning": reasoning}  # fmt: skip


async def critiqued_record(p: Pair, url: str, model: Optional[str], api_key: Optional[str], timeout: float,
                           request_retries: int, backoff: float) -> tuple[Optional[dict], Optional[str]]:  # fmt: skip
    """``--critiques``: the pair as read plus both responses' critiques, or (None, error kind)."""
    critiques, error = await critique_pair(p, url, model, api_key, timeout, request_retries, backoff)
    if critiques is None:
        return None, error
    return {**pair_record(p, p.attempts, p.reasoning), "critique_1": critiques[0], "critique_2": critiques[1],
            "critic": model or ""}, None  # fmt: skip


async def annotate(inputs: list[str], out: str | Path, *, base_url: str, model: Optional[str] = None,
                   api_key_env: Optional[str] = None, concurrency: int = 8, max_attempts: int = 3, timeout: float = 120.0,
                   request_retries: int = 3, backoff: float = 1.0, seed: int = 0, balance: bool = True,
                   skip_invalid: bool = False, progress: bool = True, critiques: bool = False) -> dict:  # fmt: skip
    out = Path(out)
    balance = balance and not critiques  # a critique is of one response: the order does not matter
    sources = check_inputs(inputs, fmt="pairs")
    for source in sources:
        if out.exists() and Path(source).exists() and os.path.samefile(source, out):  # a hub name never exists
            raise InvalidInput(f"--out {out} is the input {source}: give the annotations a file of their own")
    if out.is_dir():
        raise InvalidInput(f"--out {out}: is a directory (give a .jsonl file)")
    api_key = api_key_from_env(api_key_env)
    if api_key_env and not api_key:
        raise InvalidInput(f"--api-key-env {api_key_env}: the environment variable (the API key) is not set")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidInput(f"--out {out}: cannot create its directory ({e.strerror or e})") from None
    done = load_done(out)
    url = chat_url(base_url)
    counts: Counter = Counter()
    errors: Counter = Counter()
    balancer = Balancer(seed)
    sem = asyncio.Semaphore(concurrency)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="critiques" if critiques else "annotate", unit=" pairs", file=sys.stderr, mininterval=1.0)
    fh = open(out, "a", encoding="utf-8")

    async def one(p: Pair, swapped: bool):
        async with sem:
            if critiques:
                record, error = await critiqued_record(p, url, model, api_key, timeout, request_retries, backoff)
            else:
                record, error = await annotate_pair(p, url, model, api_key, max_attempts, timeout, request_retries, backoff)
        if record is None:
            errors[error] += 1
            counts["request_failed"] += 1
        else:
            if not critiques:
                record["swapped"] = swapped
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            counts["annotated"] += 1
            if not critiques:
                counts[f"attempts_{record['attempts']}"] += 1
        if bar is not None:
            bar.update(1)

    try:
        pending: set[asyncio.Task] = set()
        seen: set[str] = set()  # ids of the input
        for source in sources:
            base_dir = base_dir_of(source)
            for raw in iter_raw_rows(source):
                counts["read"] += 1
                try:
                    p = normalize_pair(raw.data, base_dir)
                    if p.id in seen:
                        raise BadRow("duplicate_id", f"id {p.id!r} appeared before")
                except BadRow as e:
                    if not skip_invalid:
                        raise InvalidInput(f"{raw.file}: row {raw.row}: {e.reason}: {e} (use --skip-invalid to skip "
                                           "and count)") from None  # fmt: skip
                    counts[f"rejected_{e.reason}"] += 1
                    continue
                seen.add(p.id)
                swapped = balance and balancer.next_target() != p.preferred  # consumed for every row: stable on resume
                if p.id in done:
                    counts["done_before"] += 1
                    continue
                if swapped:
                    swap(p)
                pending.add(asyncio.create_task(one(p, swapped)))
                if len(pending) >= 4 * concurrency:  # bounded memory: wait for some to finish
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.gather(*pending)
    finally:
        fh.close()
        if bar is not None:
            bar.close()
    keys = ["read", "done_before", "annotated", "request_failed"]
    if not critiques:
        keys += [*(f"attempts_{k}" for k in range(1, max_attempts + 1)), "attempts_failed"]
    summary = {**{k: counts[k] for k in keys}, **counts, "request_errors": dict(errors)}
    rejected = sum(v for k, v in counts.items() if k.startswith("rejected_"))
    summary["accounted"] = counts["read"] == counts["done_before"] + counts["annotated"] + counts["request_failed"] + rejected
    return summary


@cli_main
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m preprocess.annotate",
                            description="Annotate preference pairs with reasoning and difficulty (Table 1 prompt).")  # fmt: skip
    parser.add_argument("--input", action="append", required=True)
    parser.add_argument("--out", required=True, help="append-only JSONL; rerun to resume")
    parser.add_argument("--base-url", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model")
    parser.add_argument("--api-key-env", help="NAME of the environment variable holding the API key")
    parser.add_argument("--concurrency", type=positive_int, default=8)
    parser.add_argument("--max-attempts", type=positive_int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--request-retries", type=non_negative_int, default=3)
    parser.add_argument("--backoff", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-balance", action="store_true")
    parser.add_argument("--skip-invalid", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--critiques", action="store_true",
                        help="a critique of each response (critic-then-score, for preprocess.pairs --critic-out) "
                             "instead of the Table 1 reasoning")  # fmt: skip
    args = parser.parse_args(argv)
    s = asyncio.run(annotate(args.input, args.out, base_url=args.base_url, model=args.model,
                             api_key_env=args.api_key_env, concurrency=args.concurrency,
                             max_attempts=args.max_attempts, timeout=args.timeout,
                             request_retries=args.request_retries, backoff=args.backoff, seed=args.seed,
                             balance=not args.no_balance, skip_invalid=args.skip_invalid,
                             progress=not args.no_progress, critiques=args.critiques))  # fmt: skip
    print(json.dumps(s))
    return 0 if s.get("request_failed", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
