"""The miniature's stages: its data through ``preprocess.pairs``, the tiny base model, verl's SFT trainer
(:func:`r1reward_verl.cpu.sft.run_sft`) and verl's ``main_ppo`` on ``r1reward_cpu.yaml`` (with the referee of
:mod:`.referee`), each checkpoint exported as an HF directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

from r1reward_verl.config import CONFIG_DIR, REPO_ROOT
from r1reward_verl.demo.plan import ABLATIONS, MODEL_HIDDEN, MODEL_INIT_STD, MODEL_LAYERS, Plan


def make_data(wd: Path, plan: Plan, seed: int) -> dict:
    """Synthetic pairs -> ``preprocess.pairs`` -> ``sft/`` (easy rows with reasoning) and ``rl/`` (hard rows)."""
    from r1reward_verl.data.pairs import main as pairs_main
    from r1reward_verl.demo.synth import write_dataset

    summary = write_dataset(wd / "data", plan.n_train, plan.n_heldout, seed, force=True)
    common = ["--input", str(wd / "data" / "pairs.jsonl"), "--seed", str(seed), "--no-progress"]
    # all rows -> the SFT parquet of the rows with a reasoning (the easy ones); the RL parquet of this call is unused
    # (and every pair as chosen/rejected -> bt/, the scalar reward model's data: Table 6's baselines)
    if pairs_main([*common, "--out", str(wd / "pairs_all"), "--sft-out", str(wd / "sft"), "--bt-out", str(wd / "bt"),
                   "--val-fraction", "0.02"]):  # fmt: skip
        raise SystemExit("preprocess.pairs failed on the synthetic pairs")
    if pairs_main([*common, "--out", str(wd / "rl"), "--difficulty-filter", "--val-fraction", "0.05"]):
        raise SystemExit("preprocess.pairs failed on the synthetic pairs (hard rows)")
    return summary


def build_base(wd: Path, seed: int) -> Path:
    from r1reward_verl.tiny import VLLM_CPU_HEAD_DIM, build_tiny_qwen25vl

    return build_tiny_qwen25vl(wd / "tiny-qwen25vl", seed=seed, head_dim=VLLM_CPU_HEAD_DIM, corpus="synth",
                               hidden=MODEL_HIDDEN, layers=MODEL_LAYERS, init_std=MODEL_INIT_STD)


def run_sft(wd: Path, name: str, init: Path, steps: int, batch: int, lr: float, warmup: int, seed: int,
            schedule: str = "constant", nproc: int = 1, data: str = "sft") -> Path:  # fmt: skip
    """verl's SFT trainer (torchrun, ``nproc`` CPU processes) from ``init`` on ``wd/<data>/`` (default ``sft/``)
    -> ``wd/<name>`` (HF).
    Its loss per step goes to ``logs/sft/<name>.jsonl`` (verl's file logger)."""
    from r1reward_verl.cpu.sft import run_sft as verl_sft

    (wd / "logs" / "sft").mkdir(parents=True, exist_ok=True)
    (wd / "logs" / "sft" / f"{name}.jsonl").unlink(missing_ok=True)
    return verl_sft(init, wd / data, wd / name, wd / "checkpoints" / name, wd / "logs" / f"{name}.log", epochs=1000,
                    lr=lr, batch=batch, nproc=nproc, keep_checkpoints=False, env={"VERL_FILE_LOGGER_ROOT": str(wd / "logs")},
                    extra=[f"trainer.total_training_steps={steps}", f"optim.lr_warmup_steps={warmup}",
                           f"trainer.seed={seed}", f"optim.lr_scheduler_type={schedule}", "trainer.logger=[console,file]",
                           "trainer.project_name=sft", f"trainer.experiment_name={name}",
                           "checkpoint.save_contents=[hf_model]"])  # fmt: skip


def run_bt(wd: Path, name: str, init: Path, data: str, plan: Plan, seed: int) -> Path:
    """The Bradley-Terry trainer (:mod:`r1reward_verl.bt.trainer`, torchrun on CPU) from ``init`` on ``wd/<data>/``
    -> ``wd/<name>`` (HF, the scalar reward model); its metrics per step -> ``logs/bt/<name>.jsonl``."""
    from r1reward_verl.cpu.bt import run_bt as verl_bt

    (wd / "logs" / "bt").mkdir(parents=True, exist_ok=True)
    (wd / "logs" / "bt" / f"{name}.jsonl").unlink(missing_ok=True)
    return verl_bt(init, wd / data, wd / name, wd / "checkpoints" / name, wd / "logs" / f"{name}.log",
                   steps=plan.bt_steps, lr=plan.bt_lr, batch=plan.bt_batch, nproc=plan.sft_procs,
                   env={"VERL_FILE_LOGGER_ROOT": str(wd / "logs")},
                   extra=[f"trainer.seed={seed}", "trainer.logger=[console,file]", "trainer.project_name=bt",
                          f"trainer.experiment_name={name}"])  # fmt: skip


def rl_overrides(wd: Path, plan: Plan, seed: int, experiment: str) -> list[str]:
    """``hydra_configs/r1reward_cpu.yaml`` sized for the miniature (``R1R_CPU_DIR`` = the work dir)."""
    batch = plan.rl_prompts * plan.rl_n
    return [
        f"trainer.experiment_name={experiment}",
        f"trainer.total_training_steps={plan.rl_steps}", f"trainer.save_freq={plan.rl_steps}", "trainer.test_freq=-1",
        "trainer.logger=[console,file,tensorboard]",
        f"data.train_batch_size={plan.rl_prompts}", f"data.seed={seed}", "data.max_response_length=96",
        f"actor_rollout_ref.rollout.n={plan.rl_n}", f"actor_rollout_ref.rollout.seed={seed}",
        f"actor_rollout_ref.actor.data_loader_seed={seed}",
        f"actor_rollout_ref.actor.optim.lr={plan.rl_lr}", f"actor_rollout_ref.actor.ppo_mini_batch_size={plan.rl_mini_batch}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={plan.rl_mini_batch * plan.rl_n}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={batch}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={batch}",
        f"actor_rollout_ref.rollout.max_num_seqs={batch}",
        "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]",
        f"hydra.run.dir={wd}/logs/hydra/{experiment}", f"hydra.sweep.dir={wd}/logs/hydra/{experiment}-sweep",
    ]  # fmt: skip


def main_ppo(wd: Path, overrides: list[str], log: Path, multirun: bool = False) -> None:
    from r1reward_verl.procs import run_in_session

    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(CONFIG_DIR), "--config-name",
           "r1reward_cpu", *(["-m"] if multirun else []), *overrides]  # fmt: skip
    env = dict(os.environ, R1R_CPU_DIR=str(wd), RAY_DEDUP_LOGS="0", TOKENIZERS_PARALLELISM="false")
    if run_in_session(cmd, log, env=env, cwd=REPO_ROOT):
        raise SystemExit(f"verl's main_ppo failed; see {log}")


