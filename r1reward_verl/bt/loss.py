"""The Bradley-Terry loss on verl's engine, with the metrics verl logs per step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from verl.utils.metric import Metric


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Per pair -log σ(r_chosen − r_rejected): the scalar reward model's objective (R1-Reward Table 6's
    "traditional reward model"; Bradley & Terry 1952, as in Ouyang et al. 2022, eq. 1)."""
    return -F.logsigmoid(r_chosen - r_rejected)


def pair_rewards(model_output, data) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) rewards of a micro-batch of rows ``[c0, r0, c1, r1, ...]``: the value at each row's last
    token (verl's value engine gives one per token, a jagged tensor)."""
    values = model_output["values"]
    last = values.values()[values.offsets()[1:] - 1].float()
    roles = data["pair_role"]
    roles = (roles.values() if roles.is_nested else roles).reshape(-1)
    if len(last) % 2 or not (torch.equal(roles[0::2], torch.zeros_like(roles[0::2])) and bool(roles[1::2].all())):
        raise RuntimeError(f"a micro-batch split a pair: roles {roles.tolist()} (the engine sets force_group_size=2)")
    return last[0::2], last[1::2]


def per_pair(values: torch.Tensor) -> Metric:
    """A mean over pairs that stays exact when verl merges micro-batches and dp ranks (one value per pair)."""
    m = Metric("mean")
    m.extend(values.detach().float().tolist())
    return m


def bt_loss(config, model_output, data, dp_group=None):
    """verl's loss-function signature (``TrainingWorker.set_loss_fn``): the sum of :func:`bradley_terry_loss` over
    this micro-batch's pairs / the pairs of the global batch × dp size, verl's scaling (its ``sft_loss``): FSDP
    averages the gradients over dp, ``TrainingWorker`` sums the micro-batches' losses and averages over dp, so
    ``train/loss`` is the mean over every pair of the step. Metrics: accuracy (r_chosen > r_rejected; a tie counts
    wrong), margin, both rewards, one value per pair (verl's ``Metric``, so means are exact over micro-batches)."""
    r_c, r_r = pair_rewards(model_output, data)
    pairs = data["batch_num_tokens"] / 2  # loss_mask is one per row (BTPairDataset)
    loss = bradley_terry_loss(r_c, r_r).sum() / pairs * data["dp_size"]
    margin = (r_c - r_r).detach()
    metrics = {
        "bt/accuracy": per_pair(margin > 0),
        "bt/margin": per_pair(margin),
        "bt/reward_chosen": per_pair(r_c),
        "bt/reward_rejected": per_pair(r_r),
    }
    return loss, metrics
