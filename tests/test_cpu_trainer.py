"""verl's own trainer (``python -m verl.trainer.main_ppo``) runs the paper configuration on CPU.

``hydra_configs/r1reward_cpu.yaml``: StableReinforce estimator and loss, the R1-Reward reward with the
consistency referee hosted by verl's RewardModelManager on its own pool, the r1reward_sync trainer; the
tiny Qwen2.5-VL after a cold start made here by verl's SFT trainer (``r1reward_verl.cpu.prepare``), the
bundled sample pairs with images, vLLM-CPU rollouts with the actor's weights synced in every step.

Each run is a subprocess in its own session; whatever it started (Ray, vLLM, workers) is killed by that
session id when it ends, also on failure or time-out.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from r1reward_verl.config import CONFIG_DIR, REPO_ROOT
from r1reward_verl.procs import run_in_session

pytestmark = pytest.mark.timeout(1800)

RUN_TIMEOUT = 900


def main_ppo(cpu_dir: Path, log_root: Path, *overrides: str, multirun: bool = False,
             config: str = "r1reward_cpu") -> tuple[int, str]:  # fmt: skip
    """The README's command (from the repo root), with R1R_CPU_DIR pointing at this test's prepared dir.
    verl's file logger writes R1R_CPU_DIR/logs/r1reward_cpu/<experiment>.jsonl (the config says so)."""
    log_root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(CONFIG_DIR),
           "--config-name", config, *(["-m"] if multirun else []), *overrides,
           f"hydra.run.dir={log_root}/hydra", f"hydra.sweep.dir={log_root}/hydra_multirun"]  # fmt: skip
    env = dict(os.environ, R1R_CPU_DIR=str(cpu_dir), RAY_DEDUP_LOGS="0")
    log = log_root / "main_ppo.log"
    rc = run_in_session(cmd, log, env=env, cwd=REPO_ROOT, timeout=RUN_TIMEOUT)  # also kills what survives it
    return rc, log.read_text(errors="replace")


def read_metrics(path: Path) -> dict[int, dict]:
    """verl's file logger (one JSON line per step), read by r1reward_verl.plot: ``{step: {metric: value}}``."""
    from r1reward_verl.plot import read_jsonl

    return read_jsonl(path).by_step()


@pytest.fixture(scope="module")
def cpu_dir(tmp_path_factory):
    from r1reward_verl.cpu.prepare import prepare, sft_procs

    out = tmp_path_factory.mktemp("cpu")
    info = prepare(out, epochs=15)
    losses = info["sft_losses"]
    assert len(losses) >= 50 and losses[-1] < losses[0] / 4, losses  # the cold start learned something
    ranks = set(re.findall(r"^\[rank(\d+)\]", (out / "sft.log").read_text(errors="replace"), re.M))
    assert ("1" in ranks) == (sft_procs(4) == 2), ranks  # data parallel over gloo: 2 ranks on 2 cores
    return out


