"""StableReinforce policy loss through verl's own call sites: the registry and ``ppo_loss``."""

import math

import pytest
import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl.utils import tensordict_utils as tu
from verl.workers.utils.losses import ppo_loss

from r1reward_verl.algos import StableReinforcePolicyLossConfig, preclip_ratio, stable_reinforce_token_loss
from tests.conftest import actor_config

# R1-Reward §3.3: the example that makes vanilla PPO unstable.
LOG_PROBS = [-0.1, -0.1, -0.1, -0.1]
OLD_LOG_PROBS = [-10.0, -0.2, -0.2, -5.0]
ADVANTAGES = [-1.0, -1.0, 0.5, -0.5]
VANILLA_PER_TOKEN = [19930.4, 1.105, -0.553, 67.1]
PRECLIP_PER_TOKEN = [1000.0, 1.105, -0.553, 67.1]


def _example(dtype=torch.float32):
    t = lambda v: torch.tensor([v], dtype=dtype)  # noqa: E731
    return t(OLD_LOG_PROBS), t(LOG_PROBS), t(ADVANTAGES)


def _per_token_through_registry(config):
    """Each token's loss from the registered function: mask one token at a time, token-sum aggregation."""
    fn = get_policy_loss_fn("stable_reinforce")
    old, new, adv = _example()
    out = []
    for i in range(4):
        mask = torch.zeros(1, 4)
        mask[0, i] = 1
        loss, _ = fn(old, new, adv, mask, loss_agg_mode="token-sum", config=config)
        out.append(loss.item())
    return out


def test_paper_example_per_token_through_registry():
    assert _per_token_through_registry(actor_config("actor_rollout_ref.actor.policy_loss.preclip=false")) == (
        pytest.approx(VANILLA_PER_TOKEN, rel=1e-3)
    )
    assert _per_token_through_registry(actor_config()) == pytest.approx(PRECLIP_PER_TOKEN, rel=1e-3)


def test_paper_formula_functions_match_example():
    old, new, adv = _example()
    ratio, _, preclipped = preclip_ratio(new, old, 1e-3, 1e3)
    loss, _, _ = stable_reinforce_token_loss(ratio, adv, 0.2, 0.2)
    assert loss[0].tolist() == pytest.approx(PRECLIP_PER_TOKEN, rel=1e-3)
    assert preclipped[0].tolist() == [True, False, False, False]


def _ppo_loss_batch(old, new, adv, prompt_len=3):
    """A padded-format batch as verl's engine hands it to ``ppo_loss`` (no padding tokens)."""
    bsz, resp_len = adv.shape
    data = TensorDict(
        {
            "prompts": torch.ones(bsz, prompt_len, dtype=torch.long),
            "responses": torch.ones(bsz, resp_len, dtype=torch.long),
            "attention_mask": torch.ones(bsz, prompt_len + resp_len, dtype=torch.long),
            "response_mask": torch.ones(bsz, resp_len),
            "old_log_probs": old,
            "advantages": adv,
        },
        batch_size=[bsz],
    )
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=bsz * resp_len, global_batch_size=bsz)
    # the model's flat per-token log-probs: response token t of a sequence sits at prompt_len - 1 + t
    flat = torch.cat([torch.cat([torch.zeros(prompt_len - 1), new[i], torch.zeros(1)]) for i in range(bsz)])
    return {"log_probs": flat}, data


@pytest.mark.parametrize(
    "overrides, expected_mean, preclip_frac",
    [
        ((), sum(PRECLIP_PER_TOKEN) / 4, 0.25),
        (("actor_rollout_ref.actor.policy_loss.preclip=false",), sum(VANILLA_PER_TOKEN) / 4, 0.0),
        # log(100) < 4.9: the fourth token is pre-clipped too (ratio 100, A = -0.5)
        (("actor_rollout_ref.actor.policy_loss.preclip_max=100",), (100 + 1.105 - 0.553 + 50) / 4, 0.5),
        # verl's dual clip (clip_ratio_c=3) caps the first token at 3 * |A|
        (("actor_rollout_ref.actor.policy_loss.dual_clip=true",), (3 + 1.105 - 0.553 + 3 * 0.5) / 4, 0.25),
    ],
)
def test_ppo_loss_with_real_actor_config(overrides, expected_mean, preclip_frac):
    config = actor_config(*overrides)
    assert config.policy_loss.loss_mode == "stable_reinforce"
    assert isinstance(config.policy_loss, StableReinforcePolicyLossConfig)
    old, new, adv = _example()
    model_output, data = _ppo_loss_batch(old, new, adv)
    loss, metrics = ppo_loss(config, model_output, data)
    assert loss.item() == pytest.approx(expected_mean, rel=1e-3)
    assert metrics["actor/preclip_frac"].values[0] == pytest.approx(preclip_frac)
    for key in ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower", "actor/pg_loss"):
        assert key in metrics


