"""The resource pools verl builds for a PPO config, and whether a cluster can hold them.

verl 0.9.1 (``verl/trainer/ppo/v1/trainer_base.py``, ``init_resource_pool_mgr``) makes ``global_pool`` =
``[trainer.n_gpus_per_node] * trainer.nnodes`` for the actor, rollout and reference, ``reward_pool`` =
``[reward.reward_model.n_gpus_per_node] * reward.reward_model.nnodes`` when the reward model (our hosted
referee) has its own pool, and ``teacher_pool`` for distillation. Each entry becomes one Ray placement group
with ``STRICT_PACK`` (``RayResourcePool.get_placement_groups``): all its GPUs on one node. Before it creates
them, verl checks only that the cluster's *total* GPU count is large enough
(``ResourcePoolManager._check_resource_available``); a pool entry that does not fit on any node's free GPUs
makes ``ray.get(pg.ready())`` wait forever. :func:`placement_problem` checks both, on CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class Pool:
    """One of verl's resource pools: ``per_node[i]`` GPUs in the i-th placement group (one node each)."""

    role: str  # what runs there, for messages: "policy" (actor+rollout+ref), "reward model" (referee/judge), "teacher"
    name: str  # verl's pool id
    per_node: tuple[int, ...]

    @property
    def gpus(self) -> int:
        return sum(self.per_node)

    def describe(self) -> str:
        n, g = len(self.per_node), (self.per_node[0] if self.per_node else 0)
        shape = f"{n} node{'s' * (n != 1)} x {g}" if len(set(self.per_node)) <= 1 else "+".join(map(str, self.per_node))
        return f"{self.role} {shape} = {self.gpus}"


@dataclass(frozen=True)
class Cluster:
    """The cluster a run is checked against: ``nodes`` nodes of ``gpus_per_node`` GPUs of ``gpu_gib`` GiB."""

    nodes: int
    gpus_per_node: int
    gpu_gib: float = 79.6  # what an "80 GB" H100/H800/A100 reports: 81,559 MiB

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def describe(self) -> str:
        return f"{self.nodes} node{'s' * (self.nodes != 1)} x {self.gpus_per_node} = {self.gpus}"


def parse_cluster(text: str, gpu_gib: float = Cluster.gpu_gib) -> Cluster:
    """``"2x8"`` -> 2 nodes of 8 GPUs. Raises ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"a cluster is NODESxGPUS_PER_NODE, e.g. 1x8 or 2x8; got {text!r}")
    return Cluster(int(m.group(1)), int(m.group(2)), gpu_gib)


def _get(cfg: DictConfig, key: str, default=None):
    return OmegaConf.select(cfg, key, default=default)


def pools_of(cfg: DictConfig) -> list[Pool]:
    """The pools verl 0.9.1's trainer builds for ``cfg`` (the rules of ``init_resource_pool_mgr``)."""
    pools = [Pool("policy", "global_pool", (int(cfg.trainer.n_gpus_per_node),) * int(cfg.trainer.nnodes))]
    if _get(cfg, "reward.reward_model.enable_resource_pool", False):
        rm = cfg.reward.reward_model
        pools.append(Pool("reward model", "reward_pool", (int(rm.n_gpus_per_node),) * int(rm.nnodes)))
    distill = _get(cfg, "distillation")
    if distill is not None and distill.get("enabled", False):
        pools.append(Pool("teacher", "teacher_pool", (int(distill.n_gpus_per_node),) * int(distill.nnodes)))
    return pools


