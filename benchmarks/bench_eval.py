"""Prompt tokens processed for voting@k: one request with n = k against k separate requests, from one run.

    .venv/bin/python benchmarks/bench_eval.py [--quick | --pairs 12 --k 8 --new-tokens 4]

The tiny Qwen2.5-VL on CPU (transformers backend) answers the first ``--pairs`` pairs of the real
MM-RLHF-RewardBench file (stand-in images and 8-frame videos drawn in a temporary folder) with ``k``
samples each, twice: shared prefix (one prefill, its KV cache repeated for the k samples, as vLLM
does for ``n = k``) and k separate requests. Tokens are counted by a hook on the model's input
embedding, i.e. every token the model processed; prompt tokens = all tokens minus the generated
tokens fed back (``min_new_tokens = max_new_tokens`` makes that number exact and equal in both
modes). Also prints the backend's own accounting and the wall-time ratio. Goal: >= 2x fewer
prompt tokens.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support (the media stand-ins)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=4)
    ap.add_argument("--quick", action="store_true",
                    help="smallest sizes: a smoke run whose numbers mean nothing (tests/test_benchmarks.py runs it)")
    args = ap.parse_args(argv)
    if args.quick:  # the small sizes become the defaults; sizes given explicitly still win
        ap.set_defaults(**{"pairs": 2, "k": 2, "new_tokens": 2})
        args = ap.parse_args(argv)

    from r1reward_verl.eval.backends import TransformersBackend
    from tests.support.media import make_media
    from r1reward_verl.eval.loaders import load_benchmark
    from r1reward_verl.eval.runner import build_request, chosen_first
    from r1reward_verl.tiny import build_tiny_qwen25vl

    bench = Path(__file__).resolve().parent.parent / "tests" / "data" / "benchmarks" / "mm_rlhf_rewardbench.jsonl.gz"
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(build_tiny_qwen25vl(Path(tmp) / "tiny"))
        make_media(bench, tmp, frames=8)
        pairs = load_benchmark("mm_rlhf_rewardbench", bench, tmp, max_frames=8).pairs
        # a spread of categories (the file is ordered by category): every n-th pair
        step = max(1, len(pairs) // args.pairs)
        pairs = pairs[::step][: args.pairs]
        requests = [build_request(p, chosen_first(p, 0), greedy=False, n=args.k) for p in pairs]
        results = {}
        for mode, share in (("one n=k request", True), ("k separate requests", False)):
            be = TransformersBackend(model_dir, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                     share_prefix=share)  # fmt: skip
            counted = {"tokens": 0}
            hook = be.model.get_input_embeddings().register_forward_hook(
                lambda mod, inp, out: counted.__setitem__("tokens", counted["tokens"] + inp[0].numel())
            )
            t0 = time.perf_counter()
            out = be.run(requests, progress=False)
            secs = time.perf_counter() - t0
            hook.remove()
            fed_back = len(requests) * args.k * (args.new_tokens - 1)
            results[mode] = {"prompt_tokens": counted["tokens"] - fed_back, "accounted": sum(r.prompt_tokens for r in out),
                             "seconds": secs, "samples": sum(len(r.samples) for r in out)}  # fmt: skip
    one, sep = results["one n=k request"], results["k separate requests"]
    prompt_lens = [be.encode(r)["input_ids"].shape[1] for r in requests[:3]]
    print(f"{len(requests)} prompts (first lengths {prompt_lens} tokens, incl. image/video tokens), k = {args.k}, "
          f"{args.new_tokens} new tokens per sample")  # fmt: skip
    for mode, r in results.items():
        print(f"  {mode:22s} prompt tokens processed {r['prompt_tokens']:8d} (backend's account {r['accounted']:8d}), "
              f"{r['samples']} samples, {r['seconds']:.2f} s")  # fmt: skip
    print(f"prompt tokens, separate / shared: {sep['prompt_tokens'] / one['prompt_tokens']:.2f}x fewer (goal >= 2x)")
    print(f"wall time, separate / shared: {sep['seconds'] / one['seconds']:.2f}x")


if __name__ == "__main__":
    main()
