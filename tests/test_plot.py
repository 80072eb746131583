"""r1reward_verl.plot on logs written by verl's own Tracking (file + tensorboard backends)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from r1reward_verl import plot as rplot

PROJECT = "r1reward"
STEPS = range(1, 7)
PANEL_FILES = ["policy_loss", "response_length", "filtered_frac", "preclip_frac", "reward", "consistency"]


def _full_metrics(rng, step: int) -> dict:
    return {
        "actor/pg_loss": float(rng.normal(0, 0.1)),
        "actor/pg_clipfrac": float(rng.uniform(0, 0.2)),  # logged, not plotted
        "actor/preclip_frac": float(rng.uniform(0, 1e-3)),
        "response_length/mean": float(600 - 10 * step + rng.normal(0, 3)),
        "adv_filter/filtered_frac": float(rng.uniform(0, 0.05)),
        "critic/score/mean": float(rng.uniform(0.5, 1.5)),
        "reward/consistency_mean": float(rng.uniform(0.6, 1.0)),
        "reward/result_mean": float(rng.uniform(0.5, 0.9)),
        "training/global_step": step,
    }


def _runs() -> dict[str, dict[int, dict]]:
    """experiment name -> step -> metrics, as the trainer would log them."""
    rng = np.random.default_rng(0)
    runs = {
        "r1reward-paper-none-fsdp": {s: _full_metrics(rng, s) for s in STEPS},
        "r1reward-paper-no_preclip-fsdp": {s: _full_metrics(rng, s) for s in STEPS},
    }
    # the collapsing baseline: no filter metrics, no consistency reward, the loss goes inf then NaN
    collapse = {}
    for s in STEPS:
        m = _full_metrics(rng, s)
        del m["adv_filter/filtered_frac"], m["reward/consistency_mean"]
        if s == 5:
            m["actor/pg_loss"] = math.inf
        if s == 6:
            m["actor/pg_loss"] = math.nan
        collapse[s] = m
    runs["r1reward-paper-reinforce_pp-fsdp"] = collapse
    # an SFT run in the same project: none of the plotted metrics, must be skipped
    runs["r1reward-sft"] = {s: {"train/loss": 1.0 / s, "train/lr": 1e-5} for s in STEPS}
    return runs


PLOTTED_RUNS = ["r1reward-paper-none-fsdp", "r1reward-paper-no_preclip-fsdp", "r1reward-paper-reinforce_pp-fsdp"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Every run logged through verl's Tracking(default_backend=["file", "tensorboard"])."""
    from verl.utils.tracking import Tracking

    root = tmp_path_factory.mktemp("verl_logs")
    runs = _runs()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VERL_FILE_LOGGER_ROOT", str(root / "file_logs"))
        mp.delenv("VERL_FILE_LOGGER_PATH", raising=False)
        for exp, steps in runs.items():
            # verl's default layout, tensorboard_log/<project>/<experiment>
            mp.setenv("TENSORBOARD_DIR", str(root / "tensorboard_log" / PROJECT / exp))
            tracker = Tracking(project_name=PROJECT, experiment_name=exp, default_backend=["file", "tensorboard"])
            for step, metrics in steps.items():
                tracker.log(data=metrics, step=step)
            tracker.finish()
    return {"root": root, "jsonl": root / "file_logs" / PROJECT, "tb": root / "tensorboard_log", "runs": runs}


def _expected(runs, float32: bool, nan_for_inf: bool) -> dict[tuple[str, str, int], float]:
    out = {}
    for exp in PLOTTED_RUNS:
        for step, metrics in runs[exp].items():
            for metric, value in metrics.items():
                if metric not in rplot.PANEL_METRICS:
                    continue
                v = float(np.float32(value)) if float32 else float(value)
                if nan_for_inf and not math.isfinite(v):
                    v = math.nan  # orjson writes NaN and inf as null
                out[(exp, metric, step)] = v
    return out


def _read_csv(path: Path) -> dict[tuple[str, str, int], float]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["step", "run", "metric", "value"]
    out = {(r["run"], r["metric"], int(r["step"])): float(r["value"]) for r in rows}
    assert len(out) == len(rows), "a (run, metric, step) appears twice"
    return out


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k], (k, a[k], b[k])


def _check_pngs(out: Path) -> None:
    from PIL import Image

    for name, min_size in [("figure", (1200, 800))] + [(p, (500, 350)) for p in PANEL_FILES]:
        path = out / f"{name}.png"
        assert path.is_file(), path
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1], (name, im.size)
            colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
            assert colors is not None and len(colors) > 50, f"{name}.png looks blank"


