"""StableReinforce advantage estimator (R1-Reward §4.1 "Advantage Filter"), registered in verl.

``algorithm.adv_estimator=stable_reinforce`` computes a base estimator's advantages
(``algorithm.adv_filter_base``, default ``reinforce_plus_plus`` as in the paper; also
``reinforce_plus_plus_baseline`` or ``grpo``) and then applies the 3-sigma filter: entries whose
batch-standardized value lies outside [-k, k] (``algorithm.adv_filter_sigma``, default 3.0;
``null`` turns the filter off) become 0. The other entries keep the base estimator's value.

Both keys are fields of :class:`StableReinforceAlgoConfig`; ``hydra_configs/r1reward.yaml`` sets
``algorithm._target_`` to it so ``algorithm.adv_filter_sigma=2.5`` works from the command line.
Filter statistics are kept for the step metrics (``adv_filter/*``, see :mod:`r1reward_verl.trainer`).
"""

from __future__ import annotations

import numbers
import threading
from dataclasses import dataclass
from typing import Any, Optional

import torch
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo.core_algos import get_adv_estimator_fn, register_adv_est
from verl.utils import torch_functional as verl_F

ESTIMATOR = "stable_reinforce"
SUPPORTED_BASES = ("reinforce_plus_plus", "reinforce_plus_plus_baseline", "grpo")
STD_EPS = 1e-6


@dataclass
class StableReinforceAlgoConfig(AlgoConfig):
    """verl's ``AlgoConfig`` plus the advantage filter of R1-Reward §4.1.

    Args:
        adv_filter_sigma: k of the k-sigma filter (paper: 3). ``None`` disables the filter.
        adv_filter_base: the estimator whose advantages are filtered, one of ``SUPPORTED_BASES``.
    """

    adv_filter_sigma: Optional[float] = 3.0
    adv_filter_base: str = "reinforce_plus_plus"

    def __post_init__(self):
        """Check both keys (:func:`check_adv_filter_config`).

        verl 0.9.1 never builds the ``algorithm`` section as a dataclass (its trainer hands the
        ``DictConfig`` to ``compute_advantage``), so this runs only where we build it: at the start of
        ``main_ppo`` through the Hydra callback ``r1reward_verl.config.CheckConfigAtStart`` (before Ray),
        in ``r1reward_verl.config.validate_like_main_ppo`` and in the dry run.
        """
        check_adv_filter_config(self.adv_filter_sigma, self.adv_filter_base)


def check_adv_filter_config(sigma: Any, base: Any) -> None:
    """``algorithm.adv_filter_sigma`` is a number > 0 or null, ``algorithm.adv_filter_base`` one of ``SUPPORTED_BASES``.

    A k <= 0 would silently zero every advantage (|z| > k for almost every token), so it is an error.
    """
    if sigma is not None and not (isinstance(sigma, numbers.Real) and not isinstance(sigma, bool) and sigma > 0):
        raise ValueError(
            f"algorithm.adv_filter_sigma must be a number > 0 (k of the k-sigma filter) or null; got {sigma!r}"
        )
    if base not in SUPPORTED_BASES:
        raise ValueError(f"algorithm.adv_filter_base must be one of {', '.join(SUPPORTED_BASES)}; got {base!r}")


def standardize_advantages(advantages: torch.Tensor, mask: torch.Tensor, eps: float = STD_EPS) -> torch.Tensor:
    """A_standardized = (A - mu_A) / (sigma_A + eps), R1-Reward §4.1 (Eq. for A_standardized).

    mu and sigma are the mean and the population standard deviation over the valid (masked) tokens
    of the whole batch, as in the paper's example (255 rewards of 1 and one of 0 give -15.96).
    A batch with zero variance gives zeros, never NaN.
    """
    mask = mask.to(advantages.dtype)
    mean = verl_F.masked_mean(advantages, mask)
    std = verl_F.masked_var(advantages, mask, unbiased=False).clamp_min(0).sqrt()
    return (advantages - mean) / (std + eps) * mask


