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


# ------------------------------------------------------------------------- group / knockout: the reward manager

GROUP = ["A long answer: the square in the image is red.", "A shorter one: it is red.", "It is red.", "Red."]


def _group_config(tiny_model_dir, mode="group", n=4, workers=1, **kwargs):
    config = _config(tiny_model_dir, judge_mode=mode, **kwargs)
    with open_dict(config):
        config.reward.reward_manager.name = "pairwise_group"
        config.reward.num_workers = workers
        config.actor_rollout_ref.rollout.n = n
    return config


def _group_items(tiny_model_dir, texts, uid="u0", prompt_image=None):
    import numpy as np
    from verl.utils import hf_tokenizer

    tok = hf_tokenizer(tiny_model_dir)
    out = []
    for i, text in enumerate(texts):
        item = agent_loop_item(tok, text, ground_truth="unused", index=0)
        item.non_tensor_batch["uid"] = np.array([uid], dtype=object)  # what verl's agent loop passes
        item.non_tensor_batch["session_id"] = np.array([i])
        if prompt_image is not None:  # a policy prompt as verl's RLHFDataset builds raw_prompt: PIL image parts
            raw = [{"role": "user", "content": [{"type": "image", "image": prompt_image},
                                                {"type": "text", "text": "What colour is the square?"}]}]  # fmt: skip
            item.non_tensor_batch["raw_prompt"][0] = raw
        out.append(item)
    return out


def test_group_round_robin_longer_judge_exact_ranking(tiny_model_dir):
    """n = 4 rollouts of one prompt: the judge prefers the longer answer, so the win rates are known."""
    from r1reward_verl.pairwise import expected_calls
    from r1reward_verl.reward.metrics import genrm_step_metrics

    with scripted_judge("longer") as srv:
        config = _group_config(tiny_model_dir, judge_base_url=srv.url)
        outs = _run_worker(config, None, _group_items(tiny_model_dir, GROUP))
        requests = srv.stats["requests"]
    assert [o["reward_score"] for o in outs] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    assert requests == expected_calls(4, "round_robin") == 4 * 3  # n(n-1) with both orders
    infos = [o["reward_extra_info"] for o in outs]
    assert sum(i["pairwise_calls"] for i in infos) == 12 and all(i["pairwise_group_size"] == 4 for i in infos)
    m = genrm_step_metrics(infos)
    assert m["genrm/calls"] == 12 and m["genrm/position_agreement"] == 1.0 and m["genrm/unparsable_frac"] == 0.0
    assert m["genrm/partial_rollouts"] == 0 and m["genrm/score_mean"] == pytest.approx(0.5)


def test_knockout_longer_judge_champion_and_calls(tiny_model_dir):
    from r1reward_verl.pairwise import expected_calls

    with scripted_judge("longer") as srv:
        config = _group_config(tiny_model_dir, mode="knockout", judge_base_url=srv.url)
        outs = _run_worker(config, None, _group_items(tiny_model_dir, GROUP))
        requests = srv.stats["requests"]
    scores = [o["reward_score"] for o in outs]
    # the longest wins every match; who meets whom depends on the arrival order (the bracket's seeding)
    assert scores[0] == 1.0 and sorted(scores) == [0.0, 0.0, 0.5, 1.0]
    assert requests == expected_calls(4, "knockout") == 2 * (4 - 1)


def test_group_position_biased_judge_gives_everyone_the_same(tiny_model_dir):
    with scripted_judge("first") as srv:
        config = _group_config(tiny_model_dir, judge_base_url=srv.url)
        outs = _run_worker(config, None, _group_items(tiny_model_dir, GROUP))
    assert [o["reward_score"] for o in outs] == [0.5] * 4
    assert sum(o["reward_extra_info"]["pairwise_position_agreement"] for o in outs) == 0


def test_two_groups_at_once_are_judged_apart(tiny_model_dir):
    """Rollouts of two prompts arrive interleaved, as from verl's concurrent agent loops."""
    with scripted_judge("longer") as srv:
        config = _group_config(tiny_model_dir, n=2, judge_base_url=srv.url)
        a = _group_items(tiny_model_dir, ["Red.", "It is red, clearly."], uid="a")
        b = _group_items(tiny_model_dir, ["It is a red square.", "Red!"], uid="b")
        outs = _run_worker(config, None, [a[0], b[0], a[1], b[1]])
        requests = srv.stats["requests"]
    assert [o["reward_score"] for o in outs] == [0.0, 1.0, 1.0, 0.0] and requests == 2 * 2


