"""Evaluate a generative multimodal reward model on VL-RewardBench, Multimodal RewardBench, MM-RLHF-RewardBench.

    # greedy + voting@k/any@k for k in 1..15 from one n=15 pass, both response orders, vLLM on GPU
    python -m r1reward_verl.eval run --model /ckpt/r1reward_hf --backend vllm --k 15 --swap \\
        --bench vl_rewardbench=/bench/vl_rewardbench.jsonl --media-root vl_rewardbench=/bench \\
        --bench mm_rlhf_rewardbench=/bench/mm_rlhf_rewardbench.jsonl --out runs/eval

    # recompute metrics.json, table.md and the plots from items.jsonl alone (no model)
    python -m r1reward_verl.eval score --items runs/eval/items.jsonl --out runs/eval_rescored

    # what the loaders read (counts per category and group, rejects), no model
    python -m r1reward_verl.eval inspect --bench mm_rlhf_rewardbench=/bench/mm_rlhf_rewardbench.jsonl

Exit codes: 0 done; 2 a user error (a file, row or option; one line on stderr); 1 pairs whose requests
failed after the retries (one line on stderr; not scored and not saved as finished, so rerunning the
same command asks for them again; no metrics.json / table.md unless --report-failed, which scores the
other pairs and counts the failed ones apart).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from r1reward_verl.cli import ArgumentParser, UserError, cli_main, non_negative_int, positive_int
from r1reward_verl.eval.loaders import BENCHMARKS, detect_benchmark, load_benchmark

EXIT_FAILED_REQUESTS = 1


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values or []:
        name, _, path = v.partition("=")
        if path and name in BENCHMARKS:
            pass
        elif what == "bench" and (not path or Path(v).exists()):
            name, path = detect_benchmark(v), v
        elif path:
            raise UserError(f"--{what} {v}: unknown benchmark {name!r}; one of {', '.join(BENCHMARKS)}")
        else:
            raise UserError(f"--{what} {v}: wants BENCHMARK=PATH with BENCHMARK one of {', '.join(BENCHMARKS)}")
        if name in out:
            raise UserError(f"--{what}: {name} given twice ({out[name]} and {path})")
        out[name] = path
    return out


def _ks(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants integers >= 1 separated by commas, got {text!r}") from None
    if any(k < 1 for k in ks):
        raise argparse.ArgumentTypeError(f"wants integers >= 1 separated by commas, got {text!r}")
    return ks


def _backend(args):
    """A function making the backend (called by ``evaluate`` once the benchmarks are read)."""
    if args.backend == "openai":
        from r1reward_verl.eval.backends import OpenAIBackend

        try:  # made now: a missing API key variable or a bad URL stops before anything is read
            backend = OpenAIBackend(args.base_url, args.model, api_key_env=args.api_key_env, concurrency=args.concurrency,
                                    max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                    max_retries=args.max_retries)  # fmt: skip
        except ValueError as e:
            raise UserError(f"--base-url / --api-key-env: {e}") from None
        return lambda: backend

    def make():
        try:
            if args.backend == "scalar" and args.critic:
                from r1reward_verl.eval.critic import CriticThenScoreBackend

                return CriticThenScoreBackend(args.model, args.critic, max_new_tokens=args.max_new_tokens,
                                              batch_size=max(args.batch_size, 16), seed=args.seed)  # fmt: skip
            if args.backend == "scalar":
                from r1reward_verl.eval.scalar import ScalarBackend

                return ScalarBackend(args.model, batch_size=max(args.batch_size, 16))
            if args.backend == "vllm":
                from r1reward_verl.eval.backends import VLLMBackend

                return VLLMBackend(args.model, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                   seed=args.seed, tensor_parallel_size=args.tensor_parallel_size)  # fmt: skip
            from r1reward_verl.eval.backends import TransformersBackend

            return TransformersBackend(args.model, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                       seed=args.seed, share_prefix=not args.no_share_prefix, batch_size=args.batch_size)  # fmt: skip
        except OSError as e:  # transformers: no such model directory or name
            raise UserError(f"--model {args.model}: cannot load it: {str(e).splitlines()[0]}") from None

    return make


def _parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m r1reward_verl.eval", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = ap.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="generate with a model and score")
    run.add_argument("--model", required=True, help="HF model directory or name (openai: the served model name)")
    run.add_argument("--bench", action="append", required=True, help="BENCHMARK=FILE (or FILE: detected)")
    run.add_argument("--media-root", action="append", default=[], help="BENCHMARK=DIR where relative media paths start")
    run.add_argument("--out", required=True)
    run.add_argument("--backend", choices=["vllm", "transformers", "openai", "scalar"], default="vllm",
                     help="scalar: a scalar (Bradley-Terry) reward model, each response scored on its own; chosen "
                          "by itself when --model is one (r1reward_verl.bt)")  # fmt: skip
    run.add_argument("--critic", help="critic-then-score: with a scalar --model, this generative model first writes a "
                                       "critique of each response (r1reward_verl.data.outputs), then --model scores both")
    run.add_argument("--base-url", help="openai backend: e.g. http://127.0.0.1:8000/v1")
    run.add_argument("--api-key-env", help="openai backend: NAME of the environment variable holding the API key")
    run.add_argument("--concurrency", type=positive_int, default=16, help="openai backend: requests in flight")
    run.add_argument("--max-retries", type=non_negative_int, default=3, help="openai backend: retries of a failed request")
    run.add_argument("--report-failed", action="store_true",
                     help="pairs whose requests failed: score the others and count these apart (exit code 1 still)")
    run.add_argument("--k", type=non_negative_int, default=0, help="samples per prompt (one request with n=k); 0: greedy only")
    run.add_argument("--ks", type=_ks, help="k values to report, e.g. 1,3,5,7 (default every k up to --k)")
    run.add_argument("--no-greedy", action="store_true")
    run.add_argument("--swap", action="store_true", help="also ask every pair in the other order")
    run.add_argument("--temperature", type=float, default=1.0)
    run.add_argument("--max-new-tokens", type=positive_int, default=1024)
    run.add_argument("--max-frames", type=positive_int, default=32, help="frames per video (evenly spaced)")
    run.add_argument("--limit", type=positive_int, help="first N pairs of each benchmark (smoke runs)")
    run.add_argument("--skip-invalid", action="store_true", help="skip bad pairs (counted by reason) instead of stopping")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--tensor-parallel-size", type=positive_int, default=1)
    run.add_argument("--no-share-prefix", action="store_true", help="transformers: n separate requests (for comparison)")
    run.add_argument("--batch-size", type=positive_int, default=1,
                     help="transformers: prompts per generate call, left-padded (greedy outputs as with 1; ~4x faster on CPU at 16)")
    run.add_argument("--chunk-pairs", type=positive_int, default=256, help="pairs per backend call; each finished chunk is saved")
    run.add_argument("--no-resume", action="store_true", help="start over even if --out holds finished chunks of this run")
    run.add_argument("--no-progress", action="store_true")

    sc = sub.add_parser("score", help="recompute metrics.json, table.md, plots from a per-item JSONL")
    sc.add_argument("--items", required=True)
    sc.add_argument("--out", required=True)
    sc.add_argument("--ks", type=_ks)
    sc.add_argument("--model-name", default="model")

    ins = sub.add_parser("inspect", help="what the loaders read: counts per category, groups, rejects")
    ins.add_argument("--bench", action="append", required=True)
    ins.add_argument("--skip-invalid", action="store_true")
    return ap


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.cmd == "score":
        from r1reward_verl.eval.runner import read_items, score

        doc = score(read_items(args.items), args.out, ks=args.ks, model_name=args.model_name)
        print(json.dumps({b: {k: v for k, v in m.items() if not isinstance(v, dict)} for b, m in doc.items()}, indent=1))
        return 0
    if args.cmd == "inspect":
        for bench, path in _pairs(args.bench, "bench").items():
            loaded = load_benchmark(bench, path, skip_invalid=args.skip_invalid, load_media=False)
            cats = Counter(p.category for p in loaded.pairs)
            groups = {c: len({p.group for p in loaded.pairs if p.category == c}) for c in cats}
            print(json.dumps({"benchmark": bench, **loaded.summary(), "categories": dict(cats),
                              "groups": len({p.group for p in loaded.pairs}), "groups_by_category": groups}))  # fmt: skip
        return 0

    from r1reward_verl.eval.runner import FailedPairs, evaluate

    if args.no_greedy and not args.k:
        ap.error("--no-greedy wants --k >= 1 (samples), else there is nothing to ask")
    if args.backend == "openai" and not args.base_url:
        ap.error("--backend openai needs --base-url")
    if args.backend != "openai":
        from r1reward_verl.bt.score import is_scalar_model

        if is_scalar_model(args.model):
            args.backend = "scalar"
        elif args.backend == "scalar":
            raise UserError(f"--backend scalar: --model {args.model} is not a scalar reward model (its config.json "
                            "names no R1RQwen2_5_VLForTokenClassification)")  # fmt: skip
    if args.critic and args.backend != "scalar":
        ap.error("--critic needs a scalar reward model as --model (critic-then-score)")
    if args.backend == "scalar" and (args.k or args.no_greedy):
        ap.error("a scalar reward model has no samples: --k must be 0 (its score is deterministic)")
    benches, roots = _pairs(args.bench, "bench"), _pairs(args.media_root, "media-root")
    for bench, root in roots.items():
        if bench not in benches:
            raise UserError(f"--media-root {bench}={root}: no --bench {bench} given")
        if not Path(root).is_dir():
            raise UserError(f"--media-root {bench}={root}: not a directory")
    try:
        doc = evaluate(benches, _backend(args), args.out, k=args.k, ks=args.ks, greedy=not args.no_greedy,
                       swap=args.swap, seed=args.seed, media_roots=roots, limit=args.limit,
                       skip_invalid=args.skip_invalid, max_frames=args.max_frames,
                       model_name=f"{args.model} (critic {args.critic})" if args.critic else args.model,
                       progress=not args.no_progress, chunk_pairs=args.chunk_pairs, resume=not args.no_resume,
                       report_failed=args.report_failed)  # fmt: skip
    except FailedPairs as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED_REQUESTS
    print(open(f"{args.out}/table.md").read())
    run = doc["_run"]
    print(f"outputs in {args.out}: items.jsonl metrics.json table.md accuracy_vs_k*.png; "
          f"{run['prompt_tokens_processed']} prompt tokens processed; {run['failed_requests']} failed requests")  # fmt: skip
    if run["failed_pairs"]:
        print(f"error: {run['failed_pairs']} pairs got no answer (their requests failed after the retries): not "
              "scored, counted as 'failed' in metrics.json and table.md; rerun the same command to ask for them again",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED_REQUESTS
    return 0


if __name__ == "__main__":
    sys.exit(main())
