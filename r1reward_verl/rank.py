"""Rank candidate answers with a trained R1-Reward model as a pairwise judge (``r1reward_verl.pairwise``).

    python -m r1reward_verl.rank --input IN.jsonl --out OUT.jsonl --mode round_robin|knockout \
        --backend openai --base-url http://127.0.0.1:8000/v1 [--model NAME] [--api-key-env VAR] [--k K] [--concurrency C]
    python -m r1reward_verl.rank ... --backend transformers --model /ckpt/r1reward_hf      # CPU or one GPU
    python -m r1reward_verl.rank ... --backend vllm --model /ckpt/r1reward_hf              # vLLM's offline engine
        [--kv-cache-memory-bytes 67108864 --max-model-len 1024]                         # (on vLLM-CPU)

Input row: ``{"id", "question", "images": [...], "candidates": ["...", ...]}``; images are file paths
(relative to the input file, or absolute), ``data:`` URIs or base64 strings (``preprocess.records.load_image``).
Output row: the input row (images as given) plus ``ranking`` (candidate indices, best first), ``scores``
(per candidate: round robin = share of its comparisons won, a tie or an unparsable verdict = 1/2;
knockout = round reached, normalised to [0, 1]), ``judge_calls`` (calls to the judge: one per order of
a comparison, each asking ``k`` samples in one request) and ``judge`` (all counters: attempts with
retries, samples, unparsable, failed calls, position agreement, error kinds).

A bad row (bad JSON, missing/empty field, fewer than 2 candidates, missing or undecodable image,
duplicate id) stops the run with ``FILE: row N: reason`` (exit code 2) before the judge is asked;
``--skip-invalid`` skips and counts them instead. The summary (rows, skipped, counters) goes to stderr
and ``OUT.summary.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Optional

from r1reward_verl.pairwise import MODES, BackendJudge, JudgeStats, OpenAIJudge, rank_group


class InvalidRow(Exception):
    """A bad input row; ``reason`` is the key it is counted under with ``--skip-invalid``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _row(rec: Any, base_dir: Path) -> tuple[str, list[str], list[bytes]]:
    from preprocess.records import BadRow, load_image

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
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
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
                    raise InvalidRow(e.reason, f"{path}: row {n}: {e}") from None
                skipped[e.reason] = skipped.get(e.reason, 0) + 1
                continue
            rows.append((rec, question, cands, images))
    return rows, skipped


def make_judge(args) -> Any:
    if args.backend == "openai":
        if not args.base_url:
            raise SystemExit("error: --backend openai needs --base-url")
        return OpenAIJudge(args.base_url, args.model, api_key_env=args.api_key_env, temperature=args.temperature,
                           max_tokens=args.max_new_tokens, timeout=args.timeout, max_retries=args.max_retries,
                           backoff=args.backoff, concurrency=args.concurrency)  # fmt: skip
    if not args.model:
        raise SystemExit(f"error: --backend {args.backend} needs --model (a local checkpoint)")
    temperature = 1.0 if args.temperature is None else args.temperature
    if args.backend == "transformers":
        from r1reward_verl.eval.backends import TransformersBackend

        return BackendJudge(TransformersBackend(args.model, max_new_tokens=args.max_new_tokens, temperature=temperature,
                                                device=args.device, dtype=args.dtype))  # fmt: skip
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001
        raise SystemExit(f"error: --backend vllm is not available here (cannot import vllm: {e}); use --backend "
                         "openai against `vllm serve MODEL` or --backend transformers") from None
    from r1reward_verl.eval.backends import VLLMBackend

    return BackendJudge(VLLMBackend(args.model, max_new_tokens=args.max_new_tokens, temperature=temperature,
                                    max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization,
                                    kv_cache_memory_bytes=args.kv_cache_memory_bytes))


async def rank_rows(judge, rows, *, mode: str, k: int, swap: bool, concurrency: int) -> tuple[list[dict], JudgeStats]:
    total = JudgeStats()
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(rec, question, cands, images):
        async with sem:
            res = await rank_group(judge, question, images, cands, mode=mode, k=k, swap=swap)
        total.add(res.stats)
        out = dict(rec)
        out.update(ranking=res.ranking, scores=res.scores, judge_calls=res.stats.calls, judge=res.stats.as_dict())
        if res.rounds_reached is not None:
            out["rounds_reached"] = res.rounds_reached
        return out

    outs = await asyncio.gather(*[one(*r) for r in rows])
    return list(outs), total


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m r1reward_verl.rank", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=MODES, default="round_robin")
    p.add_argument("--backend", choices=["openai", "transformers", "vllm"], default="openai")
    p.add_argument("--base-url")
    p.add_argument("--model", help="model name at the endpoint (openai) or checkpoint path (transformers, vllm)")
    p.add_argument("--api-key-env", help="NAME of the environment variable holding the API key")
    p.add_argument("--k", type=int, default=1, help="samples per order (majority vote); one request with n=k")
    p.add_argument("--no-swap", action="store_true", help="ask each comparison in one order only (position bias stays)")
    p.add_argument("--concurrency", type=int, default=16, help="judge requests in flight (openai)")
    p.add_argument("--temperature", type=float, default=None, help="default: 0 for k=1, 1.0 for k>1")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--backoff", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm: share of GPU memory")
    p.add_argument("--kv-cache-memory-bytes", type=int, default=None,
                   help="vllm: a fixed KV cache instead of the share (on vLLM-CPU, e.g. 67108864)")
    p.add_argument("--max-model-len", type=int, default=None, help="vllm: context length (default: the model's)")
    p.add_argument("--skip-invalid", action="store_true")
    args = p.parse_args(argv)
    if args.k < 1:
        p.error("--k must be >= 1")
    if args.concurrency < 1:
        p.error("--concurrency must be >= 1")
    inp = Path(args.input)
    if not inp.is_file():
        print(f"error: {inp}: no such file", file=sys.stderr)
        return 2
    try:
        rows, skipped = read_rows(inp, args.skip_invalid)
    except InvalidRow as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        judge = make_judge(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outs, total = asyncio.run(rank_rows(judge, rows, mode=args.mode, k=args.k, swap=not args.no_swap,
                                        concurrency=args.concurrency))  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in outs:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(out)
    summary = {"rows": len(outs), "skipped_invalid": sum(skipped.values()), "skipped_by_reason": skipped,
               "mode": args.mode, "k": args.k, "swap": not args.no_swap, "backend": args.backend, **total.as_dict()}  # fmt: skip
    out.with_name(out.name + ".summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
