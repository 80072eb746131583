import os

import pytest

# Keep CPU tests quiet and single-threaded enough for 2 cores.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

# The settings a real 1-GPU run would need that the default trees leave unset.
BASE_OVERRIDES = (
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1",
    "trainer.n_gpus_per_node=1",
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny random Qwen2.5-VL, built once per test session."""
    from r1reward_verl.tiny import build_tiny_qwen25vl

    return str(build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "tiny-qwen25vl"))


def compose(name="r1reward", *overrides):
    from r1reward_verl.config import compose_config

    return compose_config(name, [*BASE_OVERRIDES, *overrides])


def actor_config(*overrides):
    """A real ActorConfig, built from our Hydra config exactly as verl's workers build it."""
    from verl.utils.config import omega_conf_to_dataclass

    return omega_conf_to_dataclass(compose("r1reward", *overrides).actor_rollout_ref.actor)
