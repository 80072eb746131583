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

import importlib
import logging

import transfer_queue as tq

# The cpu platform must be registered before verl's engine modules (imported below) ask for a platform.
# import_module also hands back r1reward_verl.cpu while it is itself still being imported (its docstring).
importlib.import_module("r1reward_verl.cpu").register()

from verl.trainer.ppo.v1 import PPOTrainerColocateAsync, PPOTrainerSeparateAsync, PPOTrainerSync, register_trainer  # noqa: E402

from r1reward_verl.algos import pop_advantage_filter_metrics  # noqa: E402
from r1reward_verl.reward.failfast import RefereeFailFast, fail_fast_steps  # noqa: E402
from r1reward_verl.reward.step_metrics import genrm_step_metrics, reward_step_metrics  # noqa: E402

logger = logging.getLogger(__name__)


def _reward_extra_infos(batch) -> list[dict]:
    """Each trajectory's ``reward_extra_info`` as the agent loop stored it in TransferQueue's ``extra_fields``."""
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    out = []
    for value in list(data["extra_fields"]):
        extra = getattr(value, "data", value)
        out.append(extra.get("reward_extra_info", {}) if isinstance(extra, dict) else {})
    return out


class VerlModeMixin:
    """Make verl see its own mode name (``sync``, ...) where it compares ``self.trainer_mode``.

    verl 0.9.1's ``PPOTrainer`` (``verl/trainer/ppo/v1/trainer_base.py``) sets
    ``self.trainer_mode = config.trainer.v1.trainer_mode`` and then compares it with ``"sync"`` to pick
    the replay-buffer class, the exact-refill ``gen_batch_size=1``, TransferQueue state in checkpoints
    and re-issued prompts, and looks up ``config.trainer.v1.<mode>``. Our registered mode names
    (``r1reward_sync``) would send our sync trainer down verl's async paths; this property answers
    with the verl mode the class extends (``verl_mode``) and keeps the configured name in
    ``configured_trainer_mode``.
    """

    verl_mode: str = ""

    @property
    def trainer_mode(self) -> str:
        return self.verl_mode

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:
        self.configured_trainer_mode = value


class AdvantageFilterMetricsMixin(VerlModeMixin):
    """After verl's ``_compute_advantage``, add ``adv_filter/*`` and the reward's ``reward/*``, ``referee/*`` (and
    ``genrm/*`` when the pairwise judge is the reward).

    The same ``referee/*`` metrics stop a run whose referee is dead: every request of each of the first
    ``referee_fail_fast_steps`` steps that asked it failed (:mod:`r1reward_verl.reward.failfast`).
    """

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
                step_metrics = reward_step_metrics(infos)
                metrics.update(step_metrics)
                metrics.update(genrm_step_metrics(infos))
                self._watch_referee(step_metrics, infos)
        return batch

    def _watch_referee(self, step_metrics: dict, infos: list[dict]) -> None:
        """Raise :class:`RefereeDeadError` (stopping the run) once the referee is found dead; else nothing."""
        watch = self.__dict__.get("_referee_watch")
        if watch is None:
            watch = self._referee_watch = RefereeFailFast(fail_fast_steps(self.config))
        if watch.observe(getattr(self, "global_steps", None), step_metrics, infos):
            router = getattr(getattr(self, "reward_loop_manager", None), "reward_router_address", None)
            raise watch.error(self.config, router)


@register_trainer("r1reward_sync")
class R1RewardTrainerSync(AdvantageFilterMetricsMixin, PPOTrainerSync):
    """verl's synchronous PPO trainer with advantage-filter metrics."""

    verl_mode = "sync"


@register_trainer("r1reward_colocate_async")
class R1RewardTrainerColocateAsync(AdvantageFilterMetricsMixin, PPOTrainerColocateAsync):
    """verl's colocated asynchronous PPO trainer with advantage-filter metrics."""

    verl_mode = "colocate_async"


@register_trainer("r1reward_separate_async")
class R1RewardTrainerSeparateAsync(AdvantageFilterMetricsMixin, PPOTrainerSeparateAsync):
    """verl's separated asynchronous PPO trainer with advantage-filter metrics."""

    verl_mode = "separate_async"