@contextlib.contextmanager
def referee_overrides(wd: Path, referee: str):
    """``hosted``: the config's referee (the tiny base model on vLLM, hosted by verl's reward loop: a random
    model, its verdicts carry no signal). ``synth`` / ``rule``: ``r1reward_verl.demo.referee --behaviour
    synth|rule`` on 127.0.0.1 through ``referee=endpoint`` (``referee.synth_verdict``: CONSISTENT iff the
    colour the reasoning sees is the one it lists for the response it concludes for, and that is the answer;
    ``rule``: iff the reasoning's last "Response N" is the answer), started here and stopped with its session."""
    if referee == "hosted":
        yield []
        return
    from r1reward_verl.procs import Server, free_port

    port = free_port()
    cmd = [sys.executable, "-m", "r1reward_verl.demo.referee", "--behaviour", referee, "--port", str(port)]
    with Server(cmd, f"http://127.0.0.1:{port}/health", wd / "logs" / "referee.log"):
        yield ["referee=endpoint", f"reward.custom_reward_function.reward_kwargs.referee_base_url=http://127.0.0.1:{port}/v1",
               f"reward.custom_reward_function.reward_kwargs.referee_model={referee}"]  # fmt: skip


def run_rl(wd: Path, plan: Plan, seed: int, referee: str = "synth", overrides: Sequence[str] = ()) -> Path:
    """verl's ``main_ppo`` on the paper's CPU config from ``policy/`` (= the SFT checkpoint) -> ``rl_model/`` (HF);
    ``overrides``: more Hydra overrides, last."""
    exp = "miniature-rl"
    shutil.rmtree(wd / "checkpoints" / exp, ignore_errors=True)
    (wd / "logs" / "r1reward_cpu" / f"{exp}.jsonl").unlink(missing_ok=True)
    with referee_overrides(wd, referee) as extra:
        main_ppo(wd, rl_overrides(wd, plan, seed, exp) + extra + list(overrides), wd / "logs" / "rl.log")
    return _export(wd, exp, plan.rl_steps, "rl_model")


def _export(wd: Path, exp: str, steps: int, out_name: str) -> Path:
    """main_ppo's HF export of the last step of ``exp`` -> ``wd/<out_name>`` (with the processor)."""
    from r1reward_verl.cpu.sft import export_hf

    export = wd / "checkpoints" / exp / f"global_step_{steps}" / "actor" / "huggingface"
    if not (export / "config.json").exists():
        raise SystemExit(f"main_ppo wrote no HF export at {export}; see {wd / 'logs'}")
    return export_hf(export, wd / out_name, processor_from=wd / "policy")


def run_ablations(wd: Path, plan: Plan, seed: int, referee: str = "synth",
                  ablations: Sequence[str] = ABLATIONS) -> dict[str, Path]:  # fmt: skip
    """The ablations (default all four) as one Hydra sweep (``-m ablation=...``) from the same SFT checkpoint ->
    ``{ablation: HF model}``."""
    exps = {a: f"miniature-{a}" for a in ablations}
    for e in exps.values():
        (wd / "logs" / "r1reward_cpu" / f"{e}.jsonl").unlink(missing_ok=True)
        shutil.rmtree(wd / "checkpoints" / e, ignore_errors=True)
    over = [o for o in rl_overrides(wd, plan, seed, "X") if not o.startswith("trainer.experiment_name")]
    over += [f"ablation={','.join(ablations)}", "trainer.experiment_name=miniature-${r1reward.ablation}"]
    with referee_overrides(wd, referee) as extra:
        main_ppo(wd, over + extra, wd / "logs" / "ablations.log", multirun=True)
    return {a: _export(wd, e, plan.rl_steps, f"rl_{a}") for a, e in exps.items()}
