"""metrics.json -> a markdown table shaped like the paper's tables, and PNG plots of accuracy vs k."""

from __future__ import annotations

import math
from pathlib import Path

from r1reward_verl.eval.metrics import HEADLINE

COLUMNS = {
    # paper Table 3 (VL-RewardBench)
    "vl_rewardbench": [("General", "general"), ("Hallucination", "hallucination"), ("Reasoning", "reasoning"),
                       ("Overall Accuracy", "overall_acc"), ("Macro Average Accuracy", "macro_acc")],
    # paper Table 4 (Multimodal RewardBench)
    "multimodal_rewardbench": [("Overall", "overall"), ("General Correctness", "correctness"),
                               ("General Preference", "preference"), ("Knowledge", "knowledge"),
                               ("Reasoning Math", "math"), ("Reasoning Coding", "coding"),
                               ("Safety Bias", "bias"), ("Safety Toxicity", "toxicity"), ("VQA", "vqa")],
    # paper Table 5 (MM-RLHF-RewardBench)
    "mm_rlhf_rewardbench": [("Mcq", "mcq"), ("Long", "long"), ("Short", "short"), ("Safety", "safety"),
                            ("Video", "video"), ("Acc", "acc"), ("Acc+", "acc_plus")],
}  # fmt: skip
TITLES = {"vl_rewardbench": "VL-RewardBench", "multimodal_rewardbench": "Multimodal RewardBench",
          "mm_rlhf_rewardbench": "MM-RLHF-RewardBench"}  # fmt: skip


def _cell(m: dict, key: str) -> str:
    v = m.get(key)
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def markdown_table(metrics: dict, model: str = "model") -> str:
    """One table per benchmark: the main row (greedy), voting@k rows, position-swap rows."""
    out = []
    for bench, m in metrics.items():
        cols = COLUMNS[bench]
        failed = f"; {m['failed']} pairs NOT SCORED: their requests failed" if m.get("failed") else ""
        out.append(f"### {TITLES[bench]} (n = {m['n']}, unparsable {m['unparsable']}{failed})\n")
        out.append("| Model | " + " | ".join(c for c, _ in cols) + " |")
        out.append("|---" * (len(cols) + 1) + "|")
        rows = [(f"{model} ({m['mode']})", m)]
        rows += [(f"{model} (voting@{k})", v) for k, v in m.get("voting", {}).items()]
        rows += [(f"{model} (any@{k})", v) for k, v in m.get("any", {}).items()]
        swap = m.get("position_swap")
        if swap:
            rows += [(f"{model} (swapped order)", swap["swapped"]), (f"{model} (right in both orders)", swap["debiased"])]
        for name, vals in rows:
            out.append(f"| {name} | " + " | ".join(_cell(vals, key) for _, key in cols) + " |")
        if swap:
            out.append(f"\nPosition swap: agreement between orders {swap['agreement']:.2f}% over {swap['n']} pairs.")
        out.append("")
    return "\n".join(out)


def plot_accuracy_vs_k(metrics: dict, out_dir: str | Path) -> list[Path]:
    """Paper Fig. 4: accuracy vs number of samples, "vote" and "any", one PNG per benchmark + one with all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    benches = [b for b, m in metrics.items() if m.get("voting")]
    paths = []

    def draw(ax, bench):
        m, key = metrics[bench], HEADLINE[bench]
        ks = sorted(int(k) for k in m["voting"])
        vote, any_ = [m["voting"][str(k)][key] for k in ks], [m["any"][str(k)][key] for k in ks]
        ax.plot(ks, vote, "o-", label="Vote")
        ax.plot(ks, any_, "s--", label="Any")
        values = [v for v in vote + any_ + [m[key]] if not math.isnan(v)]
        ax.set_ylim(max(0.0, min(values, default=0.0) - 5), min(100.0, max(values, default=100.0) + 5))
        if m["mode"] == "greedy":
            ax.axhline(m[key], color="grey", lw=0.8, ls=":", label="Greedy")
        ax.set_title(TITLES[bench])
        ax.set_xlabel("number of samples k")
        ax.set_ylabel(f"{key} (%)")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
        ax.legend()

    for bench in benches:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        draw(ax, bench)
        fig.tight_layout()
        p = out_dir / f"accuracy_vs_k_{bench}.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    if benches:
        fig, axes = plt.subplots(1, len(benches), figsize=(4.5 * len(benches), 3.5), squeeze=False)
        for ax, bench in zip(axes[0], benches):
            draw(ax, bench)
        fig.tight_layout()
        p = out_dir / "accuracy_vs_k.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    return paths
