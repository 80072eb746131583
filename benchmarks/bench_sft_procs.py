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

    from r1reward_verl.cpu.sft import sft_procs

    procs = sft_procs(args.batch)
    secs, loss = time_sft({f"{n} process(es)": (n, []) for n in sorted({1, procs})}, args.steps, args.batch,
                          n_train=400 if args.quick else 2000)  # fmt: skip
    one, many = "1 process(es)", f"{procs} process(es)"
    print(f"SFT wall time, 1 / {procs} processes: {secs[one] / secs[many]:.2f}x faster (goal >= 1.3x); "
          f"last loss {loss[one]:.4f} / {loss[many]:.4f}")  # fmt: skip


def time_sft(settings: dict[str, tuple[int, list[str]]], steps: int, batch: int, n_train: int):
    """verl's SFT trainer on the miniature's cold start (seed 0, lr 2e-3), once per ``{label: (processes, extra
    overrides)}``; prints a line per run. Returns ``({label: seconds}, {label: last logged loss})``."""
    from r1reward_verl import demo
    from r1reward_verl.cpu.sft import sft_command, sft_losses

    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        demo.make_data(wd, demo.Plan(n_train=n_train, n_heldout=4), seed=0)
        base = demo.build_base(wd, seed=0)
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled")
        secs, loss = {}, {}
        for i, (label, (n, extra)) in enumerate(settings.items()):
            cmd = sft_command(base, wd / "sft", wd / f"ckpt{i}", epochs=1000, lr=2e-3, batch=batch, nproc=n,
                              extra=[f"trainer.total_training_steps={steps}", "checkpoint.save_contents=[hf_model]",
                                     *extra])  # fmt: skip
            log = wd / f"sft{i}.log"
            t0 = time.perf_counter()
            with open(log, "w") as fh:
                rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=wd).returncode
            secs[label] = time.perf_counter() - t0
            if rc:
                raise SystemExit(f"verl's SFT trainer failed ({label}):\n{log.read_text(errors='replace')[-3000:]}")
            losses = sft_losses(log)
            loss[label] = losses[-1] if losses else float("nan")
            print(f"{label}: {steps} steps x {batch} rows in {secs[label]:.1f} s, last loss {loss[label]:.4f}", flush=True)
    return secs, loss

if __name__ == "__main__":
    main()
