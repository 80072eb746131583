"""Our Hydra config through verl's own entry point and verl's own validation."""

import subprocess
import sys

import yaml
from verl.utils.config import omega_conf_to_dataclass

from r1reward_verl.algos import StableReinforceAlgoConfig, StableReinforcePolicyLossConfig
from r1reward_verl.config import CONFIG_DIR, validate_like_main_ppo
from tests.conftest import compose


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