def test_jsonl_logs(logs, tmp_path, capsys):
    out = tmp_path / "plots"
    assert rplot.main([str(logs["jsonl"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out

    _check_pngs(out)
    _same(_read_csv(out / "metrics.csv"), _expected(logs["runs"], float32=False, nan_for_inf=True))
    # the runs are labelled by experiment name; the SFT run is skipped, missing metrics reported
    assert "3 run(s):" in printed
    assert "r1reward-sft.jsonl: none of the plotted metrics" in printed
    assert "run 'r1reward-paper-reinforce_pp-fsdp' has no adv_filter/filtered_frac" in printed
    assert "run 'r1reward-paper-reinforce_pp-fsdp' has no reward/consistency_mean" in printed
    assert "actor/pg_loss is NaN/inf at 2 step(s), first at step 5" in printed
    assert f"figure: {(out / 'figure.png').resolve()}" in printed
    assert f"metrics.csv: {(out / 'metrics.csv').resolve()}" in printed


def test_tensorboard_logs_cli(logs, tmp_path):
    out = tmp_path / "tb_plots"
    proc = subprocess.run(
        [sys.executable, "-m", "r1reward_verl.plot", str(logs["tb"]), "--out", str(out), "--smooth", "3"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_pngs(out)
    # TensorBoard stores float32 and keeps inf apart from NaN
    _same(_read_csv(out / "metrics.csv"), _expected(logs["runs"], float32=True, nan_for_inf=False))
    assert f"figure: {(out / 'figure.png').resolve()}" in proc.stdout
    assert "has no adv_filter/filtered_frac" in proc.stdout


def test_single_run_labels_and_no_data(logs, tmp_path, capsys):
    exp = "r1reward-paper-reinforce_pp-fsdp"
    out = tmp_path / "one"
    # a JSONL file and a TensorBoard run folder of the same run, labelled by hand
    args = [str(logs["jsonl"] / f"{exp}.jsonl"), str(logs["tb"] / PROJECT / exp), "--out", str(out)]
    assert rplot.main([*args, "--labels", "file", "tb"]) == 0
    printed = capsys.readouterr().out
    _check_pngs(out)
    assert "panel 'Consistency reward': no data in any run" in printed
    assert "panel 'Advantage filter: filtered fraction': no data in any run" in printed
    got = _read_csv(out / "metrics.csv")
    assert {run for run, _, _ in got} == {"file", "tb"}
    assert got[("file", "actor/pg_loss", 5)] != got[("file", "actor/pg_loss", 5)]  # NaN from null
    assert got[("tb", "actor/pg_loss", 5)] == math.inf
    assert got[("tb", "response_length/mean", 3)] == float(np.float32(logs["runs"][exp][3]["response_length/mean"]))

    # the whole log root: both sources of each experiment, told apart in the labels
    assert rplot.main([str(logs["root"]), "--out", str(tmp_path / "all")]) == 0
    runs = {run for run, _, _ in _read_csv(tmp_path / "all" / "metrics.csv")}
    assert runs == {f"{e} [{src}]" for e in PLOTTED_RUNS for src in ("jsonl", "tensorboard")}

    # wrong number of labels: an error naming the runs found, no crash
    assert rplot.main([*args, "--labels", "only-one", "--out", str(tmp_path / "bad")]) == 2
    assert "1 --labels for 2 runs" in capsys.readouterr().err


def test_flat_jsonl(tmp_path, capsys):
    """Flat JSONL lines (a hand-rolled loop's log), per-epoch loss keys (the last epoch is plotted)."""
    p = tmp_path / "demo" / "metrics.jsonl"
    p.parent.mkdir()
    p.write_text(
        '{"step": 1, "reward/mean": 0.5, "actor/pg_loss@epoch0": 0.3, "actor/pg_loss@epoch1": 0.2}\n'
        '{"step": 2, "reward/mean": 0.75, "actor/pg_loss@epoch0": 0.1, "actor/pg_loss@epoch1": 0.05}\n'
    )
    (tmp_path / "demo" / "items.jsonl").write_text('{"id": 1, "pred": 2}\n')  # not a metrics log
    out = tmp_path / "plots"
    assert rplot.main([str(tmp_path / "demo"), "--out", str(out)]) == 0
    assert "items.jsonl: not a metrics log" in capsys.readouterr().out
    got = _read_csv(out / "metrics.csv")
    assert got == {("metrics", "actor/pg_loss", 1): 0.2, ("metrics", "actor/pg_loss", 2): 0.05,
                   ("metrics", "reward/mean", 1): 0.5, ("metrics", "reward/mean", 2): 0.75}


def test_no_runs(tmp_path, capsys):
    assert rplot.main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no run with any of the plotted metrics" in capsys.readouterr().err


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(tmp_path, capsys):
    """A file as ``--out``, a missing run, a file that is no log: one line on stderr naming it, exit 2, no output."""
    log = tmp_path / "run.jsonl"
    log.write_text(json.dumps({"step": 1, "actor/pg_loss": 0.1}) + "\n")
    as_file = tmp_path / "plots.png"
    as_file.write_bytes(b"not a folder")
    not_a_log = tmp_path / "notes.txt"
    not_a_log.write_text("hello")
    for argv, names in [([str(log), "--out", str(as_file)], f"--out {as_file}: exists and is not a directory"),
                        ([str(tmp_path / "missing"), "--out", str(tmp_path / "o1")], f"{tmp_path / 'missing'}: no such file"),
                        ([str(not_a_log), "--out", str(tmp_path / "o2")], f"{not_a_log}: neither a .jsonl")]:  # fmt: skip
        assert rplot.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and names in err[0], err
    assert as_file.read_bytes() == b"not a folder"
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
