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
import time
from pathlib import Path

from r1reward_verl.cpu.sft import run_sft, sft_losses

SAMPLE_PAIRS = Path(__file__).resolve().parent.parent / "data" / "sample_data" / "pairs.jsonl"

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
    from r1reward_verl.data.pairs import main as pairs_main

    data, sft = out / "rl", out / "sft"
    if not (data / "train.parquet").exists() or not (sft / "train.parquet").exists():
        rc = pairs_main(["--input", str(pairs), "--out", str(data), "--sft-out", str(sft), "--val-fraction", "0.2",
                         "--seed", str(seed)])  # fmt: skip
        if rc:
            raise SystemExit(f"preprocess.pairs failed on {pairs} (exit {rc})")
    return data, sft


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
        run_sft(base, sft_dir, out / "policy", out / "sft_checkpoints", log, epochs=epochs, lr=lr, batch=batch)
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
