"""verl v1 trainers that add the advantage filter's and the reward's statistics to each step's metrics.

verl's advantage-estimator interface returns only ``(advantages, returns)``, so the filter keeps its
statistics in-process (:func:`r1reward_verl.algos.pop_advantage_filter_metrics`) and these subclasses
of verl's own trainers merge them into the step metrics right after verl computes the advantages.
The reward's fields (format, result, consistency, referee outcome) come back from the reward-loop
workers inside each trajectory's ``extra_fields.reward_extra_info``, which verl's v1 trainer logs
only for validation; the same override aggregates them for training steps.
Select one with ``trainer.v1.trainer_mode=r1reward_sync`` (or ``r1reward_colocate_async``,
``r1reward_separate_async``); ``hydra_configs/r1reward.yaml`` picks ``r1reward_sync``.

verl imports this module in every process through the ``verl.plugins`` entry point
``r1reward_trainer`` (kept apart from ``r1reward_algos`` so that a trainer import problem cannot
unregister the loss and estimator).
"""

from __future__ import annotations

import logging

import transfer_queue as tq
from verl.trainer.ppo.v1 import PPOTrainerColocateAsync, PPOTrainerSeparateAsync, PPOTrainerSync, register_trainer

from r1reward_verl.algos import pop_advantage_filter_metrics
from r1reward_verl.reward.metrics import reward_step_metrics

logger = logging.getLogger(__name__)


def _reward_extra_infos(batch) -> list[dict]:
    """Each trajectory's ``reward_extra_info`` as the agent loop stored it in TransferQueue's ``extra_fields``."""
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    out = []
    for value in list(data["extra_fields"]):
        extra = getattr(value, "data", value)
        out.append(extra.get("reward_extra_info", {}) if isinstance(extra, dict) else {})
    return out


class AdvantageFilterMetricsMixin:
    """After verl's ``_compute_advantage``, add ``adv_filter/*`` and the reward's ``reward/*``, ``referee/*``."""

    def _compute_advantage(self, batch, metrics: dict):
        pop_advantage_filter_metrics()  # drop anything left from outside a step
        batch = super()._compute_advantage(batch, metrics=metrics)
        metrics.update(pop_advantage_filter_metrics())
        if batch.fields is None or "extra_fields" in batch.fields:
            try:
                infos = _reward_extra_infos(batch)
            except Exception as e:  # metrics must never stop a step
                logger.warning("r1reward: could not read reward_extra_info for step metrics: %s", e)
            else:
                metrics.update(reward_step_metrics(infos))
        return batch


@register_trainer("r1reward_sync")
class R1RewardTrainerSync(AdvantageFilterMetricsMixin, PPOTrainerSync):
    """verl's synchronous PPO trainer with advantage-filter metrics."""


@register_trainer("r1reward_colocate_async")
class R1RewardTrainerColocateAsync(AdvantageFilterMetricsMixin, PPOTrainerColocateAsync):
    """verl's colocated asynchronous PPO trainer with advantage-filter metrics."""


@register_trainer("r1reward_separate_async")
class R1RewardTrainerSeparateAsync(AdvantageFilterMetricsMixin, PPOTrainerSeparateAsync):
    """verl's separated asynchronous PPO trainer with advantage-filter metrics."""