def sigma_filter(
    advantages: torch.Tensor, mask: torch.Tensor, sigma: Optional[float] = 3.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 3-sigma advantage filter, R1-Reward §4.1 (Eq. for Â).

    Â = A if |A_standardized| <= sigma else 0. Returns ``(filtered, z, removed)`` where ``z`` is
    :func:`standardize_advantages` and ``removed`` marks the valid entries set to 0.
    ``sigma=None`` keeps everything.
    """
    z = standardize_advantages(advantages, mask)
    valid = mask.bool()
    if sigma is None:
        removed = torch.zeros_like(valid)
    else:
        removed = (z.abs() > sigma) & valid
    filtered = torch.where(removed, torch.zeros_like(advantages), advantages) * mask.to(advantages.dtype)
    return filtered, z, removed


class _PendingMetrics:
    """Filter statistics of the last advantage computations in this process, until a trainer takes them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: list[dict[str, float]] = []

    def add(self, item: dict[str, float]) -> None:
        with self._lock:
            self._items.append(item)

    def pop(self) -> dict[str, float]:
        """Merge and clear: counts add up, fractions are recomputed, extremes kept."""
        with self._lock:
            items, self._items = self._items, []
        if not items:
            return {}
        tokens = sum(i["tokens"] for i in items)
        seqs = sum(i["sequences"] for i in items)
        removed = sum(i["removed_tokens"] for i in items)
        removed_seqs = sum(i["removed_sequences"] for i in items)
        return {
            "adv_filter/filtered_frac": removed / max(tokens, 1),
            "adv_filter/filtered_seq_frac": removed_seqs / max(seqs, 1),
            "adv_filter/filtered_tokens": float(removed),
            "adv_filter/filtered_sequences": float(removed_seqs),
            "adv_filter/z_min": min(i["z_min"] for i in items),
            "adv_filter/z_max": max(i["z_max"] for i in items),
        }


PENDING_METRICS = _PendingMetrics()


def pop_advantage_filter_metrics() -> dict[str, float]:
    """Metrics of the filter calls since the last pop (empty if none). Called once per step by the trainer."""
    return PENDING_METRICS.pop()


@register_adv_est(ESTIMATOR)
def compute_stable_reinforce_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    config: Optional[Any] = None,
    index=None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """StableReinforce advantages: the base estimator's (Reinforce++ by default), then :func:`sigma_filter`.

    Called by verl's ``compute_advantage`` with ``token_level_rewards``, ``response_mask``,
    ``config`` (the ``algorithm`` section) and ``index`` (uids) when present.
    """
    if config is None:
        raise ValueError("stable_reinforce needs the algorithm config")
    get = config.get
    base = get("adv_filter_base", "reinforce_plus_plus") or "reinforce_plus_plus"
    sigma = get("adv_filter_sigma", 3.0)
    check_adv_filter_config(sigma, base)  # also here: a config that never went through the start check
    base_kwargs: dict[str, Any] = {"token_level_rewards": token_level_rewards, "response_mask": response_mask}
    base_kwargs["config"] = config
    if base != "reinforce_plus_plus":
        if index is None:
            raise ValueError(f"adv_filter_base={base} groups responses by uid, but the batch has no 'uid'")
        base_kwargs["index"] = index
    if base == "grpo":
        base_kwargs["norm_adv_by_std_in_grpo"] = get("norm_adv_by_std_in_grpo", True)
    advantages, returns = get_adv_estimator_fn(base)(**base_kwargs)

    filtered, z, removed = sigma_filter(advantages, response_mask, sigma)
    valid = response_mask.bool()
    zv = z[valid]
    PENDING_METRICS.add(
        {
            "tokens": int(valid.sum()),
            "sequences": int(valid.any(-1).sum()),
            "removed_tokens": int(removed.sum()),
            "removed_sequences": int(removed.any(-1).sum()),
            "z_min": float(zv.min()) if zv.numel() else 0.0,
            "z_max": float(zv.max()) if zv.numel() else 0.0,
        }
    )
    return filtered, returns
