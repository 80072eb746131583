"""Referee concurrency and parsing throughput, from one run.

    .venv/bin/python benchmarks/bench_referee.py [--quick | --rollouts 512 --latency 0.05 --outputs 10000]

1. Starts the scripted OpenAI-compatible referee on 127.0.0.1 with a fixed latency per request,
   scores ``--rollouts`` rollouts whose result is 1 (so each asks the referee) all at once, as
   verl's reward loop does, and prints the wall time as a fraction of the serial time
   (rollouts x latency). Goal <= 3 %.
2. Parses ``--outputs`` typical outputs (reasoning of a few hundred words) and prints outputs/s,
   plus the time for one 200,000-character output.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from r1reward_verl.reward.parse import parse_output  # noqa: E402
from reward_fns.r1_reward import compute_score  # noqa: E402
from tests.support.servers import running_server  # noqa: E402

WORDS = "response image answer better detail accurate hallucination question colour object shows describes".split()


def typical_output(rng: random.Random, label: int) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(150, 400)))
    return f"<think>{words}. Overall Response {label} is better.</think><answer>{label}</answer>"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=512)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=512, help="referee_max_concurrency")
    parser.add_argument("--outputs", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true",
                        help="smallest sizes: a smoke run whose numbers mean nothing (tests/test_benchmarks.py runs it)")
    args = parser.parse_args(argv)
    if args.quick:  # the small sizes become the defaults; sizes given explicitly still win
        parser.set_defaults(**{"rollouts": 32, "latency": 0.01, "outputs": 200})
        args = parser.parse_args(argv)
    rng = random.Random(0)

    outputs = [typical_output(rng, 1) for _ in range(args.rollouts)]
    with running_server("scripted", "--behaviour", "rule", "--latency", str(args.latency)) as addr:
        kwargs = {"referee_base_url": f"http://{addr}/v1", "referee_max_concurrency": args.concurrency}

        async def score_all():
            return await asyncio.gather(*[compute_score("bench", o, "1", {"question": "Q"}, **kwargs) for o in outputs])

        asyncio.run(compute_score("bench", outputs[0], "1", {}, **kwargs))  # warm-up
        t0 = time.perf_counter()
        results = asyncio.run(score_all())
        wall = time.perf_counter() - t0
    ok = sum(r["referee_ok"] is True for r in results)
    serial = args.rollouts * args.latency
    print(f"referee: {args.rollouts} rollouts x {args.latency * 1e3:.0f} ms, cap {args.concurrency}: "
          f"wall {wall:.3f} s vs serial {serial:.1f} s -> {100 * wall / serial:.2f} % of serial "
          f"(goal <= 3 %); verdicts ok {ok}/{len(results)}")  # fmt: skip

    texts = [typical_output(rng, rng.choice((1, 2))) for _ in range(args.outputs)]
    t0 = time.perf_counter()
    parsed = [parse_output(t) for t in texts]
    dt = time.perf_counter() - t0
    assert all(p.format_ok for p in parsed)
    mean_chars = sum(map(len, texts)) / len(texts)
    print(f"parsing: {args.outputs} typical outputs (mean {mean_chars:.0f} chars) in {dt:.3f} s -> "
          f"{args.outputs / dt:,.0f} outputs/s")
    long = "<think>" + "x" * 200_000 + "</think><answer>1</answer>"
    t0 = time.perf_counter()
    parse_output(long)
    print(f"parsing: one 200,000-character output in {1e3 * (time.perf_counter() - t0):.2f} ms")


if __name__ == "__main__":
    main()