def test_paper_config_trains_validates_checkpoints_and_resumes(cpu_dir, tmp_path):
    rc, log = main_ppo(cpu_dir, tmp_path / "run1")
    assert rc == 0, log[-6000:]
    logs = cpu_dir / "logs" / "r1reward_cpu"
    assert [p.name for p in logs.glob("*.jsonl")] == ["r1reward-paper-none-fsdp.jsonl"]
    steps = read_metrics(logs / "r1reward-paper-none-fsdp.jsonl")
    assert list((cpu_dir / "tensorboard" / "r1reward-paper-none-fsdp").glob("events.out.tfevents.*"))
    assert sorted(steps) == [1, 2, 3], sorted(steps)
    for n, m in steps.items():
        for key in ("adv_filter/filtered_frac", "adv_filter/z_max", "actor/preclip_frac", "actor/pg_loss",
                    "reward/format_mean", "reward/result_mean", "reward/consistency_mean", "referee/asked",
                    "reward/tail_wait_s", "reward/overlap_frac", "timing_s/step"):  # fmt: skip
            assert key in m, (n, key, sorted(m))
    asked = sum(m["referee/asked"] for m in steps.values())
    assert asked > 0, "the cold-started policy writes answers, so the referee must be asked"
    for m in steps.values():
        if m["referee/asked"]:
            assert m["referee/failed_frac"] == 0, m  # the hosted referee answers (it is awake)
    assert any(m["reward/format_mean"] > 0 for m in steps.values())
    # the actor's weights reached vLLM: its log-probs match the actor's
    assert all(m["training/rollout_probs_diff_mean"] < 0.05 for m in steps.values())
    # validation at step 3 (test_freq)
    assert any(k.startswith("val-core/") or k.startswith("val-aux/") for k in steps[3]), sorted(steps[3])
    # checkpoint at step 3, saved like verl's sync trainer saves: no TransferQueue state
    ckpt = cpu_dir / "checkpoints" / "r1reward-paper-none-fsdp"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "3"
    step3 = ckpt / "global_step_3"
    assert (step3 / "actor").is_dir() and (step3 / "data.pt").is_file()
    assert not (step3 / "transfer_queue").exists()

    # resume: one more step continues at step 4 from the checkpoint
    rc, log = main_ppo(cpu_dir, tmp_path / "run2", "trainer.total_training_steps=4", "trainer.test_freq=-1",
                       "trainer.save_freq=-1")  # fmt: skip
    assert rc == 0, log[-6000:]
    assert "global_step_3" in log  # verl reports what it loaded
    resumed = read_metrics(logs / "r1reward-paper-none-fsdp.jsonl")  # verl's file logger starts the file anew
    assert sorted(resumed) == [4], sorted(resumed)


def test_ablation_sweep_runs_every_member_in_turn(cpu_dir, tmp_path):
    members = ["no_adv_filter", "no_preclip", "reinforce_pp", "no_consistency"]
    rc, log = main_ppo(cpu_dir, tmp_path, f"ablation={','.join(members)}", "trainer.total_training_steps=1",
                       "trainer.test_freq=-1", "trainer.save_freq=-1", "trainer.resume_mode=disable",
                       multirun=True)  # fmt: skip
    assert rc == 0, log[-6000:]
    for member in members:
        path = cpu_dir / "logs" / "r1reward_cpu" / f"r1reward-paper-{member}-fsdp.jsonl"
        steps = read_metrics(path)
        assert sorted(steps) == [1], (member, sorted(steps))
        m = steps[1]
        assert "actor/pg_loss" in m and m["actor/pg_loss"] == m["actor/pg_loss"], (member, m)  # ran, not NaN
        if member == "no_consistency":
            assert m.get("referee/asked", 0) == 0


def test_policy_rewarded_by_the_pairwise_judge_hosted_by_verl(cpu_dir, tmp_path):
    """``genrm_policy_cpu.yaml``: the tiny policy on ``preprocess.policy_qa`` (with images), GRPO n = 4, rewarded by
    the cold-started tiny R1-Reward model as the pairwise judge hosted by verl's reward loop (vLLM-CPU on its own
    pool), through the ``pairwise_group`` reward manager: each step's 2 prompts x 4 rollouts are judged as 2 groups
    of n(n-1) = 12 calls."""
    from preprocess.policy_qa import write

    write(cpu_dir / "policy_qa", n_train=16, n_val=2, seed=0)
    rc, log = main_ppo(cpu_dir, tmp_path / "genrm", config="genrm_policy_cpu")
    assert rc == 0, log[-6000:]
    steps = read_metrics(cpu_dir / "logs" / "genrm_policy_cpu" / "group-hosted.jsonl")
    assert sorted(steps) == [1, 2], sorted(steps)
    for m in steps.values():
        assert m["genrm/calls"] == 2 * 4 * 3, m  # 2 groups x n(n-1), both orders
        assert m["genrm/failed_calls"] == 0 and m["genrm/partial_rollouts"] == 0, m  # the hosted judge answers, groups fill
        # counted, whatever this judge writes (15 epochs on 28 pairs: rarely the strict format; each such verdict is 1/2)
        assert "genrm/unparsable_frac" in m and "genrm/position_agreement" in m, m
        assert m["genrm/score_mean"] == pytest.approx(0.5), m  # win rates of a group sum to n/2
