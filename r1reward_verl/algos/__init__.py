"""StableReinforce (R1-Reward §4.1) for verl: importing this package registers

* the policy loss ``stable_reinforce`` (pre-clip), see :mod:`.policy_loss`;
* the advantage estimator ``stable_reinforce`` (3-sigma filter over Reinforce++), see :mod:`.advantage`.

verl imports it in every process through the ``verl.plugins`` entry point ``r1reward_algos``.
"""

from .advantage import (
    ESTIMATOR,
    StableReinforceAlgoConfig,
    check_adv_filter_config,
    compute_stable_reinforce_advantage,
    pop_advantage_filter_metrics,
    sigma_filter,
    standardize_advantages,
)
from .policy_loss import (
    LOSS_MODE,
    StableReinforcePolicyLossConfig,
    compute_policy_loss_stable_reinforce,
    guard_inactive_tokens,
    preclip_ratio,
    stable_reinforce_token_loss,
)

__all__ = [
    "ESTIMATOR",
    "LOSS_MODE",
    "StableReinforceAlgoConfig",
    "StableReinforcePolicyLossConfig",
    "check_adv_filter_config",
    "compute_policy_loss_stable_reinforce",
    "compute_stable_reinforce_advantage",
    "guard_inactive_tokens",
    "pop_advantage_filter_metrics",
    "preclip_ratio",
    "sigma_filter",
    "stable_reinforce_token_loss",
    "standardize_advantages",
]
