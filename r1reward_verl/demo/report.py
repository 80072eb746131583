"""The miniature's report: ``summary.json``, ``table.md``, ``accuracy.png`` and the RL curves from verl's logs."""

from __future__ import annotations

from pathlib import Path


def jsonl_series(path: Path, key: str) -> list[tuple[int, float]]:
    from r1reward_verl.runlogs import read_jsonl

    if not path.exists():
        return []
    steps = read_jsonl(path).by_step()
    return [(s, m[key]) for s, m in sorted(steps.items()) if key in m]


def rl_curves(wd: Path, exp: str = "miniature-rl") -> dict:
    p = wd / "logs" / "r1reward_cpu" / f"{exp}.jsonl"
    keys = {"reward": "critic/score/mean", "result": "reward/result_mean", "format": "reward/format_mean",
            "consistency": "reward/consistency_mean", "response_length": "response_length/mean"}  # fmt: skip
    return {name: jsonl_series(p, key) for name, key in keys.items()}


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
