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


def test_config_passes_verls_validation_and_builds_our_dataclasses(tiny_model_dir):
    cfg = compose("r1reward", f"actor_rollout_ref.model.path={tiny_model_dir}")
    validate_like_main_ppo(cfg)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert isinstance(actor.policy_loss, StableReinforcePolicyLossConfig)
    assert (actor.policy_loss.preclip_min, actor.policy_loss.preclip_max) == (1e-3, 1e3)
    assert isinstance(omega_conf_to_dataclass(cfg.algorithm), StableReinforceAlgoConfig)
