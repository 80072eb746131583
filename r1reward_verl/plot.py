"""Training curves of the paper's Figures 2 and 5 from the metrics verl logged, one line per run.

    # the ablation sweep's TensorBoard logs (verl's default logger), every run under the folder
    python -m r1reward_verl.plot tensorboard_log/r1reward --out plots/ablations

    # verl's file logger (trainer.logger=[console,file]): one JSONL per experiment
    python -m r1reward_verl.plot $VERL_FILE_LOGGER_ROOT/r1reward --smooth 10

    # single runs, with your own legend labels (in the order the runs are found)
    python -m r1reward_verl.plot tensorboard_log/r1reward/r1reward-paper-none-fsdp \\
        tensorboard_log/r1reward/r1reward-paper-no_preclip-fsdp --labels StableReinforce "w/o pre-clip"

Inputs (each RUN_DIR argument, searched recursively):

* verl's file logger (``verl.utils.tracking.FileLogger``): ``<root>/<project>/<experiment>.jsonl``, one
  ``{"step": n, "data": {metric: value}}`` line per step; the run is labelled by the file's stem, i.e. the
  experiment name. orjson writes NaN and ±inf as ``null``: read back as NaN. Flat lines
  ``{"step": n, metric: value, ...}`` are read too; a metric
  logged per PPO epoch as ``key@epochN`` stands for ``key`` (the last epoch) when ``key`` is absent.
  JSONL files whose first line has no ``step`` (e.g. evaluation ``items.jsonl``) are skipped.
* verl's TensorBoard logger (``torch.utils.tensorboard.SummaryWriter``): a folder holding
  ``events.out.tfevents.*`` files, by default ``tensorboard_log/<project>/<experiment>/`` (or
  ``$TENSORBOARD_DIR``); labelled by the folder's name. Several event files in one folder (a resumed
  run) are read as one run, through tensorboard's ``EventAccumulator`` (tensorboard is a verl dependency).

Runs holding none of the panels' metrics (e.g. the SFT run next to the RL runs) are skipped, with a note.
A metric missing from a run leaves that run out of that panel (a note says so); a panel without any
data says "no data". A step logged twice keeps its last value. Non-finite values (the loss of a
collapsing run) break the line and are marked with an ``x`` at the top of the panel.

Outputs in ``--out`` (default ``./plots``): ``figure.png`` (all panels), one ``<panel>.png`` per panel and
``metrics.csv`` (``step,run,metric,value``: every logged value of the panels' metrics, unsmoothed).
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from r1reward_verl.cli import ArgumentParser, UserError, cli_main
from r1reward_verl.runlogs import Run, note, find_runs

# (file name, title, y label, candidate metric keys: the first one a run has is plotted)
PANELS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("policy_loss", "Policy loss", "actor/pg_loss", ("actor/pg_loss",)),
    ("response_length", "Response length (tokens)", "response_length/mean", ("response_length/mean",)),
    ("filtered_frac", "Advantage filter: filtered fraction", "adv_filter/filtered_frac",
     ("adv_filter/filtered_frac",)),
    ("preclip_frac", "Pre-clipped fraction", "actor/preclip_frac", ("actor/preclip_frac",)),
    ("reward", "Reward (sequence score)", "critic/score/mean", ("critic/score/mean", "reward/mean")),
    ("consistency", "Consistency reward", "reward/consistency_mean", ("reward/consistency_mean",)),
]  # fmt: skip
PANEL_METRICS = tuple(dict.fromkeys(k for *_, keys in PANELS for k in keys))


def _dedupe_labels(runs: list[Run]) -> None:
    """Same experiment read twice (JSONL and TensorBoard, or two projects): tell the lines apart."""
    for attempt in ("source", "parent", "index"):
        counts: dict[str, int] = {}
        for r in runs:
            counts[r.label] = counts.get(r.label, 0) + 1
        dup = {lab for lab, n in counts.items() if n > 1}
        if not dup:
            return
        for i, r in enumerate(runs):
            if r.label in dup:
                suffix = {"source": r.source, "parent": r.path.parent.name, "index": str(i + 1)}[attempt]
                r.label = f"{r.label} [{suffix}]"


def _panel_key(run: Run, keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if run.series.get(k)), None)


def _smooth(values: list[float], n: int) -> list[float]:
    """Trailing mean over the last ``n`` logged points, ignoring non-finite ones (NaN where the point is)."""
    out, window = [], []
    for v in values:
        window.append(v)
        if len(window) > n:
            window.pop(0)
        finite = [x for x in window if math.isfinite(x)]
        out.append(sum(finite) / len(finite) if finite and math.isfinite(v) else math.nan)
    return out


def _draw_panel(ax, panel, runs: list[Run], colors: dict[str, str], smooth: int, legend: bool) -> None:
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    _, title, ylabel, keys = panel
    drawn, used, all_steps = 0, set(), []
    for run in runs:
        key = _panel_key(run, keys)
        if key is None:
            continue
        used.add(key)
        steps, values = run.steps_values(key)
        all_steps += steps
        color = colors[run.label]
        finite = [v if math.isfinite(v) else math.nan for v in values]
        if smooth > 1:
            ax.plot(steps, finite, color=color, lw=0.8, alpha=0.3)
            ax.plot(steps, _smooth(values, smooth), color=color, lw=1.6, label=run.label)
        else:
            ax.plot(steps, finite, color=color, lw=1.4, label=run.label,
                    marker="o" if len(steps) <= 30 else None, ms=3)
        bad = [s for s, v in zip(steps, values) if not math.isfinite(v)]
        if bad:
            top = blended_transform_factory(ax.transData, ax.transAxes)
            ax.plot(bad, [0.97] * len(bad), "x", color=color, ms=7, mew=2, transform=top, clip_on=False,
                    label=f"{run.label}: NaN/inf")
        drawn += 1
    ax.set_title(title)
    ax.set_xlabel("training step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if all_steps and max(all_steps) - min(all_steps) < 2:  # a run's first steps: keep integer ticks
        ax.set_xlim(min(all_steps) - 1, max(all_steps) + 1)
    ax.set_ylabel(" / ".join(k for k in keys if k in used) or ylabel)
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", fontsize=14, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
    elif legend:
        ax.legend(fontsize=8)


def write_csv(runs: list[Run], path: Path) -> int:
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", "run", "metric", "value"])
        for run in runs:
            for metric in PANEL_METRICS:
                for step, value in sorted(run.series.get(metric, {}).items()):
                    w.writerow([step, run.label, metric, repr(value)])
                    rows += 1
    return rows


def plot(runs: list[Run], out_dir: str | Path, smooth: int = 1) -> list[Path]:
    """figure.png (all panels) and one PNG per panel into ``out_dir``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {r.label: palette[i % len(palette)] for i, r in enumerate(runs)}
    paths = []
    for panel in PANELS:
        fig, ax = plt.subplots(figsize=(6, 4))
        _draw_panel(ax, panel, runs, colors, smooth, legend=True)
        fig.tight_layout()
        p = out_dir / f"{panel[0]}.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)

    ncols = 3
    nrows = math.ceil(len(PANELS) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4 * nrows + 0.8), squeeze=False)
    for ax, panel in zip(axes.flat, PANELS):
        _draw_panel(ax, panel, runs, colors, smooth, legend=False)
    for ax in list(axes.flat)[len(PANELS):]:
        ax.axis("off")
    height = fig.get_figheight()
    legend_rows = math.ceil(len(runs) / 4)
    title = "Training dynamics (R1-Reward Fig. 2 / 5)" + (f", trailing mean over {smooth} steps" if smooth > 1 else "")
    fig.suptitle(title, y=1 - 0.12 / height, va="top", fontsize=13)
    handles = [plt.Line2D([], [], color=colors[r.label], lw=2) for r in runs]
    labels = [r.label for r in runs]
    if any(not math.isfinite(v) for r in runs for k in PANEL_METRICS for v in r.series.get(k, {}).values()):
        handles.append(plt.Line2D([], [], color="black", marker="x", ls="none", ms=7, mew=2))
        labels.append("NaN / inf (drawn at the top)")
        legend_rows = math.ceil(len(handles) / 4)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.45 / height),
               ncol=min(len(handles), 4), fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.45 + 0.3 * legend_rows) / height))
    p = out_dir / "figure.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.insert(0, p)
    return paths


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(
        prog="python -m r1reward_verl.plot",
        description="Plot R1-Reward's training curves (paper Figs. 2 and 5) from verl's JSONL / TensorBoard logs.",
    )
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                    help="a verl file-logger .jsonl, a TensorBoard run folder, or a folder holding several "
                         "(searched recursively)")
    ap.add_argument("--out", default="plots", help="output folder (default: ./plots)")
    ap.add_argument("--labels", nargs="+", help="legend labels, one per run found, in the order found")
    ap.add_argument("--smooth", type=int, default=1,
                    help="trailing mean over N logged steps (the raw curve stays, faint); default 1 = none")
    args = ap.parse_args(argv)
    if args.smooth < 1:
        ap.error("--smooth must be >= 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # checked before any reading
        raise UserError(f"--out {out}: exists and is not a directory")

    runs = find_runs(args.run_dirs)
    kept = []
    for run in runs:
        if any(run.series.get(k) for k in PANEL_METRICS):
            kept.append(run)
        else:
            note(f"{run.path}: none of the plotted metrics ({', '.join(PANEL_METRICS)}), run skipped")
    runs = kept
    if not runs:
        raise UserError(f"no run with any of the plotted metrics found in {', '.join(args.run_dirs)}")
    if args.labels:
        if len(args.labels) != len(runs):
            found = ", ".join(f"{r.label} ({r.path})" for r in runs)
            raise UserError(f"{len(args.labels)} --labels for {len(runs)} runs: {found}")
        for run, label in zip(runs, args.labels):
            run.label = label
    _dedupe_labels(runs)

    print(f"{len(runs)} run(s):")
    for run in runs:
        print(f"  {run.label}: {run.source} {run.path} ({len(run.series)} metrics)")
    for name, title, _, keys in PANELS:
        have = [r for r in runs if _panel_key(r, keys)]
        for run in runs:
            if run not in have:
                note(f"run {run.label!r} has no {' / '.join(keys)}: no line in panel {title!r}")
        if not have:
            note(f"panel {title!r}: no data in any run")
        for run in have:
            key = _panel_key(run, keys)
            steps, values = run.steps_values(key)
            bad = [s for s, v in zip(steps, values) if not math.isfinite(v)]
            if bad:
                note(f"run {run.label!r}: {key} is NaN/inf at {len(bad)} step(s), first at step {bad[0]}")

    out.mkdir(parents=True, exist_ok=True)
    paths = plot(runs, out, smooth=args.smooth)
    rows = write_csv(runs, out / "metrics.csv")
    print(f"figure: {paths[0].resolve()}")
    print("panels: " + ", ".join(str(p.resolve()) for p in paths[1:]))
    print(f"metrics.csv: {(out / 'metrics.csv').resolve()} ({rows} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
