"""Everything ``hydra_configs/r1reward_cpu.yaml`` reads, made offline on CPU:

    .venv/bin/python -m r1reward_verl.cpu.prepare [--out runs/cpu]

1. ``tiny-qwen25vl/``: the tiny random Qwen2.5-VL with head_dim 32 (vLLM-CPU's attention needs >= 32);
   also the hosted referee of the CPU run;
2. ``rl/``: the bundled sample pairs through ``preprocess.pairs`` (verl RL parquet) and ``sft/`` (verl
   SFT parquet, the rows with a reasoning);
3. ``policy/``: the cold start — verl's own SFT trainer (``torchrun -m verl.trainer.sft_trainer`` with
   ``hydra_configs/r1reward_sft.yaml`` and CPU overrides) teaches the tiny model the
   ``<think>…</think><answer>k</answer>`` format, so that the RL run's answers parse and the referee is
   asked; its HF export plus the processor files.

Each stage prints one line; a stage whose output exists is kept (``--force`` redoes all).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from r1reward_verl.config import CONFIG_DIR, REPO_ROOT

SAMPLE_PAIRS = REPO_ROOT / "preprocess" / "sample_data" / "pairs.jsonl"

# verl SFT on CPU (torchrun, gloo; sft_procs below): no flash-attn (sdpa, padded batches), no torch.compile, fp32
SFT_CPU_OVERRIDES = [
    "trainer.device=cpu",
    "trainer.nnodes=1",
    "data.use_dynamic_bsz=false",
    "data.max_length=512",
    "data.num_workers=0",
    "model.use_remove_padding=false",
    "+model.override_config.attn_implementation=sdpa",
    "model.enable_gradient_checkpointing=false",
    "engine.dtype=float32",
    # compute in fp32: verl's FSDP engine otherwise autocasts to bf16 (its default param_dtype), emulated on a CPU
    # without bf16 instructions (AVX2): 4-5x slower steps (benchmarks/RESULTS.md, issue 12)
    "+engine.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
    "engine.use_torch_compile=false",
    "optim.lr_scheduler_type=constant",
    "optim.lr_warmup_steps_ratio=0",
    "trainer.logger=[console]",
    "trainer.test_freq=-1",
    "trainer.save_freq=-1",
    "trainer.resume_mode=disable",
]

# the processor files an HF export of verl's SFT trainer may lack; the RL run's dataset and vLLM need them
_PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json", "chat_template.jinja",
                    "chat_template.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json")  # fmt: skip


def _stage(msg: str) -> float:
    print(f"[prepare] {msg}", flush=True)
    return time.monotonic()


def build_models(out: Path, seed: int) -> Path:
    from r1reward_verl.tiny import VLLM_CPU_HEAD_DIM, build_tiny_qwen25vl

    path = out / "tiny-qwen25vl"
    if not (path / "config.json").exists():
        build_tiny_qwen25vl(path, seed=seed, head_dim=VLLM_CPU_HEAD_DIM)
    return path


def build_data(out: Path, pairs: Path, seed: int) -> tuple[Path, Path]:
    from preprocess.pairs import main as pairs_main

    data, sft = out / "rl", out / "sft"
    if not (data / "train.parquet").exists() or not (sft / "train.parquet").exists():
        rc = pairs_main(["--input", str(pairs), "--out", str(data), "--sft-out", str(sft), "--val-fraction", "0.2",
                         "--seed", str(seed)])  # fmt: skip
        if rc:
            raise SystemExit(f"preprocess.pairs failed on {pairs} (exit {rc})")
    return data, sft


def sft_procs(batch: int, cores: int | None = None) -> int:
    """Processes for verl's SFT trainer on CPU: 2 when there are 2 cores and ``batch`` splits in two, else 1.

    One process keeps one core busy (the tiny model's steps are small ops, ~96 % of a core); two data-parallel
    ranks over gloo did 120 steps of the miniature's cold start 1.33x faster on this machine's 2 cores
    (``benchmarks/bench_sft_procs.py``, RESULTS.md). More were not measured."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return 2 if cores >= 2 and batch % 2 == 0 else 1


def sft_command(base_model: Path, sft_dir: Path, ckpt_dir: Path, epochs: int, lr: float, batch: int,
                extra: list[str] = (), nproc: int | None = None) -> list[str]:  # fmt: skip
    """verl's SFT trainer on ``nproc`` CPU processes (torchrun, as verl documents; default ``sft_procs(batch)``),
    data parallel: ``batch`` is the global batch, ``batch / nproc`` rows per process; on
    hydra_configs/r1reward_sft.yaml."""
    nproc = nproc or sft_procs(batch)
    if batch % nproc:
        raise ValueError(f"the SFT batch ({batch}) must be a multiple of the processes ({nproc})")
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        "-m", "verl.trainer.sft_trainer", "--config-path", str(CONFIG_DIR), "--config-name", "r1reward_sft",
        f"model.path={base_model}", f"data.train_files={sft_dir}/train.parquet", f"data.val_files={sft_dir}/val.parquet",
        f"trainer.default_local_dir={ckpt_dir}", f"trainer.total_epochs={epochs}", f"optim.lr={lr}",
        f"data.train_batch_size={batch}", f"data.micro_batch_size_per_gpu={batch // nproc}",
        f"trainer.n_gpus_per_node={nproc}", *SFT_CPU_OVERRIDES, *extra,
    ]  # fmt: skip