def test_half_failing_judge_is_counted_and_the_step_goes_on(tiny_model_dir):
    with scripted_judge("flaky") as srv:
        config = _group_config(tiny_model_dir, n=3, judge_base_url=srv.url, judge_max_retries=0)
        outs = _run_worker(config, None, _group_items(tiny_model_dir, GROUP[:3]))
        requests = srv.stats["requests"]
    infos = [o["reward_extra_info"] for o in outs]
    failed = sum(i["pairwise_failed_calls"] for i in infos)
    assert requests == 6 and failed == 3  # every odd request fails, none retried
    assert all(0.0 <= o["reward_score"] <= 1.0 for o in outs) and infos[0]["pairwise_error"]
    # which calls fail depends on arrival order; a failed call counts 1/2, so the 3 comparisons still share 3 wins
    assert sum(o["reward_score"] for o in outs) * (3 - 1) == pytest.approx(3.0)


def test_group_that_does_not_fill_is_judged_after_the_wait(tiny_model_dir):
    with scripted_judge("longer") as srv:
        config = _group_config(tiny_model_dir, n=4, judge_base_url=srv.url, group_wait_s=0.5)
        outs = _run_worker(config, None, _group_items(tiny_model_dir, GROUP[:3]))
        lone = _run_worker(config, None, _group_items(tiny_model_dir, GROUP[:1], uid="alone"))
    assert [o["reward_score"] for o in outs] == pytest.approx([1.0, 0.5, 0.0])
    assert all(o["reward_extra_info"]["pairwise_partial"] == 1 for o in outs)
    assert lone[0]["reward_score"] == 0.5 and lone[0]["reward_extra_info"]["pairwise_calls"] == 0


def test_empty_rollout_is_not_judged(tiny_model_dir):
    with scripted_judge("longer") as srv:
        config = _group_config(tiny_model_dir, n=3, judge_base_url=srv.url, empty_score=-1.0)
        outs = _run_worker(config, None, _group_items(tiny_model_dir, ["", GROUP[0], GROUP[3]]))
        requests = srv.stats["requests"]
    assert [o["reward_score"] for o in outs] == [-1.0, 1.0, 0.0] and requests == 2


def test_group_mode_refuses_several_reward_workers(tiny_model_dir):
    config = _group_config(tiny_model_dir, workers=2, judge_base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="reward.num_workers=1"):
        _run_worker(config, None, [])


def test_group_mode_through_the_reward_function_alone_says_what_to_set(tiny_model_dir):
    config = _config(tiny_model_dir, judge_mode="group", judge_base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="reward.reward_manager.name=pairwise_group"):
        _run_worker(config, None, _group_items(tiny_model_dir, GROUP[:1]))


def test_prompt_parts_reads_verls_raw_prompt():
    import io

    from PIL import Image

    from r1reward_verl.reward.group_manager import prompt_parts

    im = Image.new("RGB", (28, 28), (0, 0, 255))
    raw = [{"role": "system", "content": "Be brief."},
           {"role": "user", "content": [{"type": "image", "image": im}, {"type": "text", "text": "What colour?"},
                                        {"type": "image", "bytes": b"\x89PNG raw"}]}]  # fmt: skip
    text, images = prompt_parts(raw)
    assert text == "What colour?" and len(images) == 2 and images[1] == b"\x89PNG raw"
    assert Image.open(io.BytesIO(images[0])).getpixel((3, 3)) == (0, 0, 255)
    assert prompt_parts([{"role": "user", "content": "<image>Which is right?"}]) == ("Which is right?", [])


def test_hosted_tiny_qwen25vl_judges_a_group_with_its_image(tiny_model_dir):
    """The tiny Qwen2.5-VL as the judge behind verl's router address, shown the policy prompt's image."""
    import json
    import urllib.request

    from PIL import Image

    from tests.servers import running_server

    image = Image.new("RGB", (56, 56), (215, 35, 35))
    with running_server("tiny", "--model", tiny_model_dir) as addr:
        config = _group_config(tiny_model_dir, n=3, judge="hosted", judge_max_tokens=16)
        outs = _run_worker(config, addr, _group_items(tiny_model_dir, GROUP[:3], prompt_image=image))
        with urllib.request.urlopen(f"http://{addr}/stats", timeout=5) as r:
            stats = json.load(r)
    infos = [o["reward_extra_info"] for o in outs]
    assert stats["requests"] == 6 and stats["images"] == 6  # n(n-1) calls, each with the image
    assert sum(i["pairwise_calls"] for i in infos) == 6 and sum(i["pairwise_failed_calls"] for i in infos) == 0
    # a random model rarely writes the strict format: unparsable verdicts count 1/2, and are counted
    assert sum(o["reward_score"] for o in outs) == pytest.approx(1.5)
    assert sum(i["pairwise_unparsable"] for i in infos) <= 6
