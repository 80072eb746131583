"""The reward end to end through verl's reward loop, against live referee servers on 127.0.0.1.

Uses verl's own ``RewardLoopWorker`` (the class verl runs as a Ray actor) and its reward manager's
``run_single``, on ``DataProto`` items built the way verl's agent loop builds them.
"""

import pytest
from verl import DataProto
from verl.utils import hf_tokenizer

from tests.conftest import compose
from tests.support.servers import closed_port, held_referee, running_server
from tests.support.reward_loop import agent_loop_item, run_worker

RESPONSES = {
    "consistent": "<think>Response 2 is vague, Response 1 is better.</think><answer>1</answer>",
    "inconsistent": "<think>Response 1 is vague, Response 2 is better.</think><answer>1</answer>",
    "wrong": "<think>Response 2 is better.</think><answer>2</answer>",
    "unformatted": "Response 1. <answer>1</answer>",
}


def _items(tiny_model_dir):
    tok = hf_tokenizer(tiny_model_dir)
    return {name: agent_loop_item(tok, text, index=i) for i, (name, text) in enumerate(RESPONSES.items())}


FAST = ("reward.custom_reward_function.reward_kwargs.referee_backoff=0.01",
        "reward.custom_reward_function.reward_kwargs.referee_timeout=5")  # fmt: skip


def test_endpoint_mode_with_scripted_referee(tiny_model_dir):
    with running_server("scripted", "--behaviour", "rule") as addr:
        config = compose("r1reward", f"actor_rollout_ref.model.path={tiny_model_dir}", *FAST, "referee=endpoint",
                         f"reward.custom_reward_function.reward_kwargs.referee_base_url=http://{addr}/v1")  # fmt: skip
        items = _items(tiny_model_dir)
        outs = dict(zip(items, run_worker(config, None, list(items.values()))))
    score = {k: v["reward_score"] for k, v in outs.items()}
    # "unformatted": no format reward, but its reasoning ("Response 1.") agrees with its right answer
    assert score == {"consistent": 2.0, "inconsistent": 1.5, "wrong": 0.5, "unformatted": 1.5}
    info = outs["consistent"]["reward_extra_info"]
    assert info["referee_mode"] == "endpoint" and info["referee_ok"] is True and info["pred"] == 1
    assert outs["wrong"]["reward_extra_info"]["referee_asked"] is False


def test_hosted_mode_with_live_tiny_qwen25vl_referee(tiny_model_dir):
    """verl passes reward_router_address and the referee's tokenizer; our function posts to the router."""
    with running_server("tiny", "--model", tiny_model_dir) as addr:
        config = compose("r1reward", f"actor_rollout_ref.model.path={tiny_model_dir}", *FAST, "referee=hosted",
                         f"reward.reward_model.model_path={tiny_model_dir}")  # fmt: skip
        items = _items(tiny_model_dir)
        outs = dict(zip(items, run_worker(config, addr, list(items.values()))))
    for name in ("consistent", "inconsistent"):
        info = outs[name]["reward_extra_info"]
        # the tiny model is random, but constrained decoding (structured_outputs.choice) makes its reply a verdict
        assert info["referee_mode"] == "hosted" and info["referee_ok"] is True
        assert info["referee_verdict"] in ("CONSISTENT", "INCONSISTENT", "UNCLEAR")
        expected = 1.5 + 0.5 * {"CONSISTENT": 1.0, "INCONSISTENT": 0.0, "UNCLEAR": 0.0}[info["referee_verdict"]]
        assert outs[name]["reward_score"] == expected
    assert outs["wrong"]["reward_score"] == 0.5


@pytest.mark.parametrize("behaviour", ["fail500", "non_json", "slow", "closed"])
def test_referee_faults_never_fail_the_batch(tiny_model_dir, behaviour):
    """``slow``: a referee that holds every request and never answers, so each attempt's time-out (0.2 s) must
    fire, however fast or slow the machine is; ``closed``: nothing listens on the port."""
    items = _items(tiny_model_dir)
    kw = "reward.custom_reward_function.reward_kwargs."
    retries = (f"{kw}referee_max_retries=1",) + ((f"{kw}referee_timeout=0.2",) if behaviour == "slow" else ())

    def run(url):
        config = compose("r1reward", f"actor_rollout_ref.model.path={tiny_model_dir}", *FAST, *retries,
                         "referee=endpoint", f"{kw}referee_base_url={url}")  # fmt: skip
        return dict(zip(items, run_worker(config, None, list(items.values()))))

    if behaviour == "closed":
        outs = run(f"http://127.0.0.1:{closed_port()}/v1")
    elif behaviour == "slow":
        with held_referee() as srv:  # never released
            outs = run(f"http://{srv.addr}/v1")
    else:
        with running_server("scripted", "--behaviour", behaviour) as addr:
            outs = run(f"http://{addr}/v1")
    asked = [k for k, v in outs.items() if v["reward_extra_info"]["referee_asked"]]
    assert sorted(asked) == ["consistent", "inconsistent", "unformatted"]
    expected_error = {"fail500": "http_5xx", "non_json": "bad_body", "slow": "timeout", "closed": "connection"}[behaviour]
    for k in asked:
        info = outs[k]["reward_extra_info"]
        assert info["referee_ok"] is False and info["referee_attempts"] == 2 and info["consistency"] == 0.0
        assert info["referee_error"] == expected_error
    assert {k: v["reward_score"] for k, v in outs.items()} == {
        "consistent": 1.5, "inconsistent": 1.5, "wrong": 0.5, "unformatted": 1.0}  # fmt: skip


def test_colocated_reward_input_lacks_dataset_fields(tiny_model_dir):
    """verl 0.9.1's colocated path (PPOTrainer._compute_reward_colocate) sends only prompts, responses,
    attention_mask and raw_prompt: no data_source, ground truth or extra_info. A custom reward function
    cannot score that, hence the standalone resource pool (enable_resource_pool=True) is the supported setting."""
    item = _items(tiny_model_dir)["consistent"]
    colocated = DataProto(
        batch=item.batch.select("prompts", "responses", "attention_mask"),
        non_tensor_batch={"raw_prompt": item.non_tensor_batch["raw_prompt"]},
    )
    config = compose("r1reward", f"actor_rollout_ref.model.path={tiny_model_dir}", "referee=off")
    with pytest.raises(KeyError, match="data_source"):
        run_worker(config, None, [colocated])
