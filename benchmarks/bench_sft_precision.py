"""verl's SFT trainer on CPU: its default bf16 autocast against the fp32 compute of our CPU overrides, one run.

    .venv/bin/python benchmarks/bench_sft_precision.py [--quick | --steps 30 --batch 16]

verl's FSDP engine autocasts the forward to ``engine.mixed_precision.param_dtype``, bf16 when it is unset. A CPU
without bf16 instructions (this one: AVX2) emulates bf16 matrix products. ``r1reward_verl.cpu.prepare``'s
``SFT_CPU_OVERRIDES`` set fp32 (and ``hydra_configs/r1reward_cpu.yaml`` does for the RL actor). The miniature's
cold start (the main job's data and tiny model, lr 2e-3) is trained for ``--steps`` steps of ``--batch`` rows on
``sft_procs(batch)`` processes, once with verl's default put back (``++engine.mixed_precision`` with bf16) and
once as the main job runs it. Wall time includes torchrun's start-up (~25 s each). Goal: >= 2x faster.
"""

from __future__ import annotations

import argparse

from bench_sft_procs import time_sft

BF16 = "++engine.mixed_precision={param_dtype:bf16,reduce_dtype:fp32,buffer_dtype:fp32}"  # verl's default


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--quick", action="store_true",
                    help="smallest sizes: a smoke run whose numbers mean nothing (tests/test_benchmarks.py runs it)")
    args = ap.parse_args(argv)
    if args.quick:
        ap.set_defaults(steps=2, batch=4)
        args = ap.parse_args(argv)

    from r1reward_verl.cpu.sft import sft_procs

    n = sft_procs(args.batch)
    bf16, fp32 = "bf16 autocast (verl's default)", "fp32 (ours)"
    secs, loss = time_sft({bf16: (n, [BF16]), fp32: (n, [])}, args.steps, args.batch,
                          n_train=400 if args.quick else 2000)  # fmt: skip
    print(f"SFT wall time on {n} process(es), bf16 autocast / fp32: {secs[bf16] / secs[fp32]:.2f}x faster (goal >= 2x); "
          f"last loss {loss[bf16]:.4f} / {loss[fp32]:.4f}")  # fmt: skip

if __name__ == "__main__":
    main()
