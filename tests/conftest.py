import os
import re

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


@pytest.fixture(scope="session")
def cpu_dir(tmp_path_factory):
    """What ``hydra_configs/r1reward_cpu.yaml`` reads (R1R_CPU_DIR), made once per test session by
    ``r1reward_verl.cpu.prepare``: the tiny Qwen2.5-VL, the sample data and the cold start by verl's SFT trainer
    (2-3 min). tests/test_cpu_trainer.py runs in it; tests/test_two_nodes.py reads it from a directory of its own."""
    from r1reward_verl.cpu.prepare import prepare
    from r1reward_verl.cpu.sft import sft_procs

    out = tmp_path_factory.mktemp("cpu")
    info = prepare(out, epochs=15)
    losses = info["sft_losses"]
    assert len(losses) >= 50 and losses[-1] < losses[0] / 4, losses  # the cold start learned something
    ranks = set(re.findall(r"^\[rank(\d+)\]", (out / "sft.log").read_text(errors="replace"), re.M))
    assert ("1" in ranks) == (sft_procs(4) == 2), ranks  # data parallel over gloo: 2 ranks on 2 cores
    return out


def compose(name="r1reward", *overrides):
    from r1reward_verl.config import compose_config

    return compose_config(name, [*BASE_OVERRIDES, *overrides])


def actor_config(*overrides):
    """A real ActorConfig, built from our Hydra config exactly as verl's workers build it."""
    from verl.utils.config import omega_conf_to_dataclass

    return omega_conf_to_dataclass(compose("r1reward", *overrides).actor_rollout_ref.actor)
