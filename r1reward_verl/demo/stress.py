"""The stabilisers put to a test they can fail (``python -m r1reward_verl.demo --stress``): the four RL rows of
Table 6 (StableReinforce, w/o advantage filter, w/o pre-clip, Reinforce++) from the same SFT checkpoint in a regime
where ratios beyond the pre-clip bound and advantage outliers occur, one Hydra sweep.

The regime (:func:`stress_plan`, :data:`STRESS_OVERRIDES`): off-policy updates (8 prompts x 4 samples a step, 4 PPO
epochs over 8 mini-batches of one prompt = 32 optimizer updates per rollout batch), learning rate 3e-4 (3x the
miniature's), 8 steps. In the default miniature the pre-clip never
acts and the filter removes 0-6 of 64 sequences a step; here the ratios leave [1e-3, 1e3] (``actor/preclip_frac``).

The collapse criterion, stated before any run (:func:`collapsed`): a run collapses when (a) any step logs a
non-finite policy loss or grad norm, or (b) its mean step reward over the last 3 steps is below 0.6x its first
step's, or (c) its held-out accuracy ends 10 points or more below the SFT checkpoint's.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

from r1reward_verl.demo.plan import Plan

ROWS = ("none", "no_adv_filter", "no_preclip", "reinforce_pp")  # the ablation group's names; none = StableReinforce
LABELS = {"none": "stable_reinforce", "no_adv_filter": "no_adv_filter", "no_preclip": "no_preclip", "reinforce_pp": "reinforce_pp"}
# 8 prompts x 4 samples a step in 8 mini-batches of one prompt, 4 epochs: 32 updates a step
STRESS_STEPS, STRESS_PROMPTS, STRESS_LR, STRESS_EPOCHS, STRESS_MINI_BATCH = 8, 8, 3e-4, 4, 1
CURVES = {"reward": "critic/score/mean", "result": "reward/result_mean", "pg_loss": "actor/pg_loss",
          "grad_norm": "actor/grad_norm", "preclip_frac": "actor/preclip_frac", "filtered_frac": "adv_filter/filtered_frac",
          "response_length": "response_length/mean", "ppo_kl": "actor/ppo_kl"}  # fmt: skip


def stress_plan(plan: Plan) -> Plan:
    return replace(plan, rl_steps=STRESS_STEPS, rl_prompts=STRESS_PROMPTS, rl_lr=STRESS_LR, rl_mini_batch=STRESS_MINI_BATCH,
                   eval_k=0)


STRESS_OVERRIDES = [f"actor_rollout_ref.actor.ppo_epochs={STRESS_EPOCHS}"]


def collapsed(curves: dict, accuracy: float, sft_accuracy: float) -> dict:
    """The criterion of the module docstring -> ``{"collapsed": bool, "why": [...]}``."""
    why = []
    nonfinite = sum(not math.isfinite(v) for k in ("pg_loss", "grad_norm") for _, v in curves.get(k, []))
    if nonfinite:
        why.append(f"{nonfinite} non-finite loss/grad-norm values")
    rew = [v for _, v in curves.get("reward", [])]
    if rew and len(rew) >= 3 and sum(rew[-3:]) / 3 < 0.6 * rew[0]:
        why.append(f"reward {rew[0]:.3f} -> {sum(rew[-3:]) / 3:.3f} (last 3 steps) < 0.6x")
    if accuracy <= sft_accuracy - 10:
        why.append(f"held-out accuracy {accuracy} <= SFT {sft_accuracy} - 10")
    return {"collapsed": bool(why), "why": why, "nonfinite": nonfinite}


def stress_stage(wd: Path, plan: Plan, seed: int, referee: str, sft_accuracy: float) -> dict:
    """The sweep from ``policy/`` with the stress regime -> ``{row: {curves, eval, collapse}}`` (rows by Table 6 key),
    their overlay (``plots_stress/``) and ``stress.md``."""
    from r1reward_verl.demo.evaluate import evaluate_model
    from r1reward_verl.demo.report import jsonl_series
    from r1reward_verl.demo.stages import _export, main_ppo, referee_overrides, rl_overrides
    from r1reward_verl.plot import main as plot_main

    sp = stress_plan(plan)
    for a in ROWS:
        (wd / "logs" / "r1reward_cpu" / f"stress-{a}.jsonl").unlink(missing_ok=True)
        shutil.rmtree(wd / "checkpoints" / f"stress-{a}", ignore_errors=True)
    over = [o for o in rl_overrides(wd, sp, seed, "X") if not o.startswith("trainer.experiment_name")
            and not o.startswith("hydra.")]  # fmt: skip
    over += [f"ablation={','.join(ROWS)}", "trainer.experiment_name=stress-${r1reward.ablation}", *STRESS_OVERRIDES,
             f"hydra.run.dir={wd}/logs/hydra/stress", f"hydra.sweep.dir={wd}/logs/hydra/stress-sweep"]  # fmt: skip
    with referee_overrides(wd, referee) as extra:
        main_ppo(wd, over + extra, wd / "logs" / "stress.log", multirun=True)
    out = {}
    for a in ROWS:
        model = _export(wd, f"stress-{a}", sp.rl_steps, f"stress_{a}")
        ev = evaluate_model(wd, f"stress_{a}", model, sp, seed, margin=False)
        path = wd / "logs" / "r1reward_cpu" / f"stress-{a}.jsonl"
        curves = {name: jsonl_series(path, key) for name, key in CURVES.items()}
        out[LABELS[a]] = {"eval": {k: ev[k] for k in ("accuracy", "accuracy_easy", "accuracy_hard", "accuracy_both_orders",
                                                       "format_rate")},
                          "curves": curves, "collapse": collapsed(curves, ev["accuracy"], sft_accuracy)}  # fmt: skip
    runs = [str(wd / "logs" / "r1reward_cpu" / f"stress-{a}.jsonl") for a in ROWS]
    plot_main([*runs, "--out", str(wd / "plots_stress"), "--labels", *[LABELS[a] for a in ROWS]])
    write_stress(wd, seed, out, sft_accuracy)
    return out


def _mean(series) -> float:
    return sum(v for _, v in series) / len(series) if series else float("nan")


def write_stress(wd: Path, seed: int, res: dict, sft_accuracy: float) -> None:
    rows = ["| RL row | accuracy (SFT %.1f) | hard | format | reward first -> last | max preclip frac | mean filtered frac | "
            "max response length | non-finite | collapsed |" % sft_accuracy, "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        c, e = r["curves"], r["eval"]
        rew = c["reward"]
        rows.append(f"| {name} | {e['accuracy']} | {e['accuracy_hard']} | {e['format_rate']} | "
                    f"{rew[0][1]:.3f} -> {rew[-1][1]:.3f} | {max((v for _, v in c['preclip_frac']), default=0):.4f} | "
                    f"{_mean(c['filtered_frac']):.4f} | {max((v for _, v in c['response_length']), default=0):.0f} | "
                    f"{r['collapse']['nonfinite']} | {'yes: ' + '; '.join(r['collapse']['why']) if r['collapse']['collapsed'] else 'no'} |")  # fmt: skip
    text = "\n".join(rows)
    (wd / "stress.md").write_text(f"The stress regime (r1reward_verl.demo.stress), seed {seed}: 8 prompts x 4 a "
                                  f"step, 4 PPO epochs x 8 mini-batches, lr 3e-4, 8 steps, from the SFT checkpoint.\n\n{text}\n")
    print(text, flush=True)
