"""``reward_fns/pairwise_genrm.py`` (mode ``reference``) through verl's own ``RewardLoopWorker`` and its reward
manager's ``run_single``, on ``DataProto`` items built like the agent loop's, against live scripted judges."""

import pytest
from omegaconf import open_dict

from tests.pairwise_judges import scripted_judge
from tests.servers import closed_port
from tests.test_reward_loop import _run_worker, agent_loop_item

REFERENCE = "It is a red square."
ROLLOUTS = {"longer": "The square in the image is clearly red.", "shorter": "Red.", "empty": ""}


def _config(tiny_model_dir, **kwargs):
    from tests.conftest import compose

    config = compose("r1reward", f"actor_rollout_ref.model.path={tiny_model_dir}", "referee=off",
                     "reward.custom_reward_function.path=pkg://reward_fns.pairwise_genrm")  # fmt: skip
    with open_dict(config):
        config.reward.custom_reward_function.reward_kwargs = {"judge_backoff": 0.01, "judge_timeout": 10, **kwargs}
    return config


def _items(tiny_model_dir, reference_in="ground_truth"):
    from verl.utils import hf_tokenizer

    tok = hf_tokenizer(tiny_model_dir)
    items = {}
    for i, (name, text) in enumerate(ROLLOUTS.items()):
        gt = REFERENCE if reference_in == "ground_truth" else "unused"
        item = agent_loop_item(tok, text, ground_truth=gt, index=i)
        if reference_in == "extra_info":
            item.non_tensor_batch["extra_info"][0]["reference"] = REFERENCE
        items[name] = item
    return items


@pytest.mark.parametrize("reference_in", ["ground_truth", "extra_info"])
def test_reference_mode_longer_judge(tiny_model_dir, reference_in):
    with scripted_judge("longer") as srv:
        config = _config(tiny_model_dir, judge="endpoint", judge_base_url=srv.url, judge_model="judge")
        items = _items(tiny_model_dir, reference_in)
        outs = dict(zip(items, _run_worker(config, None, list(items.values()))))
        texts = list(srv.stats["texts"])
    assert {k: v["reward_score"] for k, v in outs.items()} == {"longer": 1.0, "shorter": 0.0, "empty": 0.0}
    info = outs["longer"]["reward_extra_info"]
    assert info["pairwise_calls"] == 2 and info["pairwise_position_agreement"] == 1 and info["pairwise_error"] is None
    assert outs["empty"]["reward_extra_info"]["pairwise_calls"] == 0  # an empty rollout is not sent
    assert srv.stats["requests"] == 4 and all(REFERENCE in t and "What colour is the square?" in t for t in texts)


def test_reference_mode_position_biased_judge_gives_half(tiny_model_dir):
    with scripted_judge("first") as srv:
        config = _config(tiny_model_dir, judge_base_url=srv.url, judge_k=3)
        items = _items(tiny_model_dir)
        outs = dict(zip(items, _run_worker(config, None, [items["longer"], items["shorter"]])))
    assert [v["reward_score"] for v in outs.values()] == [0.5, 0.5]
    assert srv.stats["requests"] == 4 and set(srv.stats["ns"]) == {3}


def test_reference_mode_dead_judge_never_fails_the_batch(tiny_model_dir):
    config = _config(tiny_model_dir, judge_base_url=f"http://127.0.0.1:{closed_port()}/v1", judge_max_retries=1)
    items = _items(tiny_model_dir)
    outs = _run_worker(config, None, [items["longer"], items["shorter"]])
    for o in outs:
        info = o["reward_extra_info"]
        assert o["reward_score"] == 0.5 and info["pairwise_failed_calls"] == 2 and info["pairwise_attempts"] == 4
        assert info["pairwise_error"] == "connection"


def test_reference_mode_hosted_router_address(tiny_model_dir):
    """verl passes reward_router_address (host:port) when it hosts the judge; the function posts to it."""
    with scripted_judge("longer") as srv:
        config = _config(tiny_model_dir, judge="hosted")
        items = _items(tiny_model_dir)
        address = srv.url.removeprefix("http://").removesuffix("/v1")
        outs = _run_worker(config, address, [items["longer"], items["shorter"]])
    assert [o["reward_score"] for o in outs] == [1.0, 0.0] and srv.stats["requests"] == 4
