"""The filter's statistics reach the step metrics through verl's own trainer ``_compute_advantage``.

Runs verl's real ``PPOTrainer._compute_advantage`` (via our registered subclass) against a live
TransferQueue on a local Ray cluster, as the trainer does between reward and actor update.
"""

import pytest
import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.v1 import get_trainer_cls
from verl.utils.tensordict_utils import list_of_dict_to_tensordict
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
        # per-trajectory fields as verl's agent loop stores them (list_of_dict_to_tensordict), with the
        # reward_extra_info our reward function returned: 4 referee failures among 255 asked
        rows = []
        for i in range(n):
            info = {"format": 1.0, "result": float(i < 255), "consistency": float(i < 200), "pred": 1,
                    "referee_asked": i < 255, "referee_ok": (i < 251) if i < 255 else None,
                    "referee_verdict": ("CONSISTENT" if i < 200 else "INCONSISTENT") if i < 251 else None,
                    "referee_attempts": 1 if i < 251 else 4, "referee_error": "timeout" if 251 <= i < 255 else None,
                    "referee_mode": "hosted"}  # fmt: skip
            rows.append({"response_mask": mask[i], "rm_scores": scores[i], "uid": torch.tensor(i),
                         "extra_fields": {"reward_extra_info": info}})  # fmt: skip
        fields = list_of_dict_to_tensordict(rows)
        fields["response_mask"] = nested_mask
        fields["rm_scores"] = response_to_nested(scores, nested_mask)
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
    # the reward's own statistics reach the step too
    assert metrics["referee/asked"] == 255 and metrics["referee/failed"] == 4
    assert metrics["referee/error/timeout"] == 4
    assert metrics["referee/failed_frac"] == pytest.approx(4 / 255)
    assert metrics["referee/inconsistent_frac"] == pytest.approx(51 / 251)
    assert metrics["reward/result_mean"] == pytest.approx(255 / 256)
    assert metrics["reward/consistency_mean"] == pytest.approx(200 / 256)
