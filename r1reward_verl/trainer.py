"""verl v1 trainers that add the advantage filter's statistics to each step's metrics.

verl's advantage-estimator interface returns only ``(advantages, returns)``, so the filter keeps its
statistics in-process (:func:`r1reward_verl.algos.pop_advantage_filter_metrics`) and these subclasses
of verl's own trainers merge them into the step metrics right after verl computes the advantages.
Select one with ``trainer.v1.trainer_mode=r1reward_sync`` (or ``r1reward_colocate_async``,
``r1reward_separate_async``); ``hydra_configs/r1reward.yaml`` picks ``r1reward_sync``.

verl imports this module in every process through the ``verl.plugins`` entry point
``r1reward_trainer`` (kept apart from ``r1reward_algos`` so that a trainer import problem cannot
unregister the loss and estimator).
"""

from __future__ import annotations

from verl.trainer.ppo.v1 import PPOTrainerColocateAsync, PPOTrainerSeparateAsync, PPOTrainerSync, register_trainer

from r1reward_verl.algos import pop_advantage_filter_metrics


class AdvantageFilterMetricsMixin:
    """After verl's ``_compute_advantage``, add ``adv_filter/*`` to the step's metrics."""

    def _compute_advantage(self, batch, metrics: dict):
        pop_advantage_filter_metrics()  # drop anything left from outside a step
        batch = super()._compute_advantage(batch, metrics=metrics)
        metrics.update(pop_advantage_filter_metrics())
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
