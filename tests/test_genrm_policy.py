"""``hydra_configs/genrm_policy.yaml``: a VL policy rewarded by the pairwise judge, composed and validated as
``verl.trainer.main_ppo`` would, and its reward path run end to end on CPU: ``preprocess.policy_qa`` rows through
verl's ``RLHFDataset`` (real images) -> agent-loop items -> verl's ``RewardLoopWorker`` with the composed config ->
the ``pairwise_group`` reward manager -> a live judge on 127.0.0.1, shown the policy prompt's image."""

import pytest
from omegaconf import open_dict

from tests.support.judges import scripted_judge
from tests.support.reward_loop import policy_items, run_worker

ENV = {"R1R_POLICY_DATA": "/nonexistent/policy_qa", "R1R_JUDGE_PATH": "/nonexistent/judge",
       "R1R_JUDGE_URL": "http://127.0.0.1:9/v1"}  # fmt: skip


@pytest.fixture
def genrm_env(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("genrm", ["group", "knockout", "reference"])
@pytest.mark.parametrize("judge", ["hosted", "endpoint", "scalar"])
def test_genrm_policy_composes_and_passes_verls_validation(genrm_env, genrm, judge):
    from r1reward_verl.config import compose_config, validate_like_main_ppo

    config = compose_config("genrm_policy", [f"genrm={genrm}", f"judge={judge}"])
    validate_like_main_ppo(config)  # verl's validate_config, with the configured 8 GPUs
    kw = config.reward.custom_reward_function.reward_kwargs
    assert kw.judge_mode == genrm and kw.judge == judge
    assert config.reward.reward_manager.name == "pairwise_group" and config.algorithm.adv_estimator == "grpo"
    assert config.actor_rollout_ref.rollout.n == 8 and config.actor_rollout_ref.rollout.val_kwargs.n == 8
    assert config.reward.reward_model.enable is (judge == "hosted")
    if genrm != "reference":
        assert config.reward.num_workers == 1
    assert config.trainer.experiment_name == f"{genrm}-{judge}"


def test_policy_qa_through_verls_dataset_and_reward_loop(genrm_env, tiny_model_dir, tmp_path):
    from r1reward_verl.config import compose_config

    answers = ["The shape in the picture is red, I am sure.", "The shape is red.", "Red.", ""]
    row, items = policy_items(tiny_model_dir, tmp_path, answers)
    assert any(p.get("type") == "image" for p in row["raw_prompt"][0]["content"])  # verl built the image part
    with scripted_judge("longer") as srv:
        config = compose_config("genrm_policy", ["judge=endpoint", f"actor_rollout_ref.model.path={tiny_model_dir}",
                                                 "actor_rollout_ref.rollout.n=4"])  # fmt: skip
        with open_dict(config):
            config.reward.custom_reward_function.reward_kwargs.judge_base_url = srv.url
        outs = run_worker(config, None, items)
        stats = dict(srv.stats)
    scores = [o["reward_score"] for o in outs]
    assert scores == pytest.approx([1.0, 0.5, 0.0, 0.0])  # the empty answer is not judged: empty_score 0
    assert stats["requests"] == 3 * 2 and stats["images"] == [1] * 6  # each call carried the prompt's image
    question = row["extra_info"]["question"]
    assert all(question in t and "[Response 1]:" in t for t in stats["texts"])


def test_policy_qa_cli_rows_and_bad_sizes(tmp_path, capsys):
    import pyarrow.parquet as pq

    from r1reward_verl.demo.policy_qa import main

    assert main(["--out", str(tmp_path / "q"), "--n-train", "6", "--n-val", "2", "--seed", "3"]) == 0
    train = pq.read_table(tmp_path / "q" / "train.parquet").to_pylist()
    assert len(train) == 6 and len(pq.read_table(tmp_path / "q" / "val.parquet")) == 2
    r = train[0]
    assert r["prompt"][0]["content"].startswith("<image>") and r["images"][0]["bytes"][:4] == b"\x89PNG"
    assert r["reward_model"]["ground_truth"] == r["extra_info"]["reference"] and r["extra_info"]["question"] in r["prompt"][0]["content"]
    again = tmp_path / "again"
    assert main(["--out", str(again), "--n-train", "6", "--n-val", "2", "--seed", "3"]) == 0
    assert (again / "train.parquet").read_bytes() == (tmp_path / "q" / "train.parquet").read_bytes()  # seeded
    assert main(["--out", str(tmp_path / "bad"), "--n-train", "0"]) == 2
    assert "--n-train and --n-val must be >= 1" in capsys.readouterr().err
