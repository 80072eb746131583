"""The README's main job runs the plug-ins through verl on the tiny model and actually trains it."""

import subprocess
import sys

from r1reward_verl.demo import run_demo


def test_demo_steps_train_the_tiny_model(tmp_path, tiny_model_dir):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "tiny-qwen25vl")
    history = run_demo(tmp_path, steps=2, samples=2)
    assert len(history) == 2
    for m in history:
        assert 0 < m["reward/mean"] < 1  # the reference answers give a mixed batch
        assert m["actor/grad_norm@epoch0"] > 0  # non-zero advantages reach the loss
        for key in ("adv_filter/filtered_frac", "actor/preclip_frac@epoch1", "actor/pg_clipfrac@epoch1"):
            assert key in m
    # the second PPO epoch sees a moved policy: verl's ppo_kl is no longer zero
    assert any(abs(m["actor/ppo_kl@epoch1"]) > 0 for m in history)


def test_demo_cli_with_override(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "r1reward_verl.demo", "--workdir", str(tmp_path), "--steps", "1", "--samples", "2",
         "actor_rollout_ref.actor.policy_loss.preclip_max=10"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "done: 1 steps" in out.stdout
    assert "data: read 36 pairs" in out.stdout  # the bundled sample, through preprocess.pairs
    assert (tmp_path / "data" / "train.parquet").exists() and (tmp_path / "data" / "summary.json").exists()
    assert (tmp_path / "tiny-qwen25vl" / "model.safetensors").exists()
    # then the trained policy is evaluated on stand-ins of the three benchmarks
    assert (tmp_path / "trained" / "model.safetensors").exists()
    import json

    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics) == {"vl_rewardbench", "multimodal_rewardbench", "mm_rlhf_rewardbench", "_run"}
    assert set(metrics["vl_rewardbench"]["voting"]) == {"1", "2", "3"} and (tmp_path / "eval" / "accuracy_vs_k.png").exists()
    assert "### MM-RLHF-RewardBench" in out.stdout


def test_demo_with_a_live_referee(tmp_path, tiny_model_dir):
    import shutil

    from tests.servers import running_server

    shutil.copytree(tiny_model_dir, tmp_path / "tiny-qwen25vl")
    with running_server("scripted", "--behaviour", "rule") as addr:
        history = run_demo(tmp_path, steps=1, samples=2,
                           overrides=("referee=endpoint", f"reward.custom_reward_function.reward_kwargs.referee_base_url=http://{addr}/v1"))
    m = history[0]
    # each prompt's correct reference answer is asked about and judged consistent by the rule referee
    assert m["referee/asked"] >= 4 and m["referee/failed"] == 0
    assert m["reward/consistency_mean"] > 0
