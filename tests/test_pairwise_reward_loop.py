"""``reward_fns/pairwise_genrm.py`` (mode ``reference``) through verl's own ``RewardLoopWorker`` and its reward
manager's ``run_single``, on ``DataProto`` items built like the agent loop's, against live scripted judges."""

import asyncio
from types import SimpleNamespace

import pytest
from omegaconf import open_dict

from tests.support.judges import scripted_judge
from tests.support.servers import closed_port
from tests.support.reward_loop import agent_loop_item, run_worker

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
        outs = dict(zip(items, run_worker(config, None, list(items.values()))))
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
        outs = dict(zip(items, run_worker(config, None, [items["longer"], items["shorter"]])))
    assert [v["reward_score"] for v in outs.values()] == [0.5, 0.5]
    assert srv.stats["requests"] == 4 and set(srv.stats["ns"]) == {3}


def test_reference_mode_dead_judge_never_fails_the_batch(tiny_model_dir):
    config = _config(tiny_model_dir, judge_base_url=f"http://127.0.0.1:{closed_port()}/v1", judge_max_retries=1)
    items = _items(tiny_model_dir)
    outs = run_worker(config, None, [items["longer"], items["shorter"]])
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
        outs = run_worker(config, address, [items["longer"], items["shorter"]])
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
    from r1reward_verl.judge.core import expected_calls
    from r1reward_verl.reward.step_metrics import genrm_step_metrics

    with scripted_judge("longer") as srv:
        config = _group_config(tiny_model_dir, judge_base_url=srv.url)
        outs = run_worker(config, None, _group_items(tiny_model_dir, GROUP))
        requests = srv.stats["requests"]
    assert [o["reward_score"] for o in outs] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    assert requests == expected_calls(4, "round_robin") == 4 * 3  # n(n-1) with both orders
    infos = [o["reward_extra_info"] for o in outs]
    assert sum(i["pairwise_calls"] for i in infos) == 12 and all(i["pairwise_group_size"] == 4 for i in infos)
    m = genrm_step_metrics(infos)
    assert m["genrm/calls"] == 12 and m["genrm/position_agreement"] == 1.0 and m["genrm/unparsable_frac"] == 0.0
    assert m["genrm/partial_rollouts"] == 0 and m["genrm/score_mean"] == pytest.approx(0.5)


def test_knockout_longer_judge_champion_and_calls(tiny_model_dir):
    from r1reward_verl.judge.core import expected_calls

    with scripted_judge("longer") as srv:
        config = _group_config(tiny_model_dir, mode="knockout", judge_base_url=srv.url)
        outs = run_worker(config, None, _group_items(tiny_model_dir, GROUP))
        requests = srv.stats["requests"]
    scores = [o["reward_score"] for o in outs]
    # the longest wins every match; who meets whom depends on the arrival order (the bracket's seeding)
    assert scores[0] == 1.0 and sorted(scores) == [0.0, 0.0, 0.5, 1.0]
    assert requests == expected_calls(4, "knockout") == 2 * (4 - 1)


def test_group_position_biased_judge_gives_everyone_the_same(tiny_model_dir):
    with scripted_judge("first") as srv:
        config = _group_config(tiny_model_dir, judge_base_url=srv.url)
        outs = run_worker(config, None, _group_items(tiny_model_dir, GROUP))
    assert [o["reward_score"] for o in outs] == [0.5] * 4
    assert sum(o["reward_extra_info"]["pairwise_position_agreement"] for o in outs) == 0


def test_two_groups_at_once_are_judged_apart(tiny_model_dir):
    """Rollouts of two prompts arrive interleaved, as from verl's concurrent agent loops."""
    with scripted_judge("longer") as srv:
        config = _group_config(tiny_model_dir, n=2, judge_base_url=srv.url)
        a = _group_items(tiny_model_dir, ["Red.", "It is red, clearly."], uid="a")
        b = _group_items(tiny_model_dir, ["It is a red square.", "Red!"], uid="b")
        outs = run_worker(config, None, [a[0], b[0], a[1], b[1]])
        requests = srv.stats["requests"]
    assert [o["reward_score"] for o in outs] == [0.0, 1.0, 1.0, 0.0] and requests == 2 * 2


