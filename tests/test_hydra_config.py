"""Our Hydra config through verl's own entry point and verl's own validation."""

import re
import subprocess
import sys

import pytest
import yaml
from verl.utils.config import omega_conf_to_dataclass

from r1reward_verl.algos import StableReinforceAlgoConfig, StableReinforcePolicyLossConfig
from r1reward_verl.config import CONFIG_DIR, validate_like_main_ppo
from tests.conftest import compose
from tests.support.main_ppo import main_ppo_guarded


def test_main_ppo_cfg_job_resolves_with_our_plugins():
    cmd = [
        sys.executable, "-m", "verl.trainer.main_ppo",
        "--config-path", str(CONFIG_DIR), "--config-name", "r1reward", "--cfg", "job",
        "actor_rollout_ref.actor.policy_loss.preclip_max=100",
        "algorithm.adv_filter_sigma=2.5",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    cfg = yaml.safe_load(out.stdout)
    pl = cfg["actor_rollout_ref"]["actor"]["policy_loss"]
    assert pl["loss_mode"] == "stable_reinforce"
    assert pl["_target_"] == "r1reward_verl.algos.StableReinforcePolicyLossConfig"
    assert pl["preclip_max"] == 100 and pl["preclip_min"] == 0.001 and pl["preclip"] is True
    assert pl["dual_clip"] is False
    assert cfg["algorithm"]["adv_estimator"] == "stable_reinforce"
    assert cfg["algorithm"]["adv_filter_sigma"] == 2.5
    assert cfg["algorithm"]["use_kl_in_reward"] is False
    assert cfg["actor_rollout_ref"]["actor"]["use_kl_loss"] is False
    assert cfg["trainer"]["v1"]["trainer_mode"] == "r1reward_sync"
    crf = cfg["reward"]["custom_reward_function"]
    assert (crf["path"], crf["name"]) == ("pkg://reward_fns.r1_reward", "compute_score")
    assert crf["reward_kwargs"]["w_consistency"] == 0.5 and crf["reward_kwargs"]["w_format"] == 0.5
    assert crf["reward_kwargs"]["mismatch_value"] == 0.0 and crf["reward_kwargs"]["referee"] == "hosted"


def test_reward_function_loads_through_verls_loader():
    import inspect

    from verl.trainer.ppo.reward import get_custom_reward_fn

    from reward_fns.r1_reward import compute_score

    fn = get_custom_reward_fn(compose("r1reward", "reward.custom_reward_function.reward_kwargs.mismatch_value=-1"))
    assert fn.func.__name__ == "_call_with_kwargs_async" and fn.args[0] is compute_score
    assert fn.args[1]["mismatch_value"] == -1
    # every configured kwarg is a real parameter of compute_score (a typo would fail at the first call)
    assert set(fn.args[1]) <= set(inspect.signature(compute_score).parameters)


def test_config_passes_verls_validation_and_builds_our_dataclasses(tiny_model_dir):
    cfg = compose("r1reward", f"actor_rollout_ref.model.path={tiny_model_dir}")
    validate_like_main_ppo(cfg)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert isinstance(actor.policy_loss, StableReinforcePolicyLossConfig)
    assert (actor.policy_loss.preclip_min, actor.policy_loss.preclip_max) == (1e-3, 1e3)
    assert isinstance(omega_conf_to_dataclass(cfg.algorithm), StableReinforceAlgoConfig)


PL = "actor_rollout_ref.actor.policy_loss"
BAD_VALUES = [
    # (overrides, the key the message must name, the value it must show)
    (["algorithm.adv_filter_sigma=0"], "algorithm.adv_filter_sigma", "0"),
    (["algorithm.adv_filter_sigma=-1.5"], "algorithm.adv_filter_sigma", "-1.5"),
    (["algorithm.adv_filter_base=gae"], "algorithm.adv_filter_base", "'gae'"),
    ([f"{PL}.preclip_min=1"], f"{PL}.preclip_min", "1"),
    ([f"{PL}.preclip_min=0"], f"{PL}.preclip_min", "0"),
    ([f"{PL}.preclip_min=-0.001"], f"{PL}.preclip_min", "-0.001"),
    ([f"{PL}.preclip_max=1"], f"{PL}.preclip_max", "1"),
    ([f"{PL}.preclip_max=0.5"], f"{PL}.preclip_max", "0.5"),
    ([f"{PL}.preclip_min=5", f"{PL}.preclip_max=2"], f"{PL}.preclip_min", "5"),
    # verl's dataclasses take any type: these would fail only inside a worker (check_scalar_types)
    (["actor_rollout_ref.actor.optim.lr=abc"], "actor_rollout_ref.actor.optim.lr", "'abc'"),
    (["actor_rollout_ref.actor.ppo_mini_batch_size=1.5"], "actor_rollout_ref.actor.ppo_mini_batch_size", "1.5"),
    (["actor_rollout_ref.rollout.enforce_eager=3"], "actor_rollout_ref.rollout.enforce_eager", "3"),
]


def names_key_and_value(text: str, key: str, value: str) -> bool:
    """One line of ``text`` names ``key`` and then ``got VALUE`` (not Hydra's echo of the override ``key=value``)."""
    return re.search(rf"{re.escape(key)}\b[^\n=]*\bgot {re.escape(value)}(?![\w.])", text) is not None


@pytest.mark.parametrize("overrides, key, value", BAD_VALUES, ids=[" ".join(ovs) for ovs, _, _ in BAD_VALUES])
def test_bad_values_fail_the_checks_main_ppo_runs_before_ray(overrides, key, value):
    cfg = compose("r1reward", *overrides)
    with pytest.raises(Exception) as err:
        validate_like_main_ppo(cfg)
    assert names_key_and_value(str(err.value), key, value), str(err.value)




@pytest.mark.parametrize(
    "override, key, value",
    [
        ("algorithm.adv_filter_sigma=0", "algorithm.adv_filter_sigma", "0"),  # the Hydra callback
        (f"{PL}.preclip_min=1", f"{PL}.preclip_min", "1"),  # verl's validate_config (builds the actor)
        ("actor_rollout_ref.actor.optim.lr=abc", "actor_rollout_ref.actor.optim.lr", "'abc'"),  # check_scalar_types
    ],
)
def test_main_ppo_exits_before_ray_on_a_bad_value(tmp_path, override, key, value):
    """`python -m verl.trainer.main_ppo ... BAD` fails naming the key and value and never reaches ray.init
    (a sitecustomize on PYTHONPATH turns ray.init into exit 97, so the test can never start Ray)."""
    for name in ("train.parquet", "val.parquet"):  # the start-up check wants the data files to exist
        (tmp_path / name).touch()
    out = main_ppo_guarded(tmp_path, "r1reward", override, R1R_POLICY_PATH=str(tmp_path), R1R_DATA_DIR=str(tmp_path))
    text = out.stdout + out.stderr
    assert "R1R-TEST: ray.init reached" not in text, text[-3000:]
    assert out.returncode == 2 and names_key_and_value(text, key, value), text[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]


def test_dry_run_rejects_a_value_of_the_wrong_type():
    """``dryrun actor_rollout_ref.actor.optim.lr=abc`` printed "ppo OK" (verl's dataclasses accept any type)."""
    from r1reward_verl.dryrun import check

    bad = check("r1reward", ["actor_rollout_ref.actor.optim.lr=abc"])
    assert not bad.ok and any(names_key_and_value(n, "actor_rollout_ref.actor.optim.lr", "'abc'") for n in bad.notes)
    assert check("r1reward_cpu", ["actor_rollout_ref.actor.optim.lr=2e-6"]).ok  # no R1R_ variable needed
    sft = check("r1reward_sft", ["optim.lr=abc"])
    assert not sft.ok and any(names_key_and_value(n, "optim.lr", "'abc'") for n in sft.notes), sft.notes


@pytest.mark.parametrize(
    "config, env_vars, expected",
    [
        # the README's second CPU line before its first: nothing prepared yet
        ("r1reward_cpu", {"R1R_CPU_DIR": "{tmp}/cpu"},
         "data.train_files: no such file or directory: {tmp}/cpu/rl/train.parquet (make it with: python -m r1reward_verl.cpu.prepare)"),
        # the GPU config with its data prepared but no policy
        ("r1reward", {"R1R_DATA_DIR": "{tmp}", "R1R_POLICY_PATH": "{tmp}/sft_hf"},
         "actor_rollout_ref.model.path: no such file or directory: {tmp}/sft_hf (set R1R_POLICY_PATH)"),
        ("r1reward", {"R1R_POLICY_PATH": "{tmp}"},
         "data.train_files: cannot resolve '${{oc.env:R1R_DATA_DIR}}/train.parquet': environment variable R1R_DATA_DIR is not set"),
    ],
    ids=["cpu-unprepared", "gpu-no-policy", "gpu-no-data-variable"],
)
def test_main_ppo_names_a_missing_local_input_in_one_line_before_ray(tmp_path, config, env_vars, expected):
    for name in ("train.parquet", "val.parquet"):
        (tmp_path / name).touch()
    env_vars = {k: v.format(tmp=tmp_path) for k, v in env_vars.items()}
    out = main_ppo_guarded(tmp_path, config, **env_vars)
    assert "R1R-TEST: ray.init reached" not in out.stdout + out.stderr
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("r1reward:")]
    assert lines == [f"r1reward: not starting: {expected.format(tmp=tmp_path)}"], out.stderr[-3000:]
