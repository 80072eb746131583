"""verl's SFT trainer on CPU, the one runner the cold start (:mod:`.prepare`) and the miniature use:
``torchrun -m verl.trainer.sft_trainer`` on ``hydra_configs/r1reward_sft.yaml`` with :data:`SFT_CPU_OVERRIDES`,
then the last HF export copied out with the processor files (:func:`export_hf`, also for ``main_ppo``'s exports).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from r1reward_verl.config import CONFIG_DIR
from r1reward_verl.procs import run_in_session

# The CPU settings verl's SFT trainer shares with the RL runs, read from their CPU overlay
# (hydra_configs/cpu/_ppo.yaml): the same settings of verl's hf_model, FSDP engine and trainer configs, at their
# place in the SFT trainer's tree (sft_trainer_engine: model.*, engine.*, data.*) instead of main_ppo's
# (actor_rollout_ref.*). The overlay cannot simply be loaded into the SFT run: it is a main_ppo tree.
_SHARED_WITH_PPO = {
    "trainer.device": "trainer.device",
    "trainer.nnodes": "trainer.nnodes",
    "data.num_workers": "data.dataloader_num_workers",
    # no flash-attn on CPU: sdpa, padded batches
    "model.use_remove_padding": "actor_rollout_ref.model.use_remove_padding",
    "+model.override_config.attn_implementation": "actor_rollout_ref.model.override_config.attn_implementation",
    "model.enable_gradient_checkpointing": "actor_rollout_ref.model.enable_gradient_checkpointing",
    # compute in fp32: verl's FSDP engine otherwise autocasts to bf16 (its default param_dtype), emulated on a CPU
    # without bf16 instructions (AVX2): 4-5x slower steps (benchmarks/RESULTS.md, issue 12)
    "engine.dtype": "actor_rollout_ref.actor.fsdp_config.dtype",
    "+engine.mixed_precision": "actor_rollout_ref.actor.fsdp_config.mixed_precision",
    "engine.use_torch_compile": "actor_rollout_ref.actor.use_torch_compile",
}


def _override_value(value) -> str:
    """``value`` as Hydra's override grammar spells it: ``false``, ``1``, ``{a:b,c:d}``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_override_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _shared_with_ppo() -> list[str]:
    from omegaconf import OmegaConf

    overlay = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "cpu" / "_ppo.yaml"), resolve=False)
    out = []
    for key, ppo_key in _SHARED_WITH_PPO.items():
        value = overlay
        for part in ppo_key.split("."):
            value = value[part]
        out.append(f"{key}={_override_value(value)}")
    return out


# verl SFT on CPU (torchrun, gloo; sft_procs below): the settings shared with the RL runs (above), then the SFT
# trainer's own: fixed-size batches, the miniature's lengths and schedule, no checkpoints or validation between
# steps (the runner exports the last step)
SFT_CPU_OVERRIDES = [
    *_shared_with_ppo(),
    "data.use_dynamic_bsz=false",
    "data.max_length=512",
    "optim.lr_scheduler_type=constant",
    "optim.lr_warmup_steps_ratio=0",
    "trainer.logger=[console]",
    "trainer.test_freq=-1",
    "trainer.save_freq=-1",
    "trainer.resume_mode=disable",
]

# the processor files an HF export of verl's SFT trainer may lack; the RL run's dataset and vLLM need them
PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json", "chat_template.jinja",
                    "chat_template.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json")  # fmt: skip