def test_half_failing_judge_is_counted_and_the_step_goes_on(tiny_model_dir):
    """A judge that fails (HTTP 500, not retried) every call whose Response 1 is the shorter answer: half of the 6
    calls, one order of each comparison, chosen by content (not by arrival order). The other order is the longer
    judge's verdict, so each comparison is (1 + 1/2) / 2 = 3/4 for the longer answer. Dropped failures would give
    1, 1/2, 0; failures counted as wins of the answer shown first (or as losses) would give 1/2 each."""
    fails = lambda r1, r2: len(r1) < len(r2)  # noqa: E731
    with scripted_judge("longer", fail_if=fails) as srv:
        config = _group_config(tiny_model_dir, n=3, judge_base_url=srv.url, judge_max_retries=0)
        outs = run_worker(config, None, _group_items(tiny_model_dir, GROUP[:3]))
        requests = srv.stats["requests"]
    infos = [o["reward_extra_info"] for o in outs]
    assert [o["reward_score"] for o in outs] == pytest.approx([0.75, 0.5, 0.25])
    assert requests == 6  # n(n-1), none retried
    total = {k: sum(i[f"pairwise_{k}"] for i in infos) for k in ("calls", "attempts", "failed_calls", "unparsable",
                                                                 "comparisons", "position_agreement")}  # fmt: skip
    # a failed call is a failure (and its output unparsable), never a verdict: no comparison agrees in both orders
    assert total == {"calls": 6, "attempts": 6, "failed_calls": 3, "unparsable": 3, "comparisons": 3,
                     "position_agreement": 0}  # fmt: skip
    assert sorted(i["pairwise_error"] or "" for i in infos) == ["", "", "http_5xx"]  # on the group's first rollout


def _run_with_the_group_timer_held(config, items):
    """``_run_worker``, but the group manager's wait (``loop.call_later(group_wait_s, manager._close, uid)``) is
    held by the test: it fires only once every item has joined its group, never by the clock. Returns (the
    outputs, {uid: the delay the manager asked for}, {uid: rollouts waiting in the group when it fired},
    whether any rollout had an answer before)."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    async def go():
        worker = RewardLoopWorker(config, None)
        manager, loop = worker.reward_manager, asyncio.get_running_loop()
        timers, real_call_later = {}, loop.call_later

        def call_later(delay, callback, *args, **kwargs):
            if callback == manager._close:
                timers[args[0]] = (delay, callback, args)
                return SimpleNamespace(cancel=lambda: None)
            return real_call_later(delay, callback, *args, **kwargs)

        joined, all_joined, real_join = [], asyncio.Event(), manager._join

        async def join(uid, *args, **kwargs):
            parked = real_join(uid, *args, **kwargs)
            joined.append(uid)
            if len(joined) == len(items):
                all_joined.set()  # wakes the test only after this step, which parks the rollout (up to its await)
            return await parked

        loop.call_later, manager._join = call_later, join
        tasks = [asyncio.ensure_future(worker.compute_score(item)) for item in items]
        await all_joined.wait()
        waiting = {uid: len(g.responses) for uid, g in manager.groups.items()}
        early = any(t.done() for t in tasks)
        for _delay, callback, args in timers.values():  # the wait is over: what the timer would have run
            loop.call_soon(callback, *args)
        outs = await asyncio.gather(*tasks)
        return outs, {uid: t[0] for uid, t in timers.items()}, waiting, early

    return asyncio.run(go())


def test_group_that_does_not_fill_is_judged_after_the_wait(tiny_model_dir):
    """n = 4 and 3 rollouts come: they wait (unjudged) for the 4th until group_wait_s after the first, then are
    judged as a partial group; a lone rollout gets single_score. The timer is the test's (no clock)."""
    with scripted_judge("longer") as srv:
        config = _group_config(tiny_model_dir, n=4, judge_base_url=srv.url, group_wait_s=7.5)
        outs, delays, waiting, early = _run_with_the_group_timer_held(config, _group_items(tiny_model_dir, GROUP[:3]))
        # one timer, of group_wait_s; when it fired the 3 still waited in their group, unjudged and unanswered
        assert (delays, waiting, early) == ({"u0": 7.5}, {"u0": 3}, False)
        requests = srv.stats["requests"]
        lone, delays, waiting, early = _run_with_the_group_timer_held(config, _group_items(tiny_model_dir, GROUP[:1],
                                                                                           uid="alone"))  # fmt: skip
        assert (delays, waiting, early) == ({"alone": 7.5}, {"alone": 1}, False)
        assert srv.stats["requests"] == requests  # a lone rollout is not judged
    assert [o["reward_score"] for o in outs] == pytest.approx([1.0, 0.5, 0.0])
    assert all(o["reward_extra_info"]["pairwise_partial"] == 1 and o["reward_extra_info"]["pairwise_group_size"] == 3
               for o in outs)  # fmt: skip
    assert sum(o["reward_extra_info"]["pairwise_calls"] for o in outs) == 6 and requests == 6
    assert lone[0]["reward_score"] == 0.5 and lone[0]["reward_extra_info"]["pairwise_calls"] == 0
    assert lone[0]["reward_extra_info"]["pairwise_partial"] == 1


