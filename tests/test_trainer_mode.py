"""Our trainers take every branch verl's own trainers take for their mode (verl compares the mode string).

verl 0.9.1's PPOTrainer (verl/trainer/ppo/v1/trainer_base.py) reads ``self.trainer_mode`` to choose the
replay-buffer class, ``gen_batch_size`` (exact refill), TransferQueue state in checkpoints, prompt
re-issue and the ``trainer.v1.<mode>`` config. Both trainers are built by verl's real ``__init__`` from
the same composed config; the CPU trainer run (tests/test_cpu_trainer.py) checks the checkpoint folder.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls

from tests.conftest import compose


def _build(mode: str, cls=None):
    # separate_async asserts train_batch_size == parameter_sync_step * ppo_mini_batch_size (256 = 2 x 128)
    cfg = compose("r1reward", "actor_rollout_ref.rollout.n=1", "data.gen_batch_size=null",
                  "trainer.v1.separate_async.parameter_sync_step=2")
    OmegaConf.update(cfg, "trainer.v1.trainer_mode", mode)
    return (cls or get_trainer_cls(mode))(config=cfg)


def _branches(trainer) -> dict:
    rb = trainer.replay_buffer
    return {
        "replay_buffer": type(rb).__name__,
        "gen_batch_size": rb.gen_batch_size,
        "train_batch_size": rb.train_batch_size,
        "replay_mode": rb.trainer_mode,
        "mode_config": OmegaConf.to_container(rb.trainer_config) if OmegaConf.is_config(rb.trainer_config) else rb.trainer_config,
        "parameter_sync_step": trainer.parameter_sync_step,
        # verl's checkpoint save / load and prompt re-issue branch on `self.trainer_mode != "sync"`
        "saves_tq_state": trainer.trainer_mode != "sync",
        "reissue_noop": trainer._reissue_inflight_prompts() == 0 if trainer.trainer_mode == "sync" else None,
    }


@pytest.mark.parametrize(("ours", "verls"), [("r1reward_sync", "sync")])
def test_our_sync_trainer_takes_verls_sync_branches(ours, verls):
    mine, theirs = _build(ours), _build(verls)
    assert type(mine).__name__ == "R1RewardTrainerSync" and isinstance(mine, PPOTrainerSync)
    assert _branches(mine) == _branches(theirs)
    assert _branches(mine)["replay_buffer"] == "ReplayBuffer" and _branches(mine)["gen_batch_size"] == 256
    assert mine.configured_trainer_mode == "r1reward_sync"


# (separate_async also needs a separate rollout pool to build; its mode mapping is the same class attribute)
@pytest.mark.parametrize(("ours", "verls"), [("r1reward_colocate_async", "colocate_async")])
def test_our_async_trainers_read_verls_mode_config(ours, verls):
    mine, theirs = _build(ours), _build(verls)
    assert mine.trainer_mode == verls
    b_mine, b_theirs = _branches(mine), _branches(theirs)
    assert b_mine == b_theirs
    # trainer.v1.<verl mode>, not the (absent) trainer.v1.r1reward_*
    assert b_mine["mode_config"]["num_warmup_batches"] == 1


def test_without_the_mode_mapping_verl_would_take_async_paths():
    """The defect itself: a plain subclass of verl's sync trainer under our mode name gets the async buffer."""

    class PlainSubclass(PPOTrainerSync):
        pass

    plain = _build("r1reward_sync", cls=PlainSubclass)
    b = _branches(plain)
    assert b["replay_buffer"] == "ReplayBufferAsync" and b["saves_tq_state"] is True
