"""The main job: the R1-Reward paper in miniature, on CPU, through verl's own trainers.

    python -m r1reward_verl.demo [--seed 0] [--workdir runs/demo] [--quick] [--no-control]

On a learnable synthetic multimodal preference task (``preprocess.synth``: "what colour is the shape?",
two answers, one right; easy pairs of distant colours, hard pairs of confusable ones):

1. data: the generator's pairs through ``preprocess.pairs`` like real data: the easy rows with their
   templated reasoning -> SFT parquet; the hard rows (``--difficulty-filter``, §4.3's split) -> RL parquet;
   a held-out benchmark from the same generator in VL-RewardBench's published format;
2. the tiny Qwen2.5-VL (``r1reward_verl.tiny``, head_dim 32 for vLLM-CPU, tokenizer trained with the
   task's words), evaluated as the *base*;
3. cold start: verl's SFT trainer (``torchrun -m verl.trainer.sft_trainer``, ``hydra_configs/r1reward_sft.yaml``)
   on the easy rows -> *sft*;
4. RL: ``python -m verl.trainer.main_ppo`` with ``hydra_configs/r1reward_cpu.yaml`` (StableReinforce
   estimator and loss, the R1-Reward reward) from the SFT checkpoint on the hard rows -> *rl*. The
   consistency referee (``--referee``): ``synth`` (default), a task-aware referee on 127.0.0.1 reached
   through ``referee=endpoint``, which says what a good referee says on this task; ``hosted``, the
   config's referee hosted by verl's reward loop (the tiny random base model: its verdicts are noise,
   and its vLLM server costs ~150 s); ``rule``, the conclusion-matches-answer rule;
5. control: verl's SFT trainer continued from *sft* (on the easy rows with reasoning) for as many
   optimizer updates, on as many sequences per update, at the RL learning rate -> *control* (is RL's gain more than more training?);
6. evaluation of every checkpoint with ``r1reward_verl.eval`` (transformers backend): greedy and
   voting@k, both response orders, accuracy by difficulty, format rate;
7. ``summary.json``, ``table.md``, ``accuracy.png`` (accuracy by stage and difficulty, SFT loss, RL reward)
   and the paper's Figure 2/5 panels from verl's RL logs (``python -m r1reward_verl.plot``) in ``plots/``.

``--ablations`` then runs the four ablations (``-m ablation=...``) from the same SFT checkpoint and
overlays them (``plots_ablations/``, ``summary.json``'s ``ablations``). Every stage prints a line; the
trainers' own output goes to ``logs/``. Everything follows ``--seed``: data, initial weights, SFT order,
RL sampling.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from r1reward_verl.config import CONFIG_DIR, REPO_ROOT

ABLATIONS = ("no_adv_filter", "no_preclip", "reinforce_pp", "no_consistency")
# the tiny Qwen2.5-VL of the miniature: 4 heads of 32 (vLLM-CPU's attention needs head_dim >= 32); with 2 heads
# (hidden 64) the model named the colour and copied both answers but never compared them in 1,150 SFT steps
MODEL_HIDDEN, MODEL_LAYERS = 128, 2
# random weights at std 0.06 (HF's default 0.02): with 0.02 the cold start's copy step formed after a plateau
# whose length depended on the seed (seed 0 by step ~650, seed 1 not by 1,000); at 0.06 seed 1 has it by ~250
MODEL_INIT_STD = 0.06


@dataclass(frozen=True)
class Plan:
    """Sizes of the miniature. The defaults took 16.3-18.2 min on 2 cores (seeds 0-2, benchmarks/RESULTS.md; the
    machine's speed varies by ~20-40 %); ``QUICK`` (the CI test's) ~13 min."""

    n_train: int = 8000  # half easy (SFT), half hard (RL)
    n_heldout: int = 200  # half easy, half hard
    sft_steps: int = 500  # the loss is flat after ~500 steps on every seed (RESULTS.md); 800 took 3-4 min more
    sft_batch: int = 16
    sft_lr: float = 2e-3  # at 1e-3 (and init std 0.02) the copy step was not learned in 700 steps (RESULTS.md)
    sft_warmup: int = 30
    # "cosine" (to 0 over the steps): at a constant 2e-3 the cold start ended wherever the last loss spike left it
    # (seed 0 stuck at hard 73; seed 1 on 2 processes 65 %); with cosine over 800 steps seed 1's was so good (hard
    # 91) that RL could not add 5 points; 500 steps leave room on seeds 0-2 (benchmarks/RESULTS.md, session 10).
    # The control always runs at RL's constant rate.
    sft_schedule: str = "cosine"
    # SFT processes (data parallel on gloo, one per core): 0.75 vs 0.9 s a step here (bench_sft_procs.py)
    sft_procs: int = 2
    rl_steps: int = 20
    rl_prompts: int = 16  # prompts per RL step
    rl_n: int = 4  # samples per prompt
    rl_mini_batch: int = 4  # prompts per optimizer update: rl_prompts / rl_mini_batch updates per step
    rl_lr: float = 1e-4  # 3e-4 collapsed the SFT model into a position bias (RESULTS.md)
    eval_k: int = 3  # voting@k (k samples per prompt and order), 0: greedy only
    eval_batch: int = 16  # prompts per generate call (greedy outputs as one at a time; benchmarks/RESULTS.md)
    max_new_tokens: int = 64

    def __post_init__(self):
        if self.sft_schedule not in ("constant", "cosine"):  # verl's FSDP engine has these two
            raise ValueError(f"sft_schedule must be constant or cosine; got {self.sft_schedule!r}")
        if self.sft_procs < 1 or self.sft_batch % self.sft_procs or (self.rl_mini_batch * self.rl_n) % self.sft_procs:
            raise ValueError(f"sft_procs ({self.sft_procs}) must divide sft_batch ({self.sft_batch}) and the control's "
                             f"batch ({self.rl_mini_batch * self.rl_n})")  # fmt: skip
        if self.rl_prompts % self.rl_mini_batch:
            raise ValueError(f"rl_prompts ({self.rl_prompts}) must be a multiple of rl_mini_batch ({self.rl_mini_batch})")

    @property
    def rl_updates(self) -> int:
        """Optimizer updates of the RL stage (and of the control)."""
        return self.rl_steps * (self.rl_prompts // self.rl_mini_batch)


# the CI test's: the same data and cold start (so the same SFT model for a seed), 4 short RL steps, greedy only
QUICK = Plan(rl_steps=4, rl_prompts=8, eval_k=0)


def _line(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------- stages


def make_data(wd: Path, plan: Plan, seed: int) -> dict:
    """Synthetic pairs -> ``preprocess.pairs`` -> ``sft/`` (easy rows with reasoning) and ``rl/`` (hard rows)."""
    from preprocess.pairs import main as pairs_main
    from preprocess.synth import write_dataset

    summary = write_dataset(wd / "data", plan.n_train, plan.n_heldout, seed, force=True)
    common = ["--input", str(wd / "data" / "pairs.jsonl"), "--seed", str(seed), "--no-progress"]
    # all rows -> the SFT parquet of the rows with a reasoning (the easy ones); the RL parquet of this call is unused
    if pairs_main([*common, "--out", str(wd / "pairs_all"), "--sft-out", str(wd / "sft"), "--val-fraction", "0.02"]):
        raise SystemExit("preprocess.pairs failed on the synthetic pairs")
    if pairs_main([*common, "--out", str(wd / "rl"), "--difficulty-filter", "--val-fraction", "0.05"]):
        raise SystemExit("preprocess.pairs failed on the synthetic pairs (hard rows)")
    return summary


def build_base(wd: Path, seed: int) -> Path:
    from r1reward_verl.tiny import VLLM_CPU_HEAD_DIM, build_tiny_qwen25vl

    return build_tiny_qwen25vl(wd / "tiny-qwen25vl", seed=seed, head_dim=VLLM_CPU_HEAD_DIM, corpus="synth",
                               hidden=MODEL_HIDDEN, layers=MODEL_LAYERS, init_std=MODEL_INIT_STD)


def _copy_processor(src_model: Path, dst: Path) -> None:
    from r1reward_verl.cpu.prepare import _PROCESSOR_FILES

    for name in _PROCESSOR_FILES:
        if (src_model / name).exists() and not (dst / name).exists():
            shutil.copy2(src_model / name, dst / name)


def run_sft(wd: Path, name: str, init: Path, steps: int, batch: int, lr: float, warmup: int, seed: int,
            schedule: str = "constant", nproc: int = 1) -> Path:  # fmt: skip
    """verl's SFT trainer (torchrun, ``nproc`` CPU processes) from ``init`` on ``sft/`` -> ``wd/<name>`` (HF).
    Its loss per step goes to ``logs/sft/<name>.jsonl`` (verl's file logger)."""
    from r1reward_verl.cpu.prepare import sft_command
    from r1reward_verl.procs import run_in_session

    ckpt = wd / "checkpoints" / name
    shutil.rmtree(ckpt, ignore_errors=True)
    (wd / "logs" / "sft").mkdir(parents=True, exist_ok=True)
    (wd / "logs" / "sft" / f"{name}.jsonl").unlink(missing_ok=True)
    cmd = sft_command(init, wd / "sft", ckpt, epochs=1000, lr=lr, batch=batch, nproc=nproc, extra=[
        f"trainer.total_training_steps={steps}", f"optim.lr_warmup_steps={warmup}", f"trainer.seed={seed}",
        f"optim.lr_scheduler_type={schedule}",
        "trainer.logger=[console,file]", "trainer.project_name=sft", f"trainer.experiment_name={name}",
        "checkpoint.save_contents=[hf_model]",
    ])  # fmt: skip
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled",
               VERL_FILE_LOGGER_ROOT=str(wd / "logs"))  # fmt: skip
    log = wd / "logs" / f"{name}.log"
    if run_in_session(cmd, log, env=env, cwd=wd):
        raise SystemExit(f"verl's SFT trainer failed ({name}); see {log}")
    exports = sorted(ckpt.glob("global_step_*/huggingface"), key=lambda p: int(p.parent.name.split("_")[-1]))
    if not exports:
        raise SystemExit(f"verl's SFT trainer wrote no HF export under {ckpt}; see {log}")
    out = wd / name
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(exports[-1], out)
    _copy_processor(init, out)
    shutil.rmtree(ckpt, ignore_errors=True)
    return out


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
    model, its verdicts carry no signal). ``synth`` / ``rule``: ``r1reward_verl.servers scripted --behaviour
    synth|rule`` on 127.0.0.1 through ``referee=endpoint`` (``servers.synth_verdict``: CONSISTENT iff the
    colour the reasoning sees is the one it lists for the response it concludes for, and that is the answer;
    ``rule``: iff the reasoning's last "Response N" is the answer), started here and stopped with its session."""
    if referee == "hosted":
        yield []
        return
    from r1reward_verl.procs import Server, free_port

    port = free_port()
    cmd = [sys.executable, "-m", "r1reward_verl.servers", "scripted", "--behaviour", referee, "--port", str(port)]
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
    export = wd / "checkpoints" / exp / f"global_step_{steps}" / "actor" / "huggingface"
    if not (export / "config.json").exists():
        raise SystemExit(f"main_ppo wrote no HF export at {export}; see {wd / 'logs'}")
    out = wd / out_name
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(export, out)
    _copy_processor(wd / "policy", out)
    return out


def run_ablations(wd: Path, plan: Plan, seed: int, referee: str = "synth") -> dict[str, Path]:
    """The four ablations as one Hydra sweep (``-m ablation=...``) from the same SFT checkpoint -> ``{ablation: HF model}``."""
    exps = {a: f"miniature-{a}" for a in ABLATIONS}
    for e in exps.values():
        (wd / "logs" / "r1reward_cpu" / f"{e}.jsonl").unlink(missing_ok=True)
        shutil.rmtree(wd / "checkpoints" / e, ignore_errors=True)
    over = [o for o in rl_overrides(wd, plan, seed, "X") if not o.startswith("trainer.experiment_name")]
    over += [f"ablation={','.join(ABLATIONS)}", "trainer.experiment_name=miniature-${r1reward.ablation}"]
    with referee_overrides(wd, referee) as extra:
        main_ppo(wd, over + extra, wd / "logs" / "ablations.log", multirun=True)
    return {a: _export(wd, e, plan.rl_steps, f"rl_{a}") for a, e in exps.items()}


# ----------------------------------------------------------------------------------------- evaluation


def evaluate_model(wd: Path, name: str, model: Path, plan: Plan, seed: int, margin: bool = True) -> dict:
    """Held-out accuracy of ``model`` with the real evaluator: greedy (+ voting@k), both orders; ``margin``: and
    its :func:`copy_margin` on the hard pairs."""
    from preprocess.synth import accuracy_by_difficulty, read_meta, reasoning_steps
    from r1reward_verl.eval.backends import TransformersBackend
    from r1reward_verl.eval.metrics import pct, vote_right
    from r1reward_verl.eval.runner import evaluate, read_items
    from r1reward_verl.reward.parse import parse_output

    heldout = wd / "data" / "heldout"
    out = wd / "eval" / name
    shutil.rmtree(out, ignore_errors=True)
    backend = TransformersBackend(str(model), max_new_tokens=plan.max_new_tokens, seed=seed, batch_size=plan.eval_batch)
    evaluate({"vl_rewardbench": str(heldout / "vl_rewardbench.jsonl")}, backend, out, k=plan.eval_k, swap=True,
                   seed=seed, media_roots={"vl_rewardbench": str(heldout)}, model_name=name, progress=False)  # fmt: skip
    records = read_items(out / "items.jsonl")
    by_d = accuracy_by_difficulty(records)["vl_rewardbench"]
    greedy = [r["outputs"][0] for r in records] + [r["swapped"]["outputs"][0] for r in records]
    res = {
        "accuracy": round(sum(v["acc"] * v["n"] for v in by_d.values()) / sum(v["n"] for v in by_d.values()), 1),
        "accuracy_easy": by_d.get("easy", {}).get("acc"),
        "accuracy_hard": by_d.get("hard", {}).get("acc"),
        "accuracy_both_orders": round(sum(v["acc_both_orders"] * v["n"] for v in by_d.values())
                                      / sum(v["n"] for v in by_d.values()), 1),  # fmt: skip
        "format_rate": round(100.0 * sum(parse_output(t).format_ok for t in greedy) / len(greedy), 1),
        "pairs": len(records),
        # where the reasoning goes wrong: sees the colour, reads both responses, copies the number
        "reasoning": reasoning_steps(records, read_meta(heldout / "pairs.jsonl")),
    }
    if plan.eval_k:  # majority of k samples (a tie or no parsed sample is wrong), paper §5.2
        right = vote_right(plan.eval_k)
        res[f"voting@{plan.eval_k}"] = pct(sum(right(r) for r in records), len(records))
    if margin:
        res["copy_margin_hard"] = copy_margin(backend, heldout, "hard")
    return res


def copy_margin(backend, heldout: Path, difficulty: str = "hard") -> dict:
    """The step the cold start leaves wrong, as a number that moves with every update: over the held-out pairs of
    ``difficulty`` in both orders, log pi(the templated right output) - log pi(the same reasoning copying the other
    response's number, and answering it), teacher-forced. ``mean`` (nats) and ``positive`` (% of pair-orders
    where the right output is the likelier): what RL on the result reward must raise, and a flipped loss lowers."""
    from preprocess.synth import read_meta, reasoning_text
    from r1reward_verl.eval.loaders import load_benchmark
    from r1reward_verl.eval.metrics import pct
    from r1reward_verl.eval.runner import build_request
    from r1reward_verl.eval.scoring import completion_logprobs

    meta = read_meta(heldout / "pairs.jsonl")
    pairs = load_benchmark("vl_rewardbench", heldout / "vl_rewardbench.jsonl", media_root=heldout).pairs
    margins = []
    for pair in pairs:
        m = meta[str(pair.id)]
        if m["difficulty"] != difficulty:
            continue
        for first in (True, False):
            said, right = ((m["colour"], m["wrong"]), 1) if first else ((m["wrong"], m["colour"]), 2)
            good = f"<think>{reasoning_text(m['colour'], m['shape'], *said)}</think><answer>{right}</answer>"
            bad = f"<think>{reasoning_text(m['colour'], m['shape'], *said, copied=3 - right)}</think><answer>{3 - right}</answer>"
            lp_good, lp_bad = completion_logprobs(backend, build_request(pair, first, greedy=True, n=1), [good, bad])
            margins.append(lp_good - lp_bad)
    return {"mean": round(sum(margins) / len(margins), 3), "positive": round(pct(sum(d > 0 for d in margins), len(margins)), 1),
            "n": len(margins)}  # fmt: skip


# ------------------------------------------------------------------------------------------- reporting


def _jsonl_series(path: Path, key: str) -> list[tuple[int, float]]:
    from r1reward_verl.plot import read_jsonl

    if not path.exists():
        return []
    steps = read_jsonl(path).by_step()
    return [(s, m[key]) for s, m in sorted(steps.items()) if key in m]


def rl_curves(wd: Path, exp: str = "miniature-rl") -> dict:
    p = wd / "logs" / "r1reward_cpu" / f"{exp}.jsonl"
    keys = {"reward": "critic/score/mean", "result": "reward/result_mean", "format": "reward/format_mean",
            "consistency": "reward/consistency_mean", "response_length": "response_length/mean"}  # fmt: skip
    return {name: _jsonl_series(p, key) for name, key in keys.items()}


def write_report(wd: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = summary["eval"]
    stages = [s for s in ("base", "sft", "control", "rl") if s in ev]
    rows = ["| checkpoint | accuracy | easy | hard | both orders | " + (f"voting@{summary['plan']['eval_k']} | " if summary["plan"]["eval_k"] else "") + "format |",
            "|---|---|---|---|---|" + ("---|" if summary["plan"]["eval_k"] else "") + "---|"]  # fmt: skip
    for s in stages:
        e = ev[s]
        vote = f" {e.get('voting@' + str(summary['plan']['eval_k']), '–')} |" if summary["plan"]["eval_k"] else ""
        rows.append(f"| {s} | {e['accuracy']} | {e['accuracy_easy']} | {e['accuracy_hard']} | {e['accuracy_both_orders']} |"
                    f"{vote} {e['format_rate']} |")  # fmt: skip
    margins = [f"{s} {ev[s]['copy_margin_hard']['mean']:+.2f} ({ev[s]['copy_margin_hard']['positive']} %)"
               for s in stages if "copy_margin_hard" in ev[s]]
    if margins:
        rows += ["", "Copy margin on the hard pairs, both orders (log pi(right output) - log pi(the same reasoning copying "
                 "the other number), nats; in brackets the % of pair-orders where the right one is likelier): "
                 + ", ".join(margins) + "."]  # fmt: skip
    rows += ["", "Reasoning steps (% of the parsed greedy outputs, both orders; easy / hard): sees the image's colour, "
             "reads both responses' colours, copies the number of the response whose colour it saw.", "",
             "| checkpoint | parsed | sees | reads | copies |", "|---|---|---|---|---|"]  # fmt: skip
    for s in stages:
        st = ev[s].get("reasoning", {})
        cell = lambda k: " / ".join(str(v) if (v := st.get(d, {}).get(k)) is not None else "–" for d in ("easy", "hard"))  # noqa: E731
        rows.append(f"| {s} | {cell('parsed')} | {cell('see')} | {cell('read')} | {cell('copy')} |")
    table = "\n".join(rows)
    (wd / "table.md").write_text(
        f"Held-out accuracy (%) of the miniature, seed {summary['seed']}: {ev['base']['pairs']} pairs "
        f"(half easy, half hard), greedy, asked in the order given; 'both orders' = right in both orders.\n\n{table}\n")
    print(table, flush=True)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    width = 0.8 / 2
    for i, d in enumerate(("easy", "hard")):
        vals = [ev[s][f"accuracy_{d}"] or 0 for s in stages]
        ax.bar([x + (i - 0.5) * width for x in range(len(stages))], vals, width, label=d)
    ax.axhline(50, color="grey", ls=":", lw=1)
    ax.set_xticks(range(len(stages)), stages)
    ax.set_ylim(0, 100)
    ax.set_ylabel("held-out greedy accuracy (%)")
    ax.set_title("Accuracy by checkpoint and difficulty")
    ax.legend()
    sft = summary.get("sft_loss", [])
    axes[1].plot([s for s, _ in sft], [v for _, v in sft], lw=1, label="cold start")
    ctl = summary.get("control_loss", [])
    if ctl:
        off = sft[-1][0] if sft else 0
        axes[1].plot([off + s for s, _ in ctl], [v for _, v in ctl], lw=1, label="control (SFT continued)")
    axes[1].set_xlabel("SFT step")
    axes[1].set_ylabel("train/loss")
    axes[1].set_yscale("log")
    axes[1].set_title("SFT loss (verl's SFT trainer)")
    axes[1].legend()
    for name, series in summary.get("rl_curves", {}).items():
        if series and name in ("reward", "result", "format", "consistency"):
            axes[2].plot([s for s, _ in series], [v for _, v in series], marker=".", label=name)
    axes[2].set_xlabel("RL step")
    axes[2].set_title("RL reward (verl's main_ppo, StableReinforce)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(wd / "accuracy.png", dpi=110)
    plt.close(fig)


def ablations_stage(wd: Path, plan: Plan, seed: int, referee: str, main_eval: Optional[dict]) -> dict:
    """The sweep, each ablation's held-out evaluation (greedy, both orders), the overlay of their RL curves
    with the main run's (``plots_ablations/``) and ``ablations.md`` -> ``{ablation: {eval, curves}}``."""
    from r1reward_verl.plot import main as plot_main

    models = run_ablations(wd, plan, seed, referee)
    res = {a: {"eval": evaluate_model(wd, f"rl_{a}", m, replace(plan, eval_k=0), seed), "curves": rl_curves(wd, f"miniature-{a}")}
           for a, m in models.items()}  # fmt: skip
    runs = [str(wd / "logs" / "r1reward_cpu" / f"miniature-{e}.jsonl") for e in ["rl", *ABLATIONS]]
    plot_main([*runs, "--out", str(wd / "plots_ablations"), "--labels", "StableReinforce", *ABLATIONS])
    rows = ["| RL run | accuracy | easy | hard | both orders | copies (hard) | reward, mean of first -> last 5 steps |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, ev, curves in [("StableReinforce", main_eval, rl_curves(wd)), *[(a, r["eval"], r["curves"]) for a, r in res.items()]]:
        rew = [v for _, v in curves["reward"]]
        trend = f"{sum(rew[:5]) / len(rew[:5]):.3f} -> {sum(rew[-5:]) / len(rew[-5:]):.3f}" if rew else "–"
        cells = ["–"] * 5
        if ev:
            cells = [ev["accuracy"], ev["accuracy_easy"], ev["accuracy_hard"], ev["accuracy_both_orders"],
                     (ev.get("reasoning", {}).get("hard") or {}).get("copy", "–")]  # fmt: skip
        rows.append(f"| {name} | " + " | ".join(map(str, cells)) + f" | {trend} |")
    (wd / "ablations.md").write_text(f"RL from the same SFT checkpoint, seed {seed}, with each ablation: held-out "
                                     "accuracy (%), greedy.\n\n" + "\n".join(rows) + "\n")  # fmt: skip
    print("\n".join(rows), flush=True)
    return res


def run(wd: Path, seed: int = 0, plan: Plan = Plan(), control: bool = True, ablations: bool = False,
        referee: str = "synth") -> dict:  # fmt: skip
    from r1reward_verl.plot import main as plot_main

    t0 = time.monotonic()
    wd = Path(wd).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "summary.json").unlink(missing_ok=True)
    timings: dict[str, float] = {}
    summary: dict = {"seed": seed, "plan": asdict(plan), "referee": referee, "eval": {}}

    def stage(name: str, msg: str):
        _line(f"{len(timings) + 1}. {msg}")
        timings[name] = time.monotonic()

    def done(name: str, msg: str = "") -> None:
        timings[name] = round(time.monotonic() - timings[name], 1)
        _line(f"   {name}: {timings[name]:.0f} s{'; ' + msg if msg else ''}")

    stage("data", f"synthetic pairs (seed {seed}) -> preprocess.pairs -> {wd / 'sft'}, {wd / 'rl'}")
    summary["data"] = make_data(wd, plan, seed)
    tr, ho = summary["data"]["train"], summary["data"]["heldout"]
    done("data", f"train {tr['by_difficulty']} ({tr['reasoning_rows']} with reasoning -> SFT; hard -> RL), "
                 f"held-out {ho['by_difficulty']}")  # fmt: skip
    stage("base", "tiny Qwen2.5-VL (head_dim 32, task tokenizer) and its held-out evaluation")
    base = build_base(wd, seed)
    summary["eval"]["base"] = evaluate_model(wd, "base", base, replace(plan, eval_k=0), seed, margin=False)  # random: greedy is enough
    done("base", f"accuracy {summary['eval']['base']['accuracy']} %, format {summary['eval']['base']['format_rate']} %")

    stage("sft", f"cold start: verl's SFT trainer, {plan.sft_steps} steps x {plan.sft_batch} (log: logs/policy.log)")
    policy = run_sft(wd, "policy", base, plan.sft_steps, plan.sft_batch, plan.sft_lr, plan.sft_warmup, seed,
                     plan.sft_schedule, plan.sft_procs)  # fmt: skip
    summary["sft_loss"] = _jsonl_series(wd / "logs" / "sft" / "policy.jsonl", "train/loss")
    summary["eval"]["sft"] = evaluate_model(wd, "sft", policy, plan, seed)
    done("sft", f"loss {summary['sft_loss'][0][1]:.3f} -> {summary['sft_loss'][-1][1]:.3f}; accuracy "
                f"{summary['eval']['sft']['accuracy']} % (hard {summary['eval']['sft']['accuracy_hard']} %)")  # fmt: skip

    stage("rl", f"RL: verl's main_ppo, r1reward_cpu.yaml, {plan.rl_steps} steps x {plan.rl_prompts} prompts x "
                f"{plan.rl_n} (log: logs/rl.log)")  # fmt: skip
    t_rl = time.monotonic()
    rl = run_rl(wd, plan, seed, referee)
    summary["rl_seconds"] = round(time.monotonic() - t_rl, 1)
    summary["rl_curves"] = rl_curves(wd)
    summary["eval"]["rl"] = evaluate_model(wd, "rl", rl, plan, seed)
    rew = summary["rl_curves"]["reward"]
    done("rl", f"reward {rew[0][1]:.3f} -> {rew[-1][1]:.3f}; accuracy {summary['eval']['rl']['accuracy']} % "
               f"(hard {summary['eval']['rl']['accuracy_hard']} %), format {summary['eval']['rl']['format_rate']} %")  # fmt: skip

    if control:
        per_update = plan.rl_mini_batch * plan.rl_n
        stage("control", f"control: SFT continued {plan.rl_updates} updates x {per_update} at lr {plan.rl_lr}")
        ctl = run_sft(wd, "control", policy, plan.rl_updates, per_update, plan.rl_lr, 0, seed, nproc=plan.sft_procs)
        summary["control_loss"] = _jsonl_series(wd / "logs" / "sft" / "control.jsonl", "train/loss")
        summary["eval"]["control"] = evaluate_model(wd, "control", ctl, plan, seed)
        done("control", f"accuracy {summary['eval']['control']['accuracy']} % (hard "
                        f"{summary['eval']['control']['accuracy_hard']} %)")  # fmt: skip

    stage("report", f"table.md, accuracy.png, plots/ (Figure 2/5 panels from verl's logs)")
    plot_main([str(wd / "logs" / "r1reward_cpu" / "miniature-rl.jsonl"), "--out", str(wd / "plots")])
    ev = summary["eval"]
    summary["accuracy"] = {s: ev[s]["accuracy"] for s in ("base", "sft", "rl", "control") if s in ev}
    summary["accuracy_hard"] = {s: ev[s]["accuracy_hard"] for s in ("sft", "rl", "control") if s in ev}
    summary["format_rate"] = {s: ev[s]["format_rate"] for s in ("base", "sft", "rl", "control") if s in ev}
    summary["copy_margin_hard"] = {s: ev[s]["copy_margin_hard"]["mean"] for s in ("sft", "rl", "control") if s in ev}
    write_report(wd, summary)
    done("report")

    if ablations:
        stage("ablations", "the four ablations as one sweep from the same SFT checkpoint (log: logs/ablations.log)")
        summary["ablations"] = ablations_stage(wd, plan, seed, referee, summary["eval"].get("rl"))
        done("ablations", ", ".join(f"{a}: hard {r['eval']['accuracy_hard']} %" for a, r in summary["ablations"].items()))

    summary["seconds"] = round(time.monotonic() - t0, 1)
    summary["stage_seconds"] = timings
    (wd / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _line(f"done in {summary['seconds'] / 60:.1f} min: {wd / 'summary.json'}, {wd / 'table.md'}, {wd / 'accuracy.png'}, "
          f"{wd / 'plots'}")  # fmt: skip
    return summary


def ablations_only(wd: Path) -> dict:
    """``--ablations-only``: the ablation stage from a finished main job's work dir (its SFT checkpoint
    ``policy/``, plan, seed and referee from its ``summary.json``), added to that summary."""
    wd = Path(wd).resolve()
    path = wd / "summary.json"
    if not path.exists() or not (wd / "policy" / "config.json").exists():
        raise SystemExit(f"{wd} holds no finished main job (summary.json and policy/): run the main job there first")
    summary = json.loads(path.read_text())
    plan = Plan(**summary["plan"])
    t = time.monotonic()
    _line(f"ablations: the four ablations as one sweep from {wd / 'policy'} (log: logs/ablations.log)")
    summary["ablations"] = ablations_stage(wd, plan, summary["seed"], summary["referee"], summary["eval"].get("rl"))
    summary.setdefault("stage_seconds", {})["ablations"] = round(time.monotonic() - t, 1)
    path.write_text(json.dumps(summary, indent=1) + "\n")
    _line(f"done in {(time.monotonic() - t) / 60:.1f} min: {wd / 'ablations.md'}, {wd / 'plots_ablations'}")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--seed", type=int, default=0, help="data, initial weights, SFT order and RL sampling")
    parser.add_argument("--quick", action="store_true", help="the same cold start, 4 short RL steps, greedy only (~13 min)")
    parser.add_argument("--no-control", action="store_true", help="skip the control (SFT continued)")
    parser.add_argument("--ablations", action="store_true", help="also run the four ablations and overlay them")
    parser.add_argument("--ablations-only", action="store_true",
                        help="only the ablations, from the finished main job in --workdir (its SFT checkpoint and plan)")
    parser.add_argument("--referee", choices=["synth", "hosted", "rule"], default="synth",
                        help="synth: a task-aware referee on 127.0.0.1 (referee=endpoint); hosted: the config's "
                             "referee (the tiny random model, hosted by verl's reward loop); rule: the reasoning's "
                             "last 'Response N' must be the answer")  # fmt: skip
    for f in Plan.__dataclass_fields__.values():
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(Plan(), f.name)), default=None,
                            help=f"default {getattr(Plan(), f.name)} ({getattr(QUICK, f.name)} with --quick)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.ablations_only:
        ablations_only(Path(args.workdir))
        return 0
    plan = QUICK if args.quick else Plan()
    plan = replace(plan, **{k: getattr(args, k) for k in Plan.__dataclass_fields__ if getattr(args, k) is not None})
    run(Path(args.workdir), seed=args.seed, plan=plan, control=not args.no_control, ablations=args.ablations,
        referee=args.referee)
    return 0


if __name__ == "__main__":
    sys.exit(main())