def placement_problem(pools: list[Pool], cluster: Cluster) -> Optional[str]:
    """Why ``pools`` cannot be placed on ``cluster`` (one line, with the arithmetic), or None when they can.

    Placement groups are packed first-fit, largest first (each must sit on one node, as STRICT_PACK
    requires); Ray places them in creation order, so a fit found here is the best case, and a miss here is
    a miss on the cluster."""
    asked = " + ".join(p.describe() for p in pools)
    total = sum(p.gpus for p in pools)
    if total > cluster.gpus:
        return (f"the pools need {asked} = {total} GPUs; the cluster has {cluster.describe()} "
                f"(verl stops with 'Total available GPUs {cluster.gpus} is less than total desired GPUs {total}')")  # fmt: skip
    free = [cluster.gpus_per_node] * cluster.nodes
    groups = sorted(((g, p) for p in pools for g in p.per_node), key=lambda t: -t[0])
    for size, pool in groups:
        for i, f in enumerate(free):
            if f >= size:
                free[i] -= size
                break
        else:
            return (f"the pools need {asked} = {total} GPUs: the totals fit {cluster.describe()}, but a {pool.role} "
                    f"group of {size} GPUs must sit on one node and no node has {size} free "
                    f"(free per node after the larger groups: {free}); verl would wait forever for its placement group")  # fmt: skip
    return None


def layout_problems(cfg: DictConfig) -> list[str]:
    """What the policy's GPU count must divide, checked whatever ``use_dynamic_bsz`` says: verl's
    ``validate_config`` checks the batch against the GPU count only without dynamic batch sizes, but its
    workers split every step's batch and mini-batch evenly over the data-parallel ranks either way
    (``ppo_mini_batch_size //= world``). One line each, naming the keys and the arithmetic."""
    problems = []
    world = int(cfg.trainer.n_gpus_per_node) * int(cfg.trainer.nnodes)
    n = int(_get(cfg, "actor_rollout_ref.rollout.n", 1) or 1)
    actor = cfg.actor_rollout_ref.actor
    split = world
    if str(actor.get("strategy", "")) == "megatron":
        m = actor.megatron
        mp = int(m.tensor_model_parallel_size) * int(m.pipeline_model_parallel_size) * int(m.get("context_parallel_size", 1) or 1)
        if world % mp:
            problems.append(f"{world} policy GPUs (trainer.nnodes x trainer.n_gpus_per_node) are not a multiple of "
                            f"Megatron's TP x PP x CP = {mp}")  # fmt: skip
        split = max(1, world // mp)
    batch = int(cfg.data.train_batch_size) * n
    mini = int(actor.ppo_mini_batch_size) * n
    for what, size in (("data.train_batch_size", batch), ("actor_rollout_ref.actor.ppo_mini_batch_size", mini)):
        if size % split:
            problems.append(f"{what} x rollout.n = {size} samples do not split over {split} data-parallel ranks "
                            f"({world} policy GPUs): pick a batch they divide (layout=node8: 224/112 for 7 a node)")  # fmt: skip
    if batch % mini:
        problems.append(f"data.train_batch_size {batch // n} is not a multiple of ppo_mini_batch_size {mini // n}")
    rtp = int(_get(cfg, "actor_rollout_ref.rollout.tensor_model_parallel_size", 1) or 1)
    if world % rtp:
        problems.append(f"{world} policy GPUs are not a multiple of the rollout's tensor_model_parallel_size {rtp}")
    if _get(cfg, "reward.reward_model.enable_resource_pool", False):
        rm = cfg.reward.reward_model
        rtp = int(_get(cfg, "reward.reward_model.rollout.tensor_model_parallel_size", 1) or 1)
        if (int(rm.n_gpus_per_node) * int(rm.nnodes)) % rtp:
            problems.append(f"the referee's {int(rm.n_gpus_per_node) * int(rm.nnodes)} GPUs are not a multiple of its "
                            f"rollout.tensor_model_parallel_size {rtp}")  # fmt: skip
    if actor.get("use_dynamic_bsz", False):
        longest = int(cfg.data.max_prompt_length) + int(cfg.data.max_response_length)
        for key in ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu",
                    "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu",
                    "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu"):  # fmt: skip
            budget = _get(cfg, key)
            if budget is not None and int(budget) < longest:
                problems.append(f"{key} = {budget} cannot hold the longest sequence, data.max_prompt_length + "
                                f"max_response_length = {longest}")  # fmt: skip
    return problems
