"""The filter's statistics reach the step metrics through verl's own trainer ``_compute_advantage``.

Runs verl's real ``PPOTrainer._compute_advantage`` (via our registered subclass) against a live
TransferQueue on a local Ray cluster, as the trainer does between reward and actor update.
"""

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from verl.trainer.ppo.v1 import get_trainer_cls
from verl.workers.utils.padding import response_to_nested

from tests.conftest import compose


@pytest.mark.timeout(600)
def test_step_metrics_include_filter_statistics():
    import ray
    import transfer_queue as tq

    cfg = compose("r1reward", "actor_rollout_ref.rollout.n=1")
    trainer_cls = get_trainer_cls(cfg.trainer.v1.trainer_mode)
    assert trainer_cls.__name__ == "R1RewardTrainerSync"

    # TransferQueue's controller and storage unit each take a logical CPU
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        tq.init(OmegaConf.merge(cfg.transfer_queue, {"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
        n, length = 256, 4
        mask = torch.ones(n, length, dtype=torch.long)
        nested_mask = torch.nested.as_nested_tensor(list(mask), layout=torch.jagged)
        scores = torch.zeros(n, length)
        scores[:255, -1] = 1.0  # R1-Reward §3.3: 255 rewards of 1 and one of 0
        keys = [f"sample{i}" for i in range(n)]
        fields = TensorDict(
            {"response_mask": nested_mask, "rm_scores": response_to_nested(scores, nested_mask), "uid": torch.arange(n)},
            batch_size=n,
        )
        batch = tq.kv_batch_put(keys=keys, partition_id="train", fields=fields)

        trainer = trainer_cls.__new__(trainer_cls)  # only the config is needed by _compute_advantage
        trainer.config = cfg
        metrics = {}
        trainer._compute_advantage(batch, metrics=metrics)
        adv = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])["advantages"]
    finally:
        try:
            tq.close()
        finally:
            ray.shutdown()

    assert metrics["adv_filter/filtered_sequences"] == 1
    assert metrics["adv_filter/filtered_frac"] == pytest.approx(1 / 256)
    assert metrics["adv_filter/z_min"] == pytest.approx(-15.96, abs=0.01)
    assert adv[255].abs().sum().item() == 0
    assert (adv[0] > 0).all()