def test_empty_rollout_is_not_judged(tiny_model_dir):
    with scripted_judge("longer") as srv:
        config = _group_config(tiny_model_dir, n=3, judge_base_url=srv.url, empty_score=-1.0)
        outs = run_worker(config, None, _group_items(tiny_model_dir, ["", GROUP[0], GROUP[3]]))
        requests = srv.stats["requests"]
    assert [o["reward_score"] for o in outs] == [-1.0, 1.0, 0.0] and requests == 2


def test_group_mode_refuses_several_reward_workers(tiny_model_dir):
    config = _group_config(tiny_model_dir, workers=2, judge_base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="reward.num_workers=1"):
        run_worker(config, None, [])


def test_group_mode_through_the_reward_function_alone_says_what_to_set(tiny_model_dir):
    config = _config(tiny_model_dir, judge_mode="group", judge_base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="reward.reward_manager.name=pairwise_group"):
        run_worker(config, None, _group_items(tiny_model_dir, GROUP[:1]))


def test_prompt_parts_reads_verls_raw_prompt():
    import io

    from PIL import Image

    from r1reward_verl.judge.group_manager import prompt_parts

    im = Image.new("RGB", (28, 28), (0, 0, 255))
    raw = [{"role": "system", "content": "Be brief."},
           {"role": "user", "content": [{"type": "image", "image": im}, {"type": "text", "text": "What colour?"},
                                        {"type": "image", "bytes": b"\x89PNG raw"}]}]  # fmt: skip
    text, images = prompt_parts(raw)
    assert text == "What colour?" and len(images) == 2 and images[1] == b"\x89PNG raw"
    assert Image.open(io.BytesIO(images[0])).getpixel((3, 3)) == (0, 0, 255)
    assert prompt_parts([{"role": "user", "content": "<image>Which is right?"}]) == ("Which is right?", [])


# the scoring judge's words (tests/pairwise_judges.build_scoring_judge_model): it prefers the higher-scored word
SCORED = {"red": 0.0, "cat": -0.2, "dog": 0.2, "chart": 0.1}


def test_hosted_tiny_qwen25vl_judges_a_group_with_its_image(tiny_model_dir, tmp_path):
    """A tiny Qwen2.5-VL as the judge behind verl's router address, shown the policy prompt's image: the scoring
    judge, whose weights make its greedy reply prefer the rollout whose word scores higher, in either order. So the
    round robin's scores are known in advance: dog beats both (1), red beats cat (1/2), cat none (0). A verdict
    read for the wrong order, a reply given to the other call or a win credited to the loser moves them."""
    import json
    import urllib.request

    from PIL import Image

    from tests.support.judges import build_scoring_judge_model
    from tests.support.servers import running_server

    judge = build_scoring_judge_model(tmp_path / "judge", SCORED)
    image = Image.new("RGB", (56, 56), (215, 35, 35))
    with running_server("tiny", "--model", str(judge)) as addr:
        config = _group_config(tiny_model_dir, n=3, judge="hosted", judge_max_tokens=16)
        outs = run_worker(config, addr, _group_items(tiny_model_dir, ["red", "dog", "cat"], prompt_image=image))
        with urllib.request.urlopen(f"http://{addr}/stats", timeout=5) as r:
            stats = json.load(r)
    infos = [o["reward_extra_info"] for o in outs]
    assert stats["requests"] == 6 and stats["images"] == 6  # n(n-1) calls, each with the image
    assert [o["reward_score"] for o in outs] == pytest.approx([0.5, 1.0, 0.0])
    total = {k: sum(i[f"pairwise_{k}"] for i in infos) for k in ("calls", "failed_calls", "unparsable", "comparisons",
                                                                 "position_agreement")}  # fmt: skip
    # every reply parses and both orders of every comparison pick the same word
    assert total == {"calls": 6, "failed_calls": 0, "unparsable": 0, "comparisons": 3, "position_agreement": 3}
