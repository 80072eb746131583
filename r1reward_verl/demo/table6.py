"""Table 6 in miniature (``python -m r1reward_verl.demo --table6``): from the same synthetic pairs and the same tiny
base model, each of the paper's rows trained through verl and evaluated on the held-out benchmark by the real
evaluator:

- ``bt_head``: the Bradley-Terry scalar reward model (``r1reward_verl.bt``) on every training pair;
- ``critic_then_score``: a critic (verl's SFT trainer) writes a critique of each response, a scalar head trained on
  response + gold critique scores it (``r1reward_verl.data.outputs``, ``demo.critic``);
- ``sft_only``: the long-CoT cold start (the main job's *sft*);
- ``stable_reinforce``: the main job's RL;
- ``no_adv_filter``, ``no_preclip``, ``reinforce_pp``: RL from the same SFT checkpoint with the ablation (one sweep).

``summary.json``'s ``table6``: ``{row: {accuracy, easy, hard, both_orders, format, model}}`` and ``table6.md``."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from r1reward_verl.cli import UserError
from r1reward_verl.demo.plan import Plan

ROWS = {  # row key -> the paper's Table 6 row
    "bt_head": "Traditional reward model (two-layer MLP head)",
    "critic_then_score": "Critic-then-score (MM-RLHF-Reward)",
    "sft_only": "Long-CoT SFT only",
    "stable_reinforce": "R1-Reward (StableReinforce)",
    "no_adv_filter": "w/o advantage filter",
    "no_preclip": "w/o pre-clip",
    "reinforce_pp": "Reinforce++",
}
RL_ABLATIONS = ("no_adv_filter", "no_preclip", "reinforce_pp")


def _row(ev: dict, model: Path) -> dict:
    return {"accuracy": ev["accuracy"], "easy": ev["accuracy_easy"], "hard": ev["accuracy_hard"],
            "both_orders": ev["accuracy_both_orders"], "format": ev["format_rate"], "model": str(model)}  # fmt: skip


TRAINED = ("bt_head", "critic_then_score", *RL_ABLATIONS)  # the rows this stage trains (``--table6-rows``)


def table6_stage(wd: Path, plan: Plan, seed: int, referee: str, summary: dict, line=print,
                 rows_to_train: tuple[str, ...] = TRAINED) -> dict:  # fmt: skip
    """The rows the main job did not train (it gave ``sft`` and ``rl``): the RL ablations, the BT head and
    critic-then-score -> ``summary["table6"]`` and ``table6.md``. Needs the main job's ``policy/``, ``rl_model/``
    and ``tiny-qwen25vl/`` in ``wd``. ``rows_to_train`` (a subset of :data:`TRAINED`) retrains only those; the
    other rows are kept from ``summary["table6"]``."""
    from r1reward_verl.demo.critic import write_critic_data
    from r1reward_verl.demo.evaluate import evaluate_model, evaluate_scalar
    from r1reward_verl.demo.report import jsonl_series
    from r1reward_verl.demo.stages import run_ablations, run_bt, run_sft

    kept = {k: v for k, v in (summary.get("table6") or {}).items() if k in TRAINED and k not in rows_to_train}
    missing = [k for k in TRAINED if k not in rows_to_train and k not in kept]
    if missing:
        raise UserError(f"{wd / 'summary.json'} has no table6 rows {', '.join(missing)} to keep (--table6-rows): run "
                        "--table6 there first")  # fmt: skip
    greedy = replace(plan, eval_k=0)
    base, rows, seconds = wd / "tiny-qwen25vl", dict(kept), {}
    rows["sft_only"] = _row(summary["eval"]["sft"], wd / "policy")
    rows["stable_reinforce"] = _row(summary["eval"]["rl"], wd / "rl_model")

    if "bt_head" in rows_to_train:
        t = time.monotonic()
        line(f"   table 6: Bradley-Terry head, {plan.bt_steps} steps x {plan.bt_batch} pairs from the base (log: logs/bt_head.log)")
        bt = run_bt(wd, "bt_head", base, "bt", plan, seed)
        rows["bt_head"] = _row(evaluate_scalar(wd, "bt_head", bt, seed), bt)
        rows["bt_head"]["train_accuracy_last"] = (jsonl_series(wd / "logs" / "bt" / "bt_head.jsonl", "bt/accuracy") or [(0, None)])[-1][1]
        seconds["bt_head"] = round(time.monotonic() - t, 1)

    if "critic_then_score" in rows_to_train:
        t = time.monotonic()
        line(f"   table 6: critic-then-score: the critic ({plan.critic_steps} SFT steps), then its head (logs/critic.log)")
        summary["critic_data"] = write_critic_data(wd, seed)
        critic = run_sft(wd, "critic", base, plan.critic_steps, plan.sft_batch, plan.sft_lr, plan.sft_warmup, seed,
                         plan.sft_schedule, plan.sft_procs, data="critic_sft")  # fmt: skip
        scorer = run_bt(wd, "critic_scorer", critic, "critic_bt", plan, seed)
        ev = evaluate_scalar(wd, "critic_then_score", scorer, seed, critic=critic)
        rows["critic_then_score"] = {**_row(ev, scorer), "critic": str(critic), "critic_sees_colour": ev.get("critic_sees_colour")}
        seconds["critic_then_score"] = round(time.monotonic() - t, 1)

    ablations = tuple(a for a in RL_ABLATIONS if a in rows_to_train)
    if ablations:
        t = time.monotonic()
        line(f"   table 6: RL ablations {', '.join(ablations)} as one sweep from policy/ (log: logs/ablations.log)")
        models = run_ablations(wd, plan, seed, referee, ablations)
        for a, m in models.items():
            rows[a] = _row(evaluate_model(wd, f"rl_{a}", m, greedy, seed), m)
        seconds["rl_ablations"] = round(time.monotonic() - t, 1)

    table = {k: rows[k] for k in ROWS}
    summary["table6"] = table
    summary.setdefault("stage_seconds", {}).update({f"table6_{k}": v for k, v in seconds.items()})
    write_table6(wd, seed, table)
    return table


def _cell(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def write_table6(wd: Path, seed: int, table: dict) -> str:
    rows = ["| row (paper's Table 6) | accuracy | easy | hard | both orders | format |", "|---|---|---|---|---|---|"]
    for k, name in ROWS.items():
        r = table[k]
        rows.append(f"| {name} (`{k}`) | {_cell(r['accuracy'])} | {_cell(r['easy'])} | {_cell(r['hard'])} | "
                    f"{_cell(r['both_orders'])} | {_cell(r['format'])} |")  # fmt: skip
    text = "\n".join(rows)
    (wd / "table6.md").write_text(
        f"Table 6 in miniature, seed {seed}: held-out accuracy (%), greedy, the order given; 'both orders' = right "
        "in both orders (a scalar model scores each response on its own: equal to accuracy); format: % of outputs "
        "in the <think>/<answer> format (– for the scalar rows).\n\n" + text + "\n")  # fmt: skip
    print(text, flush=True)
    return text
