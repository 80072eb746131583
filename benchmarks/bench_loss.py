"""Cost of the StableReinforce loss relative to verl's ``vanilla`` PPO loss, from one run.

    .venv/bin/python benchmarks/bench_loss.py [--quick | --rows 256 --cols 4096 --repeats 30]

Both losses run on the same fp32 (rows x cols) tensors, forward + backward, through the functions
verl's ``ppo_loss`` calls (``get_policy_loss_fn``), alternating so machine noise hits both alike.
Prints the median times and their ratio (ours / vanilla). Goal: <= 1.15x.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl.utils.config import omega_conf_to_dataclass

import r1reward_verl.algos  # noqa: F401  (registers stable_reinforce even if plug-ins are disabled)
from r1reward_verl.config import compose_config

OVERRIDES = [
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
]


def _time_once(fn, old, new_base, adv, mask, config):
    new = new_base.clone().requires_grad_(True)
    t0 = time.perf_counter()
    loss, _ = fn(old, new, adv, mask, loss_agg_mode="token-mean", config=config)
    loss.backward()
    return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true",
                        help="smallest sizes: a smoke run whose numbers mean nothing (tests/test_benchmarks.py runs it)")
    args = parser.parse_args(argv)
    if args.quick:  # the small sizes become the defaults; sizes given explicitly still win
        parser.set_defaults(**{"rows": 16, "cols": 256, "repeats": 3})
        args = parser.parse_args(argv)

    torch.manual_seed(0)
    shape = (args.rows, args.cols)
    old = -torch.rand(shape) * 5
    new_base = old + torch.randn(shape) * 3  # a spread of log-ratios, some beyond log(1e3)
    adv = torch.randn(shape)
    mask = (torch.rand(shape) > 0.1).float()

    ours_cfg = omega_conf_to_dataclass(compose_config("r1reward", OVERRIDES).actor_rollout_ref.actor)
    vanilla_cfg = omega_conf_to_dataclass(
        compose_config("r1reward", [*OVERRIDES, "actor_rollout_ref.actor.policy_loss.loss_mode=vanilla"]).actor_rollout_ref.actor
    )
    dual_cfg = omega_conf_to_dataclass(
        compose_config("r1reward", [*OVERRIDES, "actor_rollout_ref.actor.policy_loss.dual_clip=true"]).actor_rollout_ref.actor
    )
    ours, vanilla = get_policy_loss_fn("stable_reinforce"), get_policy_loss_fn("vanilla")

    for _ in range(3):  # warm-up
        _time_once(ours, old, new_base, adv, mask, ours_cfg)
        _time_once(vanilla, old, new_base, adv, mask, vanilla_cfg)
    t_ours, t_vanilla, t_dual = [], [], []
    for _ in range(args.repeats):
        t_vanilla.append(_time_once(vanilla, old, new_base, adv, mask, vanilla_cfg))
        t_ours.append(_time_once(ours, old, new_base, adv, mask, ours_cfg))
        t_dual.append(_time_once(ours, old, new_base, adv, mask, dual_cfg))
    m_ours, m_vanilla, m_dual = statistics.median(t_ours), statistics.median(t_vanilla), statistics.median(t_dual)
    print(f"tensors: {args.rows}x{args.cols} fp32, forward+backward, median of {args.repeats}, torch threads {torch.get_num_threads()}")
    print(f"vanilla (verl):          {m_vanilla * 1e3:8.2f} ms")
    print(f"stable_reinforce (ours): {m_ours * 1e3:8.2f} ms")
    print(f"stable_reinforce + dual clip (like vanilla's): {m_dual * 1e3:8.2f} ms")
    print(f"ratio ours/vanilla: {m_ours / m_vanilla:.3f}x (goal <= 1.15x)")
    print(f"ratio ours+dual clip/vanilla: {m_dual / m_vanilla:.3f}x")


if __name__ == "__main__":
    main()
