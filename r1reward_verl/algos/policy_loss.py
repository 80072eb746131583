"""StableReinforce policy loss (R1-Reward, §4.1 "Pre-CLIP", Algorithm 1), registered in verl.

Select it with ``actor_rollout_ref.actor.policy_loss.loss_mode=stable_reinforce`` and give the
policy-loss section our config class so its knobs exist on the command line::

    actor_rollout_ref.actor.policy_loss._target_=r1reward_verl.algos.policy_loss.StableReinforcePolicyLossConfig
    actor_rollout_ref.actor.policy_loss.loss_mode=stable_reinforce
    actor_rollout_ref.actor.policy_loss.preclip_max=100

(``hydra_configs/r1reward.yaml`` does both.) Without our config class the loss still runs with the
paper's defaults (delta_min=1e-3, delta_max=1e3, pre-clip on, dual clip off).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional

import torch
from verl.trainer.ppo.core_algos import agg_loss, register_policy_loss
from verl.utils import torch_functional as verl_F
from verl.workers.config import PolicyLossConfig

LOSS_MODE = "stable_reinforce"


@dataclass
class StableReinforcePolicyLossConfig(PolicyLossConfig):
    """verl's ``PolicyLossConfig`` plus the pre-clip bounds of R1-Reward §4.1.

    Args:
        preclip: clamp log(pi/pi_old) to [log preclip_min, log preclip_max] before ``exp``.
            ``False`` gives the plain PPO-clip surrogate (the paper's Reinforce++ baseline).
        preclip_min: delta_min of §4.1 (paper: 1e-3).
        preclip_max: delta_max of §4.1 (paper: 1e3).
        dual_clip: apply verl's dual-clip bound ``actor.clip_ratio_c`` on negative advantages.
            Not part of the paper's loss; off by default.
    """

    loss_mode: str = LOSS_MODE
    preclip: bool = True
    preclip_min: float = 1e-3
    preclip_max: float = 1e3
    dual_clip: bool = False

    def __post_init__(self):
        """Reject bounds that make pre-clip meaningless: need 0 < preclip_min < 1 < preclip_max.

        Runs whenever verl builds the actor config: in ``validate_config`` of ``main_ppo`` before Ray
        starts, and in every actor worker. The message names the key and the value.
        """
        for name, ok, want in (
            ("preclip_min", 0.0 < _as_float(self.preclip_min) < 1.0, "in (0, 1) (delta_min)"),
            ("preclip_max", _as_float(self.preclip_max) > 1.0, "> 1 (delta_max)"),
        ):
            if not ok:
                raise ValueError(
                    f"actor_rollout_ref.actor.policy_loss.{name} must be {want}, a pre-clip bound of "
                    f"R1-Reward §4.1; got {getattr(self, name)!r}"
                )


def _as_float(value) -> float:
    """A real number as float; NaN (every comparison false) for anything else, e.g. a string or a bool."""
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan


_DEFAULTS = StableReinforcePolicyLossConfig()


def preclip_ratio(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, delta_min: float, delta_max: float, enabled: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pre-CLIP ratio, R1-Reward §4.1 (Eq. for the clipped ratio; Algorithm 1, "Our Pre-Clip strategy").

    ratio = exp(clip(log pi_theta - log pi_old, log delta_min, log delta_max)).

    The clamp happens in log space *before* ``exp``, so the ratio can neither overflow nor, for a
    negative advantage, blow up the loss. Returns ``(ratio, log_ratio_after_clamp, preclipped)``
    where ``preclipped`` marks the tokens whose log-ratio was clamped. With ``enabled=False`` the
    ratio is the plain ``exp(log pi - log pi_old)`` of Algorithm 1 line 0.
    """
    log_ratio = log_prob - old_log_prob
    if enabled:
        low, high = math.log(delta_min), math.log(delta_max)
        preclipped = (log_ratio < low) | (log_ratio > high)
        log_ratio = log_ratio.clamp(min=low, max=high)
    else:
        preclipped = torch.zeros_like(log_ratio, dtype=torch.bool)
    return torch.exp(log_ratio), log_ratio, preclipped


def stable_reinforce_token_loss(
    ratio: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float,
    clip_high: float,
    clip_ratio_c: Optional[float] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token StableReinforce surrogate, R1-Reward §4.1 (Eq. for L^StableReinforce; Algorithm 1 lines 1-3).

    loss_t = -min(ratio_t * A_t, clip(ratio_t, 1 - eps_low, 1 + eps_high) * A_t), with ``ratio``
    the pre-clipped ratio of :func:`preclip_ratio`. ``clip_ratio_c`` adds verl's dual clip for
    A < 0 (not in the paper). Returns ``(loss_mat, clipped, dual_clipped)`` masks for metrics.
    """
    surr1 = -advantages * ratio
    surr2 = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(surr1, surr2)
    clipped = surr2 > surr1
    dual_clipped = torch.zeros_like(clipped)
    if clip_ratio_c is not None:
        bound = -advantages * clip_ratio_c
        dual_clipped = (loss > bound) & (advantages < 0)
        loss = torch.where(advantages < 0, torch.minimum(loss, bound), loss)
    return loss, clipped, dual_clipped


def guard_inactive_tokens(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, response_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep tokens that cannot move the loss from turning it, or its gradient, into NaN (not a paper formula).

    A token is *inactive* when it is masked out or its advantage is exactly 0 (e.g. removed by the
    3-sigma filter, or a batch with zero variance). Without pre-clip an inactive token's ratio
    ``exp(log pi - log pi_old)`` can overflow (a log-ratio of 89 is inf in float32) and ``inf * 0``
    is NaN: in the forward sum (seq-mean modes multiply by the mask, a zero advantage multiplies the
    ratio itself) and in ``exp``'s backward even where ``torch.where`` hides the forward value. So
    for inactive tokens ``log pi`` becomes ``log pi_old`` (``torch.where`` before ``exp``: ratio
    exactly 1, gradient exactly 0); the caller then sets their loss to exactly 0 with ``active``.
    With pre-clip on the ratio is bounded by delta_max and this is not needed. Returns
    ``(log_prob, active)``.
    """
    active = response_mask.bool() & (advantages != 0)
    return torch.where(active, log_prob, old_log_prob), active


@register_policy_loss(LOSS_MODE)  # type: ignore[arg-type]
def compute_policy_loss_stable_reinforce(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config=None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """verl policy-loss entry point for StableReinforce (same signature and aggregation as ``vanilla``).

    Reads ``clip_ratio_low/high`` (and ``clip_ratio_c`` if ``policy_loss.dual_clip``) from the actor
    config and the pre-clip bounds from ``policy_loss`` (defaults: the paper's). Aggregates with
    verl's ``agg_loss(..., **config.global_batch_info)`` and multiplies by ``rollout_is_weights``
    when verl's rollout correction provides them.

    Non-finite values, decided: masked tokens and tokens with advantage 0 contribute exactly 0 to
    the loss and get a gradient of exactly 0, whatever their log-ratio, so finite inputs never give
    a NaN from them. With pre-clip on (the paper's path) every ratio is finite and verl's
    ``agg_loss`` masks, so nothing is added; with pre-clip off :func:`guard_inactive_tokens` keeps
    them out of ``exp`` and their loss is set to 0. An active token (unmasked, A != 0) keeps the
    plain surrogate's arithmetic: with pre-clip off (``ablation=no_preclip``, ``ablation=reinforce_pp``)
    a ratio that overflows gives a loss of +inf for A < 0 (the divergence the paper reports for
    Reinforce++), and for A > 0 a finite (clipped) loss whose gradient through ``exp`` is
    0 * inf = NaN, as with OpenRLHF's plain PPO loss; verl's optimizer step skips a step whose grad
    norm is not finite (and prints a warning).
    """
    if config is None:
        raise ValueError("stable_reinforce needs the actor config (clip_ratio_low/high)")
    get = config.policy_loss.get  # DictConfig or PolicyLossConfig: both map-like
    clip_ratio = config.clip_ratio
    clip_low = config.clip_ratio_low if config.clip_ratio_low is not None else clip_ratio
    clip_high = config.clip_ratio_high if config.clip_ratio_high is not None else clip_ratio
    clip_ratio_c = config.get("clip_ratio_c", 3.0) if get("dual_clip", _DEFAULTS.dual_clip) else None
    if clip_ratio_c is not None and clip_ratio_c <= 1.0:
        raise ValueError(f"dual clip needs actor.clip_ratio_c > 1, got {clip_ratio_c}")

    preclip = get("preclip", _DEFAULTS.preclip)
    ratio_log_prob, active = log_prob, None
    if not preclip:  # exp of an unbounded log-ratio: keep masked / zero-advantage tokens out of it
        ratio_log_prob, active = guard_inactive_tokens(log_prob, old_log_prob, advantages, response_mask)
    ratio, log_ratio, preclipped = preclip_ratio(
        ratio_log_prob,
        old_log_prob,
        delta_min=get("preclip_min", _DEFAULTS.preclip_min),
        delta_max=get("preclip_max", _DEFAULTS.preclip_max),
        enabled=preclip,
    )
    pg_losses, clipped, dual_clipped = stable_reinforce_token_loss(
        ratio, advantages, clip_low, clip_high, clip_ratio_c
    )
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    if active is not None:
        pg_losses = torch.where(active, pg_losses, torch.zeros_like(pg_losses))

    global_batch_info = getattr(config, "global_batch_info", None) or {}
    pg_loss = agg_loss(loss_mat=pg_losses, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **global_batch_info)

    with torch.no_grad():
        mask = response_mask
        raw_log_ratio = (log_prob - old_log_prob).float()
        metrics = {
            "actor/pg_clipfrac": verl_F.masked_mean(clipped.float(), mask).item(),
            "actor/ppo_kl": verl_F.masked_mean(-raw_log_ratio, mask).item(),
            "actor/pg_clipfrac_lower": verl_F.masked_mean(dual_clipped.float(), mask).item(),
            "actor/preclip_frac": verl_F.masked_mean(preclipped.float(), mask).item(),
            "actor/preclip_frac_upper": verl_F.masked_mean((preclipped & (log_ratio > 0)).float(), mask).item(),
            "actor/preclip_frac_lower": verl_F.masked_mean((preclipped & (log_ratio < 0)).float(), mask).item(),
        }
    return pg_loss, metrics
