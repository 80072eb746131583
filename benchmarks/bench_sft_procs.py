"""verl's SFT trainer on CPU: one process against ``sft_procs`` data-parallel processes (gloo), one run.

    .venv/bin/python benchmarks/bench_sft_procs.py [--quick | --steps 120 --batch 16]

The miniature's cold start (``r1reward_verl.demo``: the synthetic colour pairs through ``preprocess.pairs``,
the tiny Qwen2.5-VL of the main job, lr 2e-3) is trained for ``--steps`` steps of ``--batch`` rows by
``torchrun -m verl.trainer.sft_trainer``, once on one process and once on ``sft_procs(batch)`` processes
(the same global batch, split over the ranks). Wall time includes torchrun's start-up (~30 s each). Prints
the ratio and the last logged loss of each run (equal to four digits at 120 steps in the measured run; the
float sums differ, so longer runs drift apart). Goal: >= 1.3x faster on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--quick", action="store_true",
                    help="smallest sizes: a smoke run whose numbers mean nothing (tests/test_benchmarks.py runs it)")
    args = ap.parse_args(argv)
    if args.quick:
        ap.set_defaults(steps=2, batch=4)
        args = ap.parse_args(argv)

    from r1reward_verl import demo
    from r1reward_verl.cpu.prepare import sft_command, sft_losses, sft_procs

    procs = sft_procs(args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        demo.make_data(wd, demo.Plan(n_train=400 if args.quick else 2000, n_heldout=4), seed=0)
        base = demo.build_base(wd, seed=0)
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled")
        secs, loss = {}, {}
        for n in sorted({1, procs}):
            cmd = sft_command(base, wd / "sft", wd / f"ckpt{n}", epochs=1000, lr=2e-3, batch=args.batch, nproc=n,
                              extra=[f"trainer.total_training_steps={args.steps}", "checkpoint.save_contents=[hf_model]"])
            log = wd / f"sft{n}.log"
            t0 = time.perf_counter()
            with open(log, "w") as fh:
                rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=wd).returncode
            secs[n] = time.perf_counter() - t0
            if rc:
                raise SystemExit(f"verl's SFT trainer failed on {n} process(es):\n{log.read_text(errors='replace')[-3000:]}")
            losses = sft_losses(log)
            loss[n] = losses[-1] if losses else float("nan")
            print(f"{n} process(es): {args.steps} steps x {args.batch} rows in {secs[n]:.1f} s, "
                  f"last loss {loss[n]:.4f}", flush=True)  # fmt: skip
    print(f"SFT wall time, 1 / {procs} processes: {secs[1] / secs[procs]:.2f}x faster (goal >= 1.3x); "
          f"last loss {loss[1]:.4f} / {loss[procs]:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
