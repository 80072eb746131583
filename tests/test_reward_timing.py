"""Reward-timing step metrics: how much reward/referee work hid behind generation."""

import asyncio

import pytest

from r1reward_verl.reward.step_metrics import reward_overlap_metrics, reward_step_metrics
from r1reward_verl.reward.score import compute_score


def test_overlap_metrics_from_known_spans():
    # rollouts end (rewards start) at 0, 1, 2, 4; rewards take 1, 1, 3, 0.5 s
    spans = [(0.0, 1.0), (1.0, 2.0), (2.0, 5.0), (4.0, 4.5)]
    got = reward_overlap_metrics([{"reward_t0": a, "reward_t1": b} for a, b in spans])
    assert got["reward/busy_s"] == pytest.approx(5.5)
    assert got["reward/tail_wait_s"] == pytest.approx(1.0)  # last reward ends at 5, last rollout at 4
    assert got["reward/overlap_frac"] == pytest.approx((1 + 1 + 2 + 0) / 5.5)
    assert reward_overlap_metrics([{"result": 1.0}]) == {}
    nan_row = {"reward_t0": float("nan"), "reward_t1": float("nan")}
    assert reward_overlap_metrics([nan_row, *({"reward_t0": a, "reward_t1": b} for a, b in spans)]) == got
    # the same spans across midnight (seconds of the day wrap), and after a float32 round trip as
    # TransferQueue carries reward_extra_info
    import numpy as np

    wrapped = [{"reward_t0": float(np.float32((a + 86398.0) % 86400)), "reward_t1": float(np.float32((b + 86398.0) % 86400))}
               for a, b in spans]  # fmt: skip
    got2 = reward_overlap_metrics(wrapped)
    for key, value in got.items():
        assert got2[key] == pytest.approx(value, abs=0.02), key


def test_compute_score_records_its_span_and_the_step_metrics_use_it():
    out = asyncio.run(compute_score("r1", "<think>Response 1 is right.</think><answer>1</answer>", "1",
                                    extra_info={"question": "q"}, referee="off"))  # fmt: skip
    assert out["reward_t0"] <= out["reward_t1"] < 86400.0  # seconds of the day: float32 keeps ~8 ms
    metrics = reward_step_metrics([out])
    assert metrics["reward/result_mean"] == 1.0 and metrics["reward/tail_wait_s"] >= 0.0
