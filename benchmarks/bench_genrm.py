"""The pairwise judge as a reward: wall time of a group's judging against the serial sum of its calls, one run.

    .venv/bin/python benchmarks/bench_genrm.py [--quick | --n 8 --groups 16 --latency 0.05 --cap 64]

Starts the scripted OpenAI-compatible judge on 127.0.0.1 with a fixed latency per request, then for each
mode judges one group of ``--n`` rollouts and ``--groups`` groups at once (a training step: verl's agent loop
hands a step's rollouts to the reward manager concurrently) with the manager's scoring
(``PairwiseGroupRewardManager.score_group``: ``r1reward_verl.judge.core`` round robin / knockout, both orders,
one judge client with the default cap ``judge_max_concurrency`` = 64). Prints calls per group (with the
formula), the wall time and the serial time (calls x latency) and their ratio. Goal <= 5 % of serial.
A knockout's rounds are sequential: one group cannot go below rounds/calls of serial (3/14 for n = 8).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from r1reward_verl.judge.core import OpenAIJudge, expected_calls  # noqa: E402
from r1reward_verl.judge.group_manager import GroupSettings, PairwiseGroupRewardManager  # noqa: E402
from tests.support.servers import running_server  # noqa: E402


def scorer(url: str, mode: str, cap: int) -> PairwiseGroupRewardManager:
    """The manager's scoring without verl's worker around it (no tokenizer needed to score decoded answers)."""
    m = PairwiseGroupRewardManager.__new__(PairwiseGroupRewardManager)
    m.settings = GroupSettings(judge_mode=mode)
    m.judge = OpenAIJudge(url, "judge", max_tokens=64, timeout=30.0, max_retries=1, backoff=0.01, concurrency=cap)
    return m


async def judge_groups(m: PairwiseGroupRewardManager, n: int, groups: int) -> tuple[float, int]:
    answers = [f"Answer {'x' * i}." for i in range(n)]
    t0 = time.perf_counter()
    results = await asyncio.gather(*[m.score_group(f"Question {g}?", [], answers) for g in range(groups)])
    wall = time.perf_counter() - t0
    calls = sum(info["pairwise_calls"] for res in results for _, info in res)
    return wall, calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="rollouts per group (GRPO's n)")
    parser.add_argument("--groups", type=int, default=16, help="groups judged at once (prompts per step)")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--cap", type=int, default=64, help="judge_max_concurrency (the default)")
    parser.add_argument("--quick", action="store_true",
                        help="smallest sizes: a smoke run whose numbers mean nothing (tests/test_benchmarks.py runs it)")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(n=4, groups=2, latency=0.01)
        args = parser.parse_args(argv)
    with running_server("scripted", "--behaviour", "position_biased", "--latency", str(args.latency)) as addr:
        url = f"http://{addr}/v1"
        for mode, sched in (("group", "round_robin"), ("knockout", "knockout")):
            m = scorer(url, mode, args.cap)
            for groups in (1, args.groups):
                wall, calls = asyncio.run(judge_groups(m, args.n, groups))
                per_group = calls // groups
                assert per_group == expected_calls(args.n, sched), (per_group, expected_calls(args.n, sched))
                serial = calls * args.latency
                bound = ""
                if mode == "knockout" and groups == 1:
                    rounds = math.ceil(math.log2(args.n))
                    bound = f"; sequential rounds bound {100 * rounds / per_group:.1f} %"
                print(f"genrm {mode}: {groups} group(s) x {args.n} rollouts, {per_group} calls per group "
                      f"(formula {'n(n-1)' if mode == 'group' else '2(n-1)'}), {args.latency * 1000:.0f} ms per call, "
                      f"cap {args.cap}: wall {wall:.3f} s vs serial {serial:.2f} s -> {100 * wall / serial:.2f} % of serial "
                      f"(goal <= 5 %{bound})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
