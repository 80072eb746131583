"""The metrics verl logged for a run, read back: verl's file logger (``<root>/<project>/<experiment>.jsonl``, one
``{"step": n, "data": {metric: value}}`` line per step; orjson's ``null`` for NaN/inf read back as NaN; flat lines
and ``key@epochN`` per-epoch keys too) and its TensorBoard logger (a folder of ``events.out.tfevents.*``, several
files of a resumed run read as one, through tensorboard's ``EventAccumulator``). :func:`find_runs` walks folders.
One reader for the plots (:mod:`r1reward_verl.plot`), the miniature's report, the tests and the benchmarks.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from r1reward_verl.cli import UserError

_EPOCH_KEY = re.compile(r"^(?P<key>.+)@epoch(?P<epoch>\d+)$")
_SKIP_DIRS = {".git", ".venv", "__pycache__", "node_modules", "wandb"}


@dataclass
class Run:
    label: str
    source: str  # "jsonl" or "tensorboard"
    path: Path
    # metric -> {step: value}
    series: dict[str, dict[int, float]] = field(default_factory=dict)

    def by_step(self) -> dict[int, dict[str, float]]:
        """The same values as ``{step: {metric: value}}``."""
        out: dict[int, dict[str, float]] = {}
        for metric, points in self.series.items():
            for step, value in points.items():
                out.setdefault(step, {})[metric] = value
        return dict(sorted(out.items()))

    def steps_values(self, metric: str) -> tuple[list[int], list[float]]:
        points = sorted(self.series.get(metric, {}).items())
        return [s for s, _ in points], [v for _, v in points]


def note(msg: str) -> None:
    print(f"note: {msg}", flush=True)


def _as_float(value) -> float | None:
    """A logged value as float: None (orjson's NaN/inf) -> NaN; non-numbers -> None (not a scalar)."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list) and len(value) == 1:  # a 1-element array, as OPT_SERIALIZE_NUMPY writes it
        return _as_float(value[0])
    return None


def _is_metrics_jsonl(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    return isinstance(rec, dict) and "step" in rec
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True  # empty: a run that has not logged yet


def read_jsonl(path: str | Path, label: str | None = None) -> Run:
    """verl's FileLogger JSONL (or flat ``{"step": n, metric: value}`` lines) as a Run."""
    path = Path(path)
    run = Run(label or path.stem, "jsonl", path)
    epoch_keys: dict[str, dict[int, tuple[int, float]]] = {}  # key -> step -> (epoch, value)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                note(f"{path}:{lineno}: not JSON (a line cut short by a running job?), skipped")
                continue
            if not isinstance(rec, dict) or "step" not in rec:
                continue
            try:
                step = int(rec["step"])
            except (TypeError, ValueError):
                continue
            data = rec["data"] if isinstance(rec.get("data"), dict) else {k: v for k, v in rec.items() if k != "step"}
            for key, value in data.items():
                v = _as_float(value)
                if v is None:
                    continue
                m = _EPOCH_KEY.match(key)
                if m:
                    slot = epoch_keys.setdefault(m["key"], {})
                    if step not in slot or int(m["epoch"]) >= slot[step][0]:
                        slot[step] = (int(m["epoch"]), v)
                run.series.setdefault(key, {})[step] = v
    for key, by_step in epoch_keys.items():
        if key not in run.series:
            run.series[key] = {s: v for s, (_, v) in by_step.items()}
    return run


def read_tensorboard(run_dir: str | Path, label: str | None = None) -> Run:
    """Every scalar of the event files in ``run_dir`` (one run, several files if it was resumed)."""
    run_dir = Path(run_dir)
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
    except ImportError as e:  # verl depends on tensorboard, so this is a broken install
        raise UserError(f"reading {run_dir} needs the tensorboard package (pip install tensorboard): {e}") from e
    files = sorted(run_dir.glob("events.out.tfevents.*"))
    if len(files) > 1:
        note(f"{run_dir}: {len(files)} event files read as one run (a resumed run; if these are different "
              "runs, log each to its own folder: leave TENSORBOARD_DIR unset)")
    acc = ea.EventAccumulator(str(run_dir), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    run = Run(label or run_dir.name, "tensorboard", run_dir)
    for tag in acc.Tags().get("scalars", []):
        series = run.series.setdefault(tag, {})
        for event in acc.Scalars(tag):  # in file order: a step logged again keeps its last value
            series[int(event.step)] = float(event.value)
    return run


def find_runs(paths: list[str | Path]) -> list[Run]:
    """The runs under each path (a JSONL file, an event file, a run folder or any parent), in order."""
    runs: list[Run] = []
    seen: set[Path] = set()

    def add(kind: str, p: Path) -> None:
        p = p.resolve()
        if p in seen:
            return
        seen.add(p)
        runs.append(read_jsonl(p) if kind == "jsonl" else read_tensorboard(p))

    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UserError(f"{p}: no such file or folder")
        if p.is_file():
            if p.name.startswith("events.out.tfevents."):
                add("tensorboard", p.parent)
            elif p.suffix == ".jsonl":
                add("jsonl", p)
            else:
                raise UserError(f"{p}: neither a .jsonl metrics file nor a TensorBoard event file")
            continue
        found = 0
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
            root = Path(root)
            if any(f.startswith("events.out.tfevents.") for f in files):
                add("tensorboard", root)
                found += 1
            for f in sorted(files):
                if f.endswith(".jsonl"):
                    if _is_metrics_jsonl(root / f):
                        add("jsonl", root / f)
                        found += 1
                    else:
                        note(f"{root / f}: not a metrics log (no 'step' on its first line), skipped")
        if not found:
            note(f"{p}: no verl metrics logs (*.jsonl, events.out.tfevents.*) found")
    return runs