@pytest.mark.parametrize("loss_mode", ["stable_reinforce", "vanilla"])
@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
def test_actor_clip_ratio_sets_the_clip_of_the_loss(loss_mode, eps):
    """``actor.clip_ratio`` is the epsilon of Algorithm 1: verl's losses (ours and its own vanilla) read
    clip_ratio_low/high, which verl's actor.yaml sets to a literal 0.2; our config ties them to clip_ratio."""
    config = actor_config(f"actor_rollout_ref.actor.clip_ratio={eps}")
    assert (config.clip_ratio_low, config.clip_ratio_high) == (eps, eps)
    fn = get_policy_loss_fn(loss_mode)
    old, new = torch.zeros(1, 2), torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5 clip on both sides
    adv, mask = torch.tensor([[1.0, -1.0]]), torch.ones(1, 2)
    loss, _ = fn(old, new, adv, mask, loss_agg_mode="token-sum", config=config)
    assert loss.item() == pytest.approx(-(1 + eps) + (1 - eps), abs=1e-5)


def test_token_mean_of_paper_example_is_266_9():
    old, new, adv = _example()
    model_output, data = _ppo_loss_batch(old, new, adv)
    loss, _ = ppo_loss(actor_config(), model_output, data)
    assert loss.item() == pytest.approx(266.9, abs=0.05)


def test_vanilla_differs_on_same_batch():
    """Sanity of the comparison: verl's own ``vanilla`` gives a different (dual-clipped) value here."""
    old, new, adv = _example()
    model_output, data = _ppo_loss_batch(old, new, adv)
    vanilla, _ = ppo_loss(actor_config("actor_rollout_ref.actor.policy_loss.loss_mode=vanilla"), model_output, data)
    ours, _ = ppo_loss(actor_config(), *_ppo_loss_batch(old, new, adv))
    assert vanilla.item() == pytest.approx((3 + 1.105 - 0.553 + 1.5) / 4, rel=1e-3)
    assert ours.item() != pytest.approx(vanilla.item(), rel=1e-2)


