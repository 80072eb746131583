"""The Bradley-Terry reward-model trainer (:mod:`r1reward_verl.bt.trainer`) on CPU: ``torchrun -m
r1reward_verl.bt.trainer`` on ``hydra_configs/r1reward_bt.yaml`` with the CPU settings verl's SFT trainer uses
here (:data:`r1reward_verl.cpu.sft.SFT_CPU_OVERRIDES`), then the last HF export copied out with the processor."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from r1reward_verl.config import CONFIG_DIR
from r1reward_verl.cpu.sft import SFT_CPU_OVERRIDES, export_hf, last_hf_export, sft_procs
from r1reward_verl.procs import run_in_session


def bt_command(base_model: Path, bt_dir: Path, ckpt_dir: Path, steps: int, lr: float, batch: int,
               extra: Sequence[str] = (), nproc: int | None = None) -> list[str]:  # fmt: skip
    """The BT trainer on ``nproc`` CPU processes (default :func:`~r1reward_verl.cpu.sft.sft_procs`); ``batch``
    is in pairs (global), ``steps`` optimizer steps."""
    nproc = nproc or sft_procs(batch)
    if batch % nproc:
        raise ValueError(f"the BT batch ({batch} pairs) must be a multiple of the processes ({nproc})")
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        "-m", "r1reward_verl.bt.trainer", "--config-path", str(CONFIG_DIR), "--config-name", "r1reward_bt",
        f"model.path={base_model}", f"data.train_files={bt_dir}/train.parquet", f"data.val_files={bt_dir}/val.parquet",
        f"trainer.default_local_dir={ckpt_dir}", "trainer.total_epochs=1000", f"trainer.total_training_steps={steps}",
        f"optim.lr={lr}", f"data.train_batch_size={batch}", f"data.micro_batch_size_per_gpu={batch // nproc}",
        f"trainer.n_gpus_per_node={nproc}", *SFT_CPU_OVERRIDES, "checkpoint.save_contents=[hf_model]", *extra,
    ]  # fmt: skip


def run_bt(init: Path, bt_dir: Path, out: Path, ckpt: Path, log: Path, *, steps: int, lr: float, batch: int,
           extra: Sequence[str] = (), nproc: int | None = None, env: dict | None = None) -> Path:  # fmt: skip
    """The BT trainer from ``init`` on ``bt_dir`` (checkpoints in ``ckpt``, output to ``log``), in ``out``'s parent
    directory and a session of its own; the last HF export -> ``out``."""
    import shutil

    shutil.rmtree(ckpt, ignore_errors=True)
    cmd = bt_command(init, bt_dir, ckpt, steps, lr, batch, extra=extra, nproc=nproc)
    full_env = dict(os.environ, TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled", **(env or {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    if run_in_session(cmd, log, env=full_env, cwd=out.parent):
        raise SystemExit(f"the Bradley-Terry trainer failed; see {log}")
    try:
        export_hf(last_hf_export(ckpt), out, processor_from=init)
    except SystemExit as e:
        raise SystemExit(f"{e}; see {log}") from None
    shutil.rmtree(ckpt, ignore_errors=True)
    return out