def run_sft(base_model: Path, sft_dir: Path, out: Path, epochs: int, lr: float, batch: int, log: Path) -> Path:
    """Run verl's SFT trainer; copy its last HF export (plus the processor files) to ``out/policy``."""
    ckpt = out / "sft_checkpoints"
    if ckpt.exists():
        shutil.rmtree(ckpt)
    cmd = sft_command(base_model, sft_dir, ckpt, epochs, lr, batch)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled")
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=out)
    if proc.returncode != 0:
        raise SystemExit(f"verl's SFT trainer failed (exit {proc.returncode}); see {log}")
    exports = sorted(ckpt.glob("global_step_*/huggingface"), key=lambda p: int(p.parent.name.split("_")[-1]))
    if not exports:
        raise SystemExit(f"verl's SFT trainer wrote no HF export under {ckpt}; see {log}")
    policy = out / "policy"
    if policy.exists():
        shutil.rmtree(policy)
    shutil.copytree(exports[-1], policy)
    for name in _PROCESSOR_FILES:
        if (base_model / name).exists() and not (policy / name).exists():
            shutil.copy2(base_model / name, policy / name)
    return policy


def sft_losses(log: Path) -> list[float]:
    """``train/loss`` per step as verl's console logger printed it."""
    import re

    return [float(m) for m in re.findall(r"train/loss:([-0-9.e]+)", log.read_text(errors="replace"))]


def prepare(out: Path, seed: int = 0, epochs: int = 20, lr: float = 5e-3, batch: int = 4, force: bool = False,
            pairs: Path = SAMPLE_PAIRS) -> dict:  # fmt: skip
    out = Path(out).resolve()
    if force and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t = _stage(f"tiny Qwen2.5-VL (head_dim 32) -> {out / 'tiny-qwen25vl'}")
    base = build_models(out, seed)
    t = _stage(f"sample pairs -> verl parquet {out / 'rl'}, {out / 'sft'} ({time.monotonic() - t:.0f} s)")
    _, sft_dir = build_data(out, pairs, seed)
    log = out / "sft.log"
    if (out / "policy" / "config.json").exists():
        t = _stage(f"cold start exists: {out / 'policy'}")
    else:
        t = _stage(f"cold-start SFT with verl's SFT trainer, {epochs} epochs (log: {log})")
        run_sft(base, sft_dir, out, epochs, lr, batch, log)
    losses = sft_losses(log) if log.exists() else []
    _stage(f"policy -> {out / 'policy'} ({time.monotonic() - t:.0f} s; SFT loss "
           f"{losses[0] if losses else float('nan'):.3f} -> {losses[-1] if losses else float('nan'):.3f})")  # fmt: skip
    return {"dir": str(out), "base": str(base), "policy": str(out / "policy"), "sft_losses": losses}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("R1R_CPU_DIR", "runs/cpu"), help="default: runs/cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sft-epochs", type=int, default=20)
    parser.add_argument("--sft-lr", type=float, default=5e-3)
    parser.add_argument("--sft-batch", type=int, default=4)
    parser.add_argument("--force", action="store_true", help="rebuild everything")
    args = parser.parse_args(argv)
    prepare(Path(args.out), seed=args.seed, epochs=args.sft_epochs, lr=args.sft_lr, batch=args.sft_batch,
            force=args.force)


if __name__ == "__main__":
    main()
