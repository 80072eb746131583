"""The shared OpenAI-compatible client (``r1reward_verl.openai_client``): one aiohttp session per event
loop, reused by the referee, the annotator and the evaluation backend, counted at a live scripted
server on 127.0.0.1 (``/stats`` counts the TCP connections the requests came on)."""

import asyncio
import gc
import json
import urllib.request
import warnings

from r1reward_verl.reward.referee import RefereeSettings, ask_referee, build_referee_messages
from tests.support.servers import held_referee, running_server
from tests.support.pairs import rows, write_jsonl


def _stats(addr) -> dict:
    with urllib.request.urlopen(f"http://{addr}/stats") as r:
        return json.loads(r.read())


def test_referee_requests_share_one_session_per_event_loop(monkeypatch):
    """40 referee requests of one worker (one event loop): 20 one after another, then 20 at once under a
    cap of 4. One session keeps its connections: 1 for the serial ones, at most the cap for the rest.
    Nothing here waits on the clock: the referee (a thread of this process) closes no idle connection, and the
    client's idle time-out (KEEPALIVE_S, 4 s) is set beyond the test, so a pause of the machine drops none."""
    from r1reward_verl import openai_client

    monkeypatch.setattr(openai_client, "KEEPALIVE_S", 3600.0)
    with held_referee(hold=False) as srv:
        settings = RefereeSettings(url=RefereeSettings.chat_url(srv.addr), max_concurrency=4)
        msgs = build_referee_messages("Q", "Response 1 is better", 1)

        async def worker():
            serial = [await ask_referee(settings, msgs) for _ in range(20)]
            after_serial = srv.stats["connections"]
            batch = await asyncio.gather(*[ask_referee(settings, msgs) for _ in range(20)])
            return serial + list(batch), after_serial

        results, after_serial = asyncio.run(worker())
        stats = dict(srv.stats)
    assert all(r.ok and r.verdict == "CONSISTENT" and r.attempts == 1 for r in results)
    assert stats["requests"] == 40
    assert after_serial == 1, after_serial  # one connection, kept alive by one session
    assert stats["connections"] <= 4, stats  # never more than the cap: the pool reuses idle connections


def test_session_is_closed_with_its_event_loop_and_a_new_loop_gets_a_new_one():
    from r1reward_verl import openai_client

    async def grab():
        a, b = await openai_client.session(), await openai_client.session()
        assert a is b and not a.closed
        return a

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = asyncio.run(grab())
        second = asyncio.run(grab())
        assert first is not second
        assert first.closed and second.closed  # closed when asyncio.run shut its loop down
        del first, second
        gc.collect()
    assert not [w for w in caught if "nclosed" in str(w.message)], [str(w.message) for w in caught]


def test_annotator_reuses_connections(tmp_path):
    from r1reward_verl.data.annotate import annotate

    src = write_jsonl(tmp_path / "in.jsonl", rows(16, lambda i: 1 + i % 3))  # 1 + 2 + 3 asks per row
    with running_server("scripted", "--behaviour", "annotator") as addr:
        s = asyncio.run(annotate([str(src)], tmp_path / "ann.jsonl", base_url=f"http://{addr}/v1", concurrency=2,
                                 backoff=0.01, progress=False))  # fmt: skip
        stats = _stats(addr)
    assert s["annotated"] == 16 and s["request_failed"] == 0
    assert stats["requests"] == 31 and stats["connections"] <= 2, stats


def test_evaluation_backend_reuses_connections():
    from r1reward_verl.eval.backends import OpenAIBackend, Request

    msgs = [{"role": "user", "content": [{"type": "text", "text": "Which is better?"}]}]
    with running_server("scripted", "--behaviour", "position_biased") as addr:
        backend = OpenAIBackend(f"http://{addr}/v1", "judge", concurrency=3, backoff=0.01)
        out = backend.run([Request(msgs, [], None, True, 3) for _ in range(12)], progress=False)
        stats = _stats(addr)
    assert backend.failed_requests == 0 and all(r.greedy.endswith("<answer>1</answer>") and len(r.samples) == 3 for r in out)
    assert stats["requests"] == 24 and stats["connections"] <= 3, stats


