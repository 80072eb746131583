"""The Bradley-Terry reward-model trainer (:mod:`r1reward_verl.bt.trainer`) on CPU: ``torchrun -m
r1reward_verl.bt.trainer`` on ``hydra_configs/r1reward_bt.yaml`` with the CPU settings verl's SFT trainer uses
here (:data:`r1reward_verl.cpu.sft.SFT_CPU_OVERRIDES`), then the last HF export copied out with the processor."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from r1reward_verl.cpu.sft import run_and_export, sft_procs, torchrun_command

# The learning-rate schedule of hydra_configs/r1reward_bt.yaml (cosine decay after a warmup), which the shared CPU
# overrides set to constant for the SFT runs. With it the last steps settle: 100 steps x 16 pairs at 1e-3 on the
# miniature, 5 runs each (benchmarks/bt_schedule.py, RESULTS.md): held-out accuracy 0.925-1.0 against 0.82-0.98 at
# the constant rate, a third of its errors.
BT_CPU_SCHEDULE = ["optim.lr_scheduler_type=cosine", "optim.lr_warmup_steps_ratio=0.1"]


def bt_command(base_model: Path, bt_dir: Path, ckpt_dir: Path, steps: int, lr: float, batch: int,
               extra: Sequence[str] = (), nproc: int | None = None) -> list[str]:  # fmt: skip
    """The BT trainer on ``nproc`` CPU processes (default :func:`~r1reward_verl.cpu.sft.sft_procs`); ``batch``
    is in pairs (global), ``steps`` optimizer steps, the rate on :data:`BT_CPU_SCHEDULE`; only the HF model is
    saved."""
    nproc = nproc or sft_procs(batch)
    return [*torchrun_command("r1reward_verl.bt.trainer", "r1reward_bt", base_model, bt_dir, ckpt_dir, lr, batch, nproc,
                              "BT batch in pairs"),
            "trainer.total_epochs=1000", f"trainer.total_training_steps={steps}", "checkpoint.save_contents=[hf_model]",
            *BT_CPU_SCHEDULE, *extra]  # fmt: skip


def run_bt(init: Path, bt_dir: Path, out: Path, ckpt: Path, log: Path, *, steps: int, lr: float, batch: int,
           extra: Sequence[str] = (), nproc: int | None = None, env: dict | None = None) -> Path:  # fmt: skip
    """The BT trainer from ``init`` on ``bt_dir`` (checkpoints in ``ckpt``, removed after, output to ``log``), in
    ``out``'s parent directory and a session of its own; the last HF export -> ``out``."""
    cmd = bt_command(init, bt_dir, ckpt, steps, lr, batch, extra=extra, nproc=nproc)
    return run_and_export(cmd, init, out, ckpt, log, what="the Bradley-Terry trainer", env=env, keep_checkpoints=False)