def sft_procs(batch: int, cores: int | None = None) -> int:
    """Processes for verl's SFT trainer on CPU: 2 when there are 2 cores and ``batch`` splits in two, else 1.

    One process keeps one core busy (the tiny model's steps are small ops, ~96 % of a core); two data-parallel
    ranks over gloo did 120 steps of the miniature's cold start 1.33x faster on this machine's 2 cores
    (``benchmarks/bench_sft_procs.py``, RESULTS.md). More were not measured."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return 2 if cores >= 2 and batch % 2 == 0 else 1


def torchrun_command(module: str, config_name: str, base_model: Path, data_dir: Path, ckpt_dir: Path, lr: float,
                     batch: int, nproc: int, what: str) -> list[str]:  # fmt: skip
    """``torchrun -m <module>`` (verl's SFT trainer or a subclass of it) on ``nproc`` CPU processes, data parallel:
    ``batch`` is the global batch (``what`` names its unit in the error), ``batch / nproc`` per process; on
    ``hydra_configs/<config_name>.yaml`` with :data:`SFT_CPU_OVERRIDES`."""
    if batch % nproc:
        raise ValueError(f"the {what} ({batch}) must be a multiple of the processes ({nproc})")
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        "-m", module, "--config-path", str(CONFIG_DIR), "--config-name", config_name,
        f"model.path={base_model}", f"data.train_files={data_dir}/train.parquet", f"data.val_files={data_dir}/val.parquet",
        f"trainer.default_local_dir={ckpt_dir}", f"optim.lr={lr}",
        f"data.train_batch_size={batch}", f"data.micro_batch_size_per_gpu={batch // nproc}",
        f"trainer.n_gpus_per_node={nproc}", *SFT_CPU_OVERRIDES,
    ]  # fmt: skip


def sft_command(base_model: Path, sft_dir: Path, ckpt_dir: Path, epochs: int, lr: float, batch: int,
                extra: list[str] = (), nproc: int | None = None) -> list[str]:  # fmt: skip
    """verl's SFT trainer on ``nproc`` CPU processes (torchrun, as verl documents; default ``sft_procs(batch)``),
    data parallel: ``batch`` is the global batch, ``batch / nproc`` rows per process; on
    hydra_configs/r1reward_sft.yaml."""
    nproc = nproc or sft_procs(batch)
    return [*torchrun_command("verl.trainer.sft_trainer", "r1reward_sft", base_model, sft_dir, ckpt_dir, lr, batch, nproc,
                              "SFT batch"), f"trainer.total_epochs={epochs}", *extra]  # fmt: skip


def last_hf_export(ckpt: Path) -> Path:
    """The HF export of the last step under a checkpoint dir of verl's SFT trainer: ``global_step_N/huggingface``."""
    exports = [p for p in ckpt.glob("global_step_*/huggingface") if (p / "config.json").is_file()]
    if not exports:
        raise SystemExit(f"verl wrote no HF export under {ckpt}")
    return max(exports, key=lambda p: int(p.parent.name.split("_")[-1]))


def export_hf(export: Path, out: Path, processor_from: Path) -> Path:
    """Copy an HF export of verl's to ``out`` (replaced), with the processor files it may lack from
    ``processor_from`` (the model it started from): the RL run's dataset and vLLM need them."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(export, out)
    for name in PROCESSOR_FILES:
        if (processor_from / name).exists() and not (out / name).exists():
            shutil.copy2(processor_from / name, out / name)
    return out


def run_and_export(cmd: list[str], init: Path, out: Path, ckpt: Path, log: Path, *, what: str,
                   env: dict | None = None, keep_checkpoints: bool = True) -> Path:  # fmt: skip
    """Run a trainer ``cmd`` writing checkpoints to ``ckpt`` (emptied first), its output to ``log``, in ``out``'s
    parent directory and a session of its own (nothing of it outlives the call); the last HF export -> ``out``
    (:func:`export_hf`, processor files from ``init``). ``what`` names the trainer in errors."""
    shutil.rmtree(ckpt, ignore_errors=True)
    full_env = dict(os.environ, TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled", **(env or {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    rc = run_in_session(cmd, log, env=full_env, cwd=out.parent)
    if rc:
        raise SystemExit(f"{what} failed (exit {rc}); see {log}")
    try:
        export_hf(last_hf_export(ckpt), out, processor_from=init)
    except SystemExit as e:
        raise SystemExit(f"{e}; see {log}") from None
    if not keep_checkpoints:
        shutil.rmtree(ckpt, ignore_errors=True)
    return out


def run_sft(init: Path, sft_dir: Path, out: Path, ckpt: Path, log: Path, *, epochs: int, lr: float, batch: int,
            extra: Sequence[str] = (), nproc: int | None = None, env: dict | None = None,
            keep_checkpoints: bool = True) -> Path:  # fmt: skip
    """verl's SFT trainer (:func:`sft_command`) from ``init`` on ``sft_dir`` with its checkpoints in ``ckpt``
    (emptied first), its output to ``log``; the last HF export -> ``out`` (:func:`run_and_export`)."""
    cmd = sft_command(init, sft_dir, ckpt, epochs, lr, batch, extra=list(extra), nproc=nproc)
    return run_and_export(cmd, init, out, ckpt, log, what="verl's SFT trainer", env=env, keep_checkpoints=keep_checkpoints)


def sft_losses(log: Path) -> list[float]:
    """``train/loss`` per step as verl's console logger printed it."""
    return [float(m) for m in re.findall(r"train/loss:([-0-9.e]+)", log.read_text(errors="replace"))]