def test_rollout_is_weights_are_applied():
    config = actor_config()
    fn = get_policy_loss_fn("stable_reinforce")
    old, new, adv = _example()
    mask = torch.ones(1, 4)
    base, _ = fn(old, new, adv, mask, loss_agg_mode="token-sum", config=config)
    w = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    weighted, _ = fn(old, new, adv, mask, loss_agg_mode="token-sum", config=config, rollout_is_weights=w)
    assert base.item() - weighted.item() == pytest.approx(1000.0, rel=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_extreme_log_ratios_give_finite_loss_and_gradients(dtype, mode):
    g = torch.Generator().manual_seed(0)
    bsz, length = 16, 64
    log_ratio = (torch.rand(bsz, length, generator=g) * 2 - 1) * 1e4
    old = (-torch.rand(bsz, length, generator=g) * 5).to(dtype)
    new = (old.float() + log_ratio).to(dtype).requires_grad_(True)
    adv = torch.randn(bsz, length, generator=g).to(dtype)
    mask = (torch.rand(bsz, length, generator=g) > 0.2).float()
    loss, metrics = get_policy_loss_fn("stable_reinforce")(old, new, adv, mask, loss_agg_mode=mode, config=actor_config())
    loss.backward()
    assert torch.isfinite(loss).item()
    assert torch.isfinite(new.grad).all().item()
    assert metrics["actor/preclip_frac"] > 0.9  # |log-ratio| > log(1e3) almost everywhere
    # every pre-clipped ratio is within [1e-3, 1e3], so |loss| <= 1e3 * max|A|
    assert loss.abs().item() <= 1e3 * adv.abs().max().item() * (length if mode == "seq-mean-token-sum" else 1)


def test_invalid_bounds_are_rejected():
    with pytest.raises(ValueError, match="preclip_min"):
        StableReinforcePolicyLossConfig(preclip_min=2.0)
    with pytest.raises(Exception, match="preclip"):
        actor_config("actor_rollout_ref.actor.policy_loss.preclip_max=0.5")


def test_preclip_bounds_are_logs_of_deltas():
    old, new, _ = _example()
    _, log_ratio, _ = preclip_ratio(new, old, 1e-3, 1e3)
    assert log_ratio.max().item() == pytest.approx(math.log(1e3))


ABLATIONS = ["none", "no_adv_filter", "no_preclip", "reinforce_pp", "no_consistency"]


def _plain_ppo_clip(log_ratio: float, adv: float, eps_low: float, eps_high: float) -> float:
    """-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) with r = exp(log_ratio) unclamped (OpenRLHF's PolicyLoss)."""
    r = math.exp(log_ratio)
    return -min(r * adv, min(max(r, 1 - eps_low), 1 + eps_high) * adv)


def test_reinforce_pp_ablation_is_plain_ppo_clip():
    """ablation=reinforce_pp: the unclamped ratio e^25 and no dual clip (verl's vanilla: e^20, then 3 |A|)."""
    config = actor_config("ablation=reinforce_pp")
    assert (config.policy_loss.preclip, config.policy_loss.dual_clip) == (False, False)
    eps_low, eps_high = config.clip_ratio_low, config.clip_ratio_high
    log_ratios, advs = [25.0, -25.0, 25.0, -25.0], [-1.0, 1.0, 1.0, -1.0]
    expected = [_plain_ppo_clip(lr, a, eps_low, eps_high) for lr, a in zip(log_ratios, advs)]
    assert expected[0] == pytest.approx(math.exp(25))  # not 3 (dual clip) nor e^20 (log-ratio clamp)
    old = torch.zeros(1, 4)
    new = torch.tensor([log_ratios])
    adv = torch.tensor([advs])
    fn = get_policy_loss_fn(config.policy_loss.loss_mode)
    per_token = []
    for i in range(4):
        mask = torch.zeros(1, 4)
        mask[0, i] = 1
        loss, _ = fn(old, new, adv, mask, loss_agg_mode="token-sum", config=config)
        per_token.append(loss.item())
    assert per_token == pytest.approx(expected, rel=1e-5)
    loss, metrics = ppo_loss(config, *_ppo_loss_batch(old, new, adv))
    assert loss.item() == pytest.approx(sum(expected) / 4, rel=1e-5)
    assert metrics["actor/preclip_frac"].values[0] == 0.0


def test_reinforce_pp_may_diverge_to_inf_but_not_to_nan():
    """An active token (unmasked, A != 0) whose ratio overflows keeps the plain surrogate's value: +inf for A < 0."""
    config = actor_config("ablation=reinforce_pp")
    old = torch.zeros(1, 3)
    new = torch.tensor([[200.0, 0.1, -0.1]])
    adv = torch.tensor([[-1.0, 0.5, -0.5]])
    loss, _ = ppo_loss(config, *_ppo_loss_batch(old, new, adv))
    assert loss.item() == math.inf


def _batch_with_inactive_tokens(dtype):
    """2 x 8 response tokens; the inactive ones (masked, or advantage 0) carry log-ratios of +-200."""
    old = torch.full((2, 8), -1.0, dtype=dtype)
    log_ratio = torch.tensor(
        [[0.1, -0.2, 200.0, -200.0, 200.0, -200.0, 0.3, 200.0],
         [-0.1, 200.0, -200.0, 0.05, 200.0, -200.0, 200.0, -200.0]]
    )  # fmt: skip
    adv = torch.tensor(
        [[1.0, -1.0, 0.0, 0.0, -2.0, 2.0, 0.5, 1.0],
         [-0.5, 0.0, 0.0, 1.5, 1.0, -1.0, -3.0, 3.0]]
    ).to(dtype)  # fmt: skip
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 1, 0], [1, 1, 1, 1, 0, 0, 0, 0]], dtype=torch.float32)
    active = (mask > 0) & (adv != 0)
    assert (log_ratio.abs()[active] < 1).all() and (log_ratio.abs()[~active] == 200).all()
    return old, (old.float() + log_ratio).to(dtype), adv, mask, active


def _ppo_loss_masked(config, old, new, adv, mask):
    """Through verl's ``ppo_loss``; returns the loss and d loss / d log_prob per response token."""
    model_output, data = _ppo_loss_batch(old, new, adv)
    data["response_mask"] = mask
    flat = model_output["log_probs"].detach().requires_grad_(True)
    loss, _ = ppo_loss(config, {"log_probs": flat}, data)
    loss.backward()
    prompt_len, resp_len = 3, adv.shape[1]
    seq = prompt_len + resp_len
    grad = torch.stack([flat.grad[i * seq + prompt_len - 1 : i * seq + prompt_len - 1 + resp_len] for i in range(2)])
    return loss, grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_masked_and_zero_advantage_tokens_never_give_nan(ablation, mode, dtype):
    """Finite inputs, log-ratios of +-200 on masked and zero-advantage tokens: no NaN in the loss or its gradient,
    and those tokens contribute exactly nothing (the same loss as with a log-ratio of 0 there)."""
    config = actor_config(f"ablation={ablation}", f"actor_rollout_ref.actor.loss_agg_mode={mode}")
    old, new, adv, mask, active = _batch_with_inactive_tokens(dtype)
    loss, grad = _ppo_loss_masked(config, old, new, adv, mask)
    assert torch.isfinite(loss).item(), loss
    assert torch.isfinite(grad).all().item(), grad
    assert (grad[~active] == 0).all().item()
    calm = torch.where(active, new, old)  # the inactive tokens' log-ratio set to 0
    loss_calm, grad_calm = _ppo_loss_masked(config, old, calm, adv, mask)
    assert loss.item() == loss_calm.item()
    assert torch.equal(grad, grad_calm)
