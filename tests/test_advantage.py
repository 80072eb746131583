"""The 3-sigma advantage filter through verl's ``compute_advantage`` (the function the trainer calls)."""

import numpy as np
import pytest
import torch
from verl import DataProto
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.utils.config import omega_conf_to_dataclass

from r1reward_verl.algos import StableReinforceAlgoConfig, pop_advantage_filter_metrics, standardize_advantages
from tests.conftest import compose


def _batch(rewards, resp_len=4, uids=None, lengths=None):
    """Outcome rewards on each response's last valid token, as verl's reward loop writes them."""
    n = len(rewards)
    lengths = lengths or [resp_len] * n
    mask = torch.zeros(n, resp_len)
    scores = torch.zeros(n, resp_len)
    for i, (r, length) in enumerate(zip(rewards, lengths)):
        mask[i, :length] = 1
        scores[i, length - 1] = r
    non_tensor = {"uid": np.array(uids if uids is not None else [f"p{i}" for i in range(n)], dtype=object)}
    return DataProto.from_dict(tensors={"token_level_rewards": scores, "response_mask": mask}, non_tensors=non_tensor)


def _run(data, *overrides):
    algo = compose("r1reward", *overrides).algorithm  # the DictConfig the trainer passes
    pop_advantage_filter_metrics()
    out = compute_advantage(data, adv_estimator=algo.adv_estimator, gamma=algo.gamma, lam=algo.lam, config=algo)
    return out.batch["advantages"], pop_advantage_filter_metrics()


def test_paper_example_255_ones_and_one_zero():
    adv, metrics = _run(_batch([1.0] * 255 + [0.0]))
    assert metrics["adv_filter/z_min"] == pytest.approx(-15.96, abs=0.01)
    assert adv[255].abs().sum().item() == 0.0
    kept = adv[:255]
    assert (kept > 0).all()
    assert torch.allclose(kept, kept[0, 0].expand_as(kept))
    assert metrics["adv_filter/filtered_seq_frac"] == pytest.approx(1 / 256)
    assert metrics["adv_filter/filtered_frac"] == pytest.approx(1 / 256)


def test_unfiltered_entries_are_verls_reinforce_plus_plus():
    data = _batch([1.0] * 255 + [0.0])
    ours, _ = _run(data)
    rpp, _ = _run(_batch([1.0] * 255 + [0.0]), "algorithm.adv_estimator=reinforce_plus_plus")
    assert torch.equal(ours[:255], rpp[:255])
    assert rpp[255].abs().sum() > 0


def test_sigma_override_and_null_disable():
    rewards = [1.0] * 60 + [0.0] * 4  # zeros at z = -3.87
    adv, m = _run(_batch(rewards))
    assert m["adv_filter/filtered_sequences"] == 4 and adv[60:].abs().sum() == 0
    adv, m = _run(_batch(rewards), "algorithm.adv_filter_sigma=4.0")
    assert m["adv_filter/filtered_sequences"] == 0 and (adv[60:] < 0).all()
    adv, m = _run(_batch(rewards), "algorithm.adv_filter_sigma=null")
    assert m["adv_filter/filtered_sequences"] == 0 and (adv[60:] < 0).all()


def test_zero_variance_gives_zeros_not_nan():
    for value in (0.0, 1.0, 1.5):
        adv, m = _run(_batch([value] * 32))
        assert torch.isfinite(adv).all()
        assert adv.abs().sum() == 0
        assert m["adv_filter/filtered_sequences"] == 0


def test_variable_lengths_and_padding_stay_zero():
    rewards = [1.0] * 30 + [0.0, 0.5]
    lengths = [1 + i % 4 for i in range(32)]
    adv, _ = _run(_batch(rewards, lengths=lengths))
    mask = _batch(rewards, lengths=lengths).batch["response_mask"]
    assert (adv[mask == 0] == 0).all()
    assert torch.isfinite(adv).all()


@pytest.mark.parametrize("base", ["grpo", "reinforce_plus_plus_baseline"])
def test_filter_over_group_estimators(base):
    # 8 prompts x 16 samples; one prompt has a single failure, the others are all correct
    rewards = [1.0] * 128
    rewards[5] = 0.0
    uids = [f"q{i // 16}" for i in range(128)]
    adv, m = _run(_batch(rewards, uids=uids), f"algorithm.adv_filter_base={base}")
    plain, _ = _run(_batch(rewards, uids=uids), f"algorithm.adv_estimator={base}")
    assert plain[5, 0] < 0 and adv[5].abs().sum() == 0  # the outlier is filtered
    keep = torch.ones(128, dtype=torch.bool)
    keep[5] = False
    assert torch.allclose(adv[keep], plain[keep])  # everything else keeps the base estimator's value
    assert m["adv_filter/filtered_sequences"] == 1


def test_group_base_needs_uids():
    data = _batch([1.0, 0.0])
    data.non_tensor_batch.pop("uid")
    with pytest.raises(ValueError, match="uid"):
        _run(data, "algorithm.adv_filter_base=grpo")


def test_standardize_uses_population_std():
    x = torch.tensor([[1.0], [0.0]])
    z = standardize_advantages(x, torch.ones_like(x))
    assert z.flatten().tolist() == pytest.approx([1.0, -1.0], abs=1e-5)


def test_algo_config_validation():
    cfg = omega_conf_to_dataclass(compose("r1reward").algorithm)
    assert isinstance(cfg, StableReinforceAlgoConfig) and cfg.adv_filter_sigma == 3.0
    with pytest.raises(Exception, match="adv_filter_base"):
        omega_conf_to_dataclass(compose("r1reward", "algorithm.adv_filter_base=gae").algorithm)
    with pytest.raises(Exception, match="adv_filter_sigma"):
        omega_conf_to_dataclass(compose("r1reward", "algorithm.adv_filter_sigma=-1").algorithm)


def test_reinforce_pp_ablation_keeps_outliers_and_still_logs_the_filter():
    """ablation=reinforce_pp: Reinforce++ advantages with no filter; the outlier at z = -15.96 keeps its value."""
    adv, metrics = _run(_batch([1.0] * 255 + [0.0]), "ablation=reinforce_pp")
    rpp, _ = _run(_batch([1.0] * 255 + [0.0]), "algorithm.adv_estimator=reinforce_plus_plus")
    assert rpp[255, -1] < 0 and torch.equal(adv, rpp)  # verl's Reinforce++ values, outlier included
    assert metrics["adv_filter/filtered_frac"] == 0.0  # the r1reward trainers log what the baseline keeps
    assert metrics["adv_filter/z_min"] == pytest.approx(-15.96, abs=0.01)
