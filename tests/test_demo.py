"""The README's main job (``python -m r1reward_verl.demo``), shortened: every stage runs through verl on CPU, the cold start learns the format and the task, RL keeps it.

One run of ``--quick`` for a fixed seed, through verl's own SFT trainer and ``main_ppo`` on CPU, then the
real evaluator. The thresholds are far from what the run reaches (see benchmarks/RESULTS.md), so the test
is deterministic in outcome on CPU; nothing here is timed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "r1reward_verl.demo", "--quick", "--seed", "0", "--workdir", str(wd)],
                          capture_output=True, text=True, timeout=2200)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    return wd, proc.stdout, json.loads((wd / "summary.json").read_text())


def test_every_stage_reports_a_line(quick_run):
    _, out, _ = quick_run
    for stage in ("1. synthetic pairs", "2. tiny Qwen2.5-VL", "3. cold start", "4. RL: verl's main_ppo", "5. control",
                  "6. table.md", "done in"):  # fmt: skip
        assert stage in out, (stage, out[-3000:])


def test_sft_learns_format_and_task(quick_run):
    _, _, s = quick_run
    loss = [v for _, v in s["sft_loss"]]
    assert len(loss) == s["plan"]["sft_steps"]
    first, last = sum(loss[:10]) / 10, sum(loss[-10:]) / 10
    assert last < first / 3, (first, last)
    assert s["format_rate"]["base"] < 5  # a random model does not write the format
    assert s["format_rate"]["sft"] >= 90
    assert s["accuracy"]["base"] < 20  # unparsable counts wrong
    # the cold start learns the task (seed 0: 80.0 % held-out, 85 % on easy pairs, 68 % right in both orders,
    # RESULTS.md; chance is 50 %, a position bias 50 % and 0 % in both orders)
    assert s["accuracy"]["sft"] >= 70, s["eval"]["sft"]
    assert s["eval"]["sft"]["accuracy_easy"] >= 75, s["eval"]["sft"]
    assert s["eval"]["sft"]["accuracy_both_orders"] >= 55, s["eval"]["sft"]
    # ... by the steps of its reasoning: on the easy pairs it trains on it sees the image's colour, reads both
    # responses and mostly copies the right number (88 %); on the hard (confusable) pairs it reads both responses
    easy, hard = s["eval"]["sft"]["reasoning"]["easy"], s["eval"]["sft"]["reasoning"]["hard"]
    assert min(easy["parsed"], easy["see"], easy["read"]) >= 95 and easy["copy"] >= 75, easy
    assert hard["parsed"] >= 75 and hard["read"] >= 95, hard
    assert s["eval"]["base"]["reasoning"]["easy"]["parsed"] < 5


def test_rl_runs_through_verl_and_keeps_the_format(quick_run):
    wd, _, s = quick_run
    curves = s["rl_curves"]
    assert [st for st, _ in curves["reward"]] == list(range(1, s["plan"]["rl_steps"] + 1))
    assert all(v > 0 for _, v in curves["format"])
    assert s["format_rate"]["rl"] >= 90
    assert s["accuracy"]["rl"] >= 65, s["eval"]["rl"]  # RL through verl keeps what the cold start learned
    # main_ppo's HF export holds weights the RL updates moved away from the SFT checkpoint
    from safetensors.torch import load_file

    before, after = load_file(wd / "policy" / "model.safetensors"), load_file(wd / "rl_model" / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not (before[k] == after[k]).all() for k in before)
    assert set(s["accuracy"]) == {"base", "sft", "rl", "control"}
    assert set(s["accuracy_hard"]) == {"sft", "rl", "control"}
    assert (wd / "rl_model" / "config.json").exists() and (wd / "control" / "config.json").exists()


def test_report_files(quick_run):
    wd, _, s = quick_run
    table = (wd / "table.md").read_text()
    for stage in ("| base |", "| sft |", "| rl |", "| control |"):
        assert stage in table
    assert (wd / "accuracy.png").stat().st_size > 10_000
    for panel in ("figure.png", "policy_loss.png", "response_length.png", "filtered_frac.png", "preclip_frac.png"):
        assert (wd / "plots" / panel).exists(), panel
    assert s["seconds"] > 0 and set(s["stage_seconds"]) >= {"data", "base", "sft", "rl", "control", "report"}
