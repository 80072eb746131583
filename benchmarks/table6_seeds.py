"""Table 6 in miniature over seeds: each row's mean and range from the work dirs of
``python -m r1reward_verl.demo --table6`` (one per seed), the paper's Table 6 beside it; with ``--stress``, the
stress study's per-seed outcomes (``--stress-only``) and one overlay plot per seed.

    .venv/bin/python benchmarks/table6_seeds.py runs/t6_s0 runs/t6_s1 runs/t6_s2 [--stress] [--plot docs/table6_miniature.png]
"""
# benchmarks-test: skip: it reads the work dirs of --table6 runs (verl training runs, 20-23 min a seed)

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from r1reward_verl.demo.table6 import ROWS  # noqa: E402

# R1-Reward Table 6, VL-RewardBench overall accuracy (%), Qwen2.5-VL-7B on R1-Reward-200K
PAPER = {"bt_head": 56.41, "critic_then_score": 60.80, "sft_only": 64.80, "stable_reinforce": 71.92,
         "no_adv_filter": 68.96, "no_preclip": 67.36, "reinforce_pp": None}  # fmt: skip


def _stat(values) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    return f"{sum(v) / len(v):.1f} [{min(v):.1f}, {max(v):.1f}]"


def table6(summaries: list[dict]) -> str:
    seeds = ", ".join(str(s["seed"]) for s in summaries)
    lines = [f"| row | paper (overall) | accuracy, mean [min, max] over seeds {seeds} | easy | hard | both orders | "
             "format | per seed |", "|---|---|---|---|---|---|---|---|"]
    for key, name in ROWS.items():
        rows = [s["table6"][key] for s in summaries]
        paper = "collapse" if key == "reinforce_pp" else f"{PAPER[key]:.2f}"
        lines.append(f"| {name} | {paper} | {_stat(r['accuracy'] for r in rows)} | {_stat(r['easy'] for r in rows)} | "
                     f"{_stat(r['hard'] for r in rows)} | {_stat(r['both_orders'] for r in rows)} | "
                     f"{_stat(r['format'] for r in rows)} | {' / '.join(str(r['accuracy']) for r in rows)} |")  # fmt: skip
    return "\n".join(lines)


def stress(summaries: list[dict]) -> str:
    lines = ["| seed | row | accuracy (SFT) | hard | reward step 1 -> 8 | max preclip frac | mean filtered frac | "
             "max response length | max grad norm | collapsed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        if "stress" not in s:
            continue
        for row, r in s["stress"].items():
            c, e = r["curves"], r["eval"]
            rew = c["reward"]
            lines.append(f"| {s['seed']} | {row} | {e['accuracy']} ({s['eval']['sft']['accuracy']}) | {e['accuracy_hard']} | "
                         f"{rew[0][1]:.3f} -> {rew[-1][1]:.3f} | {max(v for _, v in c['preclip_frac']):.4f} | "
                         f"{sum(v for _, v in c['filtered_frac']) / max(len(c['filtered_frac']), 1):.4f} | "
                         f"{max(v for _, v in c['response_length']):.0f} | {max(v for _, v in c['grad_norm']):.2f} | "
                         f"{'yes: ' + '; '.join(r['collapse']['why']) if r['collapse']['collapsed'] else 'no'} |")  # fmt: skip
    return "\n".join(lines)


def plot(summaries: list[dict], out: Path) -> None:
    """Each row's held-out accuracy over the seeds (bar: mean, whisker: min-max, dots: seeds), the paper's beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(ROWS)
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for i, key in enumerate(keys):
        vals = [s["table6"][key]["accuracy"] for s in summaries]
        mean = sum(vals) / len(vals)
        ax.bar(i - 0.2, mean, 0.4, color="tab:blue", label="miniature (mean over seeds)" if i == 0 else None)
        ax.errorbar(i - 0.2, mean, yerr=[[mean - min(vals)], [max(vals) - mean]], color="k", capsize=4)
        ax.scatter([i - 0.2] * len(vals), vals, color="k", s=10, zorder=3)
        if PAPER[key] is not None:
            ax.bar(i + 0.2, PAPER[key], 0.4, color="tab:orange", label="paper, VL-RewardBench" if i == 0 else None)
        else:
            ax.text(i + 0.2, 2, "collapse", rotation=90, ha="center", va="bottom", fontsize=8)
    ax.axhline(50, color="grey", ls=":", lw=1)
    ax.set_xticks(range(len(keys)), [k.replace("_", "\n") for k in keys], fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"Table 6 in miniature (seeds {', '.join(str(s['seed']) for s in summaries)}) and the paper's Table 6")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"plot: {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdirs", nargs="+")
    ap.add_argument("--stress", action="store_true")
    ap.add_argument("--plot", help="write the Table 6 bar chart here (PNG)")
    args = ap.parse_args(argv)
    summaries = [json.loads((Path(w) / "summary.json").read_text()) for w in args.workdirs]
    print(table6([s for s in summaries if "table6" in s]))
    if args.plot:
        plot([s for s in summaries if "table6" in s], Path(args.plot))
    if args.stress:
        print()
        print(stress(summaries))
    minutes = [round(s["seconds"] / 60, 1) for s in summaries if "seconds" in s]
    print(f"\nwall time of --table6 per seed (min): {minutes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
