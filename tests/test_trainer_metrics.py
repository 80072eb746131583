"""The filter's statistics reach the step metrics through verl's own trainer ``_compute_advantage``.

Runs verl's real ``PPOTrainer._compute_advantage`` (via our registered subclass) against a live
TransferQueue on a local Ray cluster, as the trainer does between reward and actor update.
"""

import itertools

import pytest
import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.v1 import get_trainer_cls
from verl.utils.tensordict_utils import list_of_dict_to_tensordict
from verl.workers.utils.padding import response_to_nested

from tests.conftest import compose

_BATCHES = itertools.count()


@pytest.fixture(scope="module")
def live_tq():
    """A local Ray cluster with TransferQueue, for the whole module; stopped by the fixture."""
    import ray
    import transfer_queue as tq

    cfg = compose("r1reward", "actor_rollout_ref.rollout.n=1")
    # TransferQueue's controller and storage unit each take a logical CPU
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        tq.init(OmegaConf.merge(cfg.transfer_queue, {"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
        try:
            yield tq
        finally:
            tq.close()
    finally:
        ray.shutdown()


def put_batch(tq, scores, infos, length=4):
    """Trajectories as verl's agent loop stores them in TransferQueue (list_of_dict_to_tensordict), each with
    its reward_extra_info; ``scores[i]`` is the reward at the last response token. Returns (batch, keys)."""
    n = len(infos)
    mask = torch.ones(n, length, dtype=torch.long)
    nested_mask = torch.nested.as_nested_tensor(list(mask), layout=torch.jagged)
    rm_scores = torch.zeros(n, length)
    rm_scores[:, -1] = torch.as_tensor(scores, dtype=torch.float32)
    keys = [f"b{next(_BATCHES)}_sample{i}" for i in range(n)]
    rows = [{"response_mask": mask[i], "rm_scores": rm_scores[i], "uid": torch.tensor(i),
             "extra_fields": {"reward_extra_info": infos[i]}} for i in range(n)]  # fmt: skip
    fields = list_of_dict_to_tensordict(rows)
    fields["response_mask"] = nested_mask
    fields["rm_scores"] = response_to_nested(rm_scores, nested_mask)
    return tq.kv_batch_put(keys=keys, partition_id="train", fields=fields), keys


def new_trainer(cfg):
    trainer_cls = get_trainer_cls(cfg.trainer.v1.trainer_mode)
    trainer = trainer_cls.__new__(trainer_cls)  # only the config is needed by _compute_advantage
    trainer.config = cfg
    return trainer


@pytest.mark.timeout(600)
def test_step_metrics_include_filter_statistics(live_tq):
    tq = live_tq
    cfg = compose("r1reward", "actor_rollout_ref.rollout.n=1")
    assert get_trainer_cls(cfg.trainer.v1.trainer_mode).__name__ == "R1RewardTrainerSync"
    n = 256
    # R1-Reward §3.3: 255 rewards of 1 and one of 0; 4 referee failures among 255 asked
    infos = [{"format": 1.0, "result": float(i < 255), "consistency": float(i < 200), "pred": 1,
              "referee_asked": i < 255, "referee_ok": (i < 251) if i < 255 else None,
              "referee_verdict": ("CONSISTENT" if i < 200 else "INCONSISTENT") if i < 251 else None,
              "referee_attempts": 1 if i < 251 else 4, "referee_error": "timeout" if 251 <= i < 255 else None,
              "referee_mode": "hosted"} for i in range(n)]  # fmt: skip
    batch, keys = put_batch(tq, [float(i < 255) for i in range(n)], infos)
    metrics = {}
    new_trainer(cfg)._compute_advantage(batch, metrics=metrics)
    adv = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])["advantages"]

    assert metrics["adv_filter/filtered_sequences"] == 1
    assert metrics["adv_filter/filtered_frac"] == pytest.approx(1 / 256)
    assert metrics["adv_filter/z_min"] == pytest.approx(-15.96, abs=0.01)
    assert adv[255].abs().sum().item() == 0
    assert (adv[0] > 0).all()
    # the reward's own statistics reach the step too
    assert metrics["referee/asked"] == 255 and metrics["referee/failed"] == 4
    assert metrics["referee/error/timeout"] == 4
    assert metrics["referee/failed_frac"] == pytest.approx(4 / 255)
    assert metrics["referee/inconsistent_frac"] == pytest.approx(51 / 251)
    assert metrics["reward/result_mean"] == pytest.approx(255 / 256)
    assert metrics["reward/consistency_mean"] == pytest.approx(200 / 256)


def step_infos(n_right, n_wrong, n_failed, error="timeout", mode="hosted"):
    """One step: ``n_right`` right answers (the referee is asked for each; the first ``n_failed`` fail after
    all retries) and ``n_wrong`` wrong ones (the referee is not asked)."""
    infos = []
    for i in range(n_right):
        ok = i >= n_failed
        infos.append({"format": 1.0, "result": 1.0, "consistency": 1.0 if ok else 0.0, "pred": 1, "referee_mode": mode,
                      "referee_asked": True, "referee_ok": ok, "referee_verdict": "CONSISTENT" if ok else None,
                      "referee_attempts": 1 if ok else 4, "referee_error": None if ok else error})  # fmt: skip
    for _ in range(n_wrong):
        infos.append({"format": 1.0, "result": 0.0, "consistency": 0.0, "pred": 2, "referee_mode": mode,
                      "referee_asked": False, "referee_ok": None, "referee_verdict": None, "referee_attempts": 0,
                      "referee_error": None})  # fmt: skip
    return infos


def run_steps(tq, trainer, steps):
    """Each step through verl's _compute_advantage, as the trainer runs it once per training step."""
    all_metrics = []
    for step, infos in enumerate(steps, start=getattr(trainer, "global_steps", 0) + 1):
        trainer.global_steps = step
        batch, _ = put_batch(tq, [i["result"] + 0.5 * i["consistency"] for i in infos], infos)
        metrics = {}
        trainer._compute_advantage(batch, metrics=metrics)
        all_metrics.append(metrics)
    return all_metrics


@pytest.mark.timeout(600)
def test_a_dead_hosted_referee_stops_the_run_with_its_causes(live_tq):
    cfg = compose("r1reward", "actor_rollout_ref.rollout.n=1")
    assert cfg.reward.custom_reward_function.reward_kwargs.referee_fail_fast_steps == 2
    trainer = new_trainer(cfg)
    # step 1 alone does not stop the run; the second step of all-failed requests does
    (first,) = run_steps(live_tq, trainer, [step_infos(6, 2, 6)])
    assert first["referee/asked"] == first["referee/failed"] == 6
    with pytest.raises(RuntimeError) as e:
        run_steps(live_tq, trainer, [step_infos(5, 3, 5)])
    msg = str(e.value)
    # names the referee and the likely causes
    for part in ("referee", "mode=hosted", "model=Qwen/Qwen2.5-VL-7B-Instruct", "free_cache_engine", "asleep",
                 "timeout=11", "referee_timeout", "URL", "model name", "referee_fail_fast_steps"):  # fmt: skip
        assert part in msg, (part, msg)


@pytest.mark.timeout(600)
def test_a_dead_endpoint_referee_names_its_url(live_tq):
    url = "http://127.0.0.1:9/v1"
    cfg = compose("r1reward", "actor_rollout_ref.rollout.n=1", "referee=endpoint",
                  f"reward.custom_reward_function.reward_kwargs.referee_base_url={url}",
                  "reward.custom_reward_function.reward_kwargs.referee_fail_fast_steps=3")  # fmt: skip
    trainer = new_trainer(cfg)
    steps = [step_infos(4, 4, 4, error="connection", mode="endpoint")] * 2
    run_steps(live_tq, trainer, steps)  # 2 of 3 steps: still running
    with pytest.raises(RuntimeError) as e:
        run_steps(live_tq, trainer, [step_infos(4, 4, 4, error="connection", mode="endpoint")])
    msg = str(e.value)
    assert "mode=endpoint" in msg and url in msg and "connection=12" in msg, msg


@pytest.mark.timeout(600)
def test_a_working_or_unasked_or_disarmed_referee_never_stops_the_run(live_tq):
    cfg = compose("r1reward", "actor_rollout_ref.rollout.n=1")
    # a referee that answers some requests: partly failing steps, then (it works) later outages are only counted
    partly = run_steps(live_tq, new_trainer(cfg), [step_infos(6, 2, 3), step_infos(6, 2, 5), step_infos(6, 2, 6),
                                                   step_infos(6, 2, 6), step_infos(6, 2, 6)])  # fmt: skip
    assert [m["referee/failed"] for m in partly] == [3, 5, 6, 6, 6]
    # one working step first, then all failed: no stop either
    run_steps(live_tq, new_trainer(cfg), [step_infos(4, 4, 0), step_infos(4, 4, 4), step_infos(4, 4, 4)])
    # the referee never asked (no right answer yet): no evidence, no stop
    unasked = run_steps(live_tq, new_trainer(cfg), [step_infos(0, 8, 0)] * 3)
    assert all(m["referee/asked"] == 0 for m in unasked)
    # the check turned off
    for off in ("0", "null"):
        cfg_off = compose("r1reward", "actor_rollout_ref.rollout.n=1",
                          f"reward.custom_reward_function.reward_kwargs.referee_fail_fast_steps={off}")  # fmt: skip
        run_steps(live_tq, new_trainer(cfg_off), [step_infos(4, 4, 4)] * 3)
