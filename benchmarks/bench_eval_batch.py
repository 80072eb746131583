"""Evaluation wall time on CPU: the transformers backend with ``batch_size`` B against one prompt at a time, one run.

    .venv/bin/python benchmarks/bench_eval_batch.py [--quick | --pairs 100 --batch-size 16 --k 3 --new-tokens 32]

The tiny Qwen2.5-VL (random weights; ``min_new_tokens = max_new_tokens``, so both modes generate the same
number of tokens) answers the synthetic colour task's held-out pairs (``preprocess.synth``, the demo's
benchmark, in VL-RewardBench's format) through the real evaluator (``r1reward_verl.eval.runner.evaluate``),
both orders, greedy + ``k`` samples: once with ``batch_size=1`` (one ``generate`` per prompt, samples from
one shared prefill) and once batched (prompts left-padded, one ``generate`` per batch). Prints the wall-time
ratio and how many greedy outputs agree (batching changes float rounding only; the samples differ, being
drawn from another seed stream). Goal: >= 3x faster.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--quick", action="store_true",
                    help="smallest sizes: a smoke run whose numbers mean nothing (tests/test_benchmarks.py runs it)")
    args = ap.parse_args(argv)
    if args.quick:  # the small sizes become the defaults; sizes given explicitly still win
        ap.set_defaults(**{"pairs": 4, "batch_size": 2, "k": 1, "new_tokens": 2})
        args = ap.parse_args(argv)

    from r1reward_verl.demo.synth import write_dataset
    from r1reward_verl.eval.backends import TransformersBackend
    from r1reward_verl.eval.runner import evaluate, read_items
    from r1reward_verl.tiny import build_tiny_qwen25vl

    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp) / "data", n_train=2, n_heldout=args.pairs, seed=0)
        heldout = Path(tmp) / "data" / "heldout"
        model = str(build_tiny_qwen25vl(Path(tmp) / "tiny"))
        secs, greedy = {}, {}
        for bs in (1, args.batch_size):
            be = TransformersBackend(model, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, batch_size=bs)
            out = Path(tmp) / f"out_{bs}"
            t0 = time.perf_counter()
            evaluate({"vl_rewardbench": str(heldout / "vl_rewardbench.jsonl")}, be, out, k=args.k, swap=True,
                     media_roots={"vl_rewardbench": str(heldout)}, progress=False)  # fmt: skip
            secs[bs] = time.perf_counter() - t0
            items = read_items(out / "items.jsonl")
            greedy[bs] = [r["outputs"][0] for r in items] + [r["swapped"]["outputs"][0] for r in items]
            print(f"batch_size {bs}: {len(greedy[bs])} prompts x (greedy + {args.k} samples) in {secs[bs]:.1f} s", flush=True)
    same = sum(a == b for a, b in zip(greedy[1], greedy[args.batch_size]))
    print(f"eval wall time, batch_size 1 / {args.batch_size}: {secs[1] / secs[args.batch_size]:.2f}x faster "
          f"(goal >= 3x); greedy outputs equal {same}/{len(greedy[1])}")  # fmt: skip


if __name__ == "__main__":
    main()