def test_one_endpoint_resolver_for_referee_and_judge():
    """The referee and the judge choose hosted / endpoint (/ off) the same way, in one function."""
    from types import SimpleNamespace

    import pytest

    from r1reward_verl.openai_client import resolve_endpoint

    tok = SimpleNamespace(name_or_path="/models/referee")
    router, url = "127.0.0.1:9000", "http://h:8000/v1"
    assert resolve_endpoint("referee", "auto", router, url, None, tok, can_be_off=True) == ("hosted", router, "/models/referee")
    assert resolve_endpoint("referee", "auto", None, url, "m", tok, can_be_off=True) == ("endpoint", url, "m")
    assert resolve_endpoint("referee", "auto", None, None, None, tok, can_be_off=True) == ("off", None, None)
    assert resolve_endpoint("judge", "auto", None, url, "m") == ("endpoint", url, "m")
    assert resolve_endpoint("judge", "hosted", router, url, "mine", tok) == ("hosted", router, "mine")
    with pytest.raises(ValueError, match="judge=endpoint needs judge_base_url"):
        resolve_endpoint("judge", "auto", None, None, None)
    with pytest.raises(ValueError, match="referee=hosted needs verl's reward_router_address"):
        resolve_endpoint("referee", "hosted", None, url, None, can_be_off=True)
    with pytest.raises(ValueError, match=r"judge must be auto, hosted or endpoint, got 'off'"):
        resolve_endpoint("judge", "off", router, url, None)
    with pytest.raises(ValueError, match=r"referee must be auto, hosted, endpoint or off, got 'x'"):
        resolve_endpoint("referee", "x", router, url, None, can_be_off=True)


def test_one_payload_and_key_check_for_judge_and_evaluation_backend(monkeypatch):
    """The pairwise judge and the evaluation backend send the same n-choice body and refuse an unset key variable
    the same way (``openai_client.n_choice_payload`` / ``required_api_key``)."""
    import pytest

    from r1reward_verl.eval.backends import OpenAIBackend
    from r1reward_verl.judge.core import OpenAIJudge
    from r1reward_verl.openai_client import n_choice_payload, n_choice_texts, required_api_key

    msgs = [{"role": "user", "content": "q"}]
    assert n_choice_payload(msgs, 3, 1.0, 0.9, 64, "m") == {"messages": msgs, "n": 3, "temperature": 1.0, "top_p": 0.9,
                                                            "max_tokens": 64, "model": "m"}  # fmt: skip
    assert "model" not in n_choice_payload(msgs, 1, 0.0, 1.0, 8, None)
    body = {"choices": [{"message": {"content": "a"}}, {"message": {"content": "b"}}]}
    assert n_choice_texts(body, 2) == ["a", "b"]
    with pytest.raises(ValueError, match="wrong number of choices"):
        n_choice_texts(body, 3)
    monkeypatch.delenv("R1R_UNSET_KEY", raising=False)
    monkeypatch.setenv("R1R_SET_KEY", "sk-1")
    assert required_api_key(None) is None and required_api_key("R1R_SET_KEY") == "sk-1"
    assert required_api_key("R1R_UNSET_KEY", "given") == "given"
    for make in (lambda: OpenAIJudge("127.0.0.1:1", api_key_env="R1R_UNSET_KEY"),
                 lambda: OpenAIBackend("127.0.0.1:1", api_key_env="R1R_UNSET_KEY")):  # fmt: skip
        with pytest.raises(ValueError, match="environment variable R1R_UNSET_KEY \\(the API key\\) is not set"):
            make()
    assert OpenAIJudge("127.0.0.1:1", api_key_env="R1R_SET_KEY").api_key == "sk-1"
    assert OpenAIBackend("127.0.0.1:1", api_key_env="R1R_SET_KEY").api_key == "sk-1"
