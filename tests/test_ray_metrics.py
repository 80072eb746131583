"""Live referee and judge health as Ray metrics (``r1reward_verl.openai_health``): a Ray actor asks the referee
(``ask_referee``) and the pairwise judge (``OpenAIJudge``) through the real client at a real aiohttp server in a
thread of this process that answers some requests and fails others in known ways; the node's Prometheus export
(``/metrics`` on its metrics port) must then show exactly those requests, failures by kind, retries, failed
calls and latency counts, per role. Without Ray nothing is recorded and Ray is not even imported."""

import asyncio
import collections
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.servers import chat_server_in_thread, closed_port, free_port

EXPORT_DEADLINE_S = 90.0  # Ray exports every metrics_report_interval_ms (0.5 s here); only a broken export waits this


def _scripted_server():
    """The handler and setup of a chat server whose answer depends on a marker in the prompt: ``[fail500]`` HTTP 500,
    ``[flaky]`` 503 the first time that prompt comes then an answer, ``[garbage]`` a 200 non-JSON body, ``[bad400]``
    HTTP 400, ``[echo]`` a reply that is not a strict verdict, ``[hang]`` no answer until the server stops; otherwise
    the ``rule`` referee's verdict, or for a judge request (``n`` choices) ``n`` Table 1 answers."""
    from aiohttp import web

    from tests.support.fake_servers import chat_completion, user_text, rule_verdict

    seen: collections.Counter = collections.Counter()
    state: dict = {}

    async def setup():
        state["stop"] = asyncio.Event()

    async def handler(request):
        body = await request.json()
        text = user_text(body.get("messages", []))
        seen[text] += 1
        if "[hang]" in text:
            await state["stop"].wait()
            return web.json_response({"error": "server stopped"}, status=503)
        if "[fail500]" in text or ("[flaky]" in text and seen[text] == 1):
            return web.json_response({"error": "down"}, status=500 if "[fail500]" in text else 503)
        if "[garbage]" in text:
            return web.Response(text="<html>not json</html>", status=200)
        if "[bad400]" in text:
            return web.json_response({"error": "bad request"}, status=400)
        if "n" in body:  # the judge
            out = chat_completion("<think>Response 1 answers it.</think><answer>1</answer>", "judge")
            out["choices"] = [dict(out["choices"][0], index=i) for i in range(body["n"])]
            return web.json_response(out)
        verdict = "Referee says: CONSISTENT" if "[echo]" in text else rule_verdict(text)
        return web.json_response(chat_completion(verdict, "referee"))

    return handler, setup, lambda: state["stop"].set()


def _ask_everything(addr: str, dead_addr: str) -> dict:
    """In a Ray worker: the referee's and the judge's calls of the scenario, and two calls without a role."""
    from r1reward_verl.openai_client import chat_url, chat_with_retries
    from r1reward_verl.judge.core import OpenAIJudge, PairPrompt
    from r1reward_verl.reward.referee import RefereeSettings, ask_referee, build_referee_messages

    def settings(a, timeout=30.0, max_retries=1):
        return RefereeSettings(url=RefereeSettings.chat_url(a), timeout=timeout, max_retries=max_retries, backoff=0.01)

    referee_calls = [(settings(addr), "ok 1"), (settings(addr), "ok 2"), (settings(addr), "ok 3"),
                     (settings(addr), "[fail500]"), (settings(addr), "[echo]"), (settings(dead_addr), "dead"),
                     (settings(addr, timeout=1.0, max_retries=0), "[hang]")]  # fmt: skip
    judge = OpenAIJudge(addr, timeout=30.0, max_retries=1, backoff=0.01)
    pairs = [PairPrompt(q, (), "A", "B") for q in ("ok 1", "ok 2", "[garbage]", "[bad400]", "[flaky]")]

    async def run():
        referee = [await ask_referee(s, build_referee_messages(q, "So Response 1 is better.", 1))
                   for s, q in referee_calls]  # fmt: skip
        judged = [(await judge.judge([p], 2))[0] for p in pairs]
        plain = [await chat_with_retries(chat_url(addr), {"messages": [{"role": "user", "content": q}]},
                                         max_retries=0) for q in ("ok", "[fail500]")]  # fmt: skip
        return referee, judged, plain

    referee, judged, plain = asyncio.run(run())
    return {"pid": os.getpid(), "referee": [(r.ok, r.attempts, r.error) for r in referee],
            "judge": [(r.outputs[0] is not None, r.attempts, r.error) for r in judged],
            "plain": [(c is not None, a, e) for c, a, e in plain]}  # fmt: skip


# (series, role, kind): value. Series without a kind tag have kind None.
EXPECTED = {
    ("requests", "referee", None): 9,  # 3 ok + 2 (500, retried) + 1 (echo) + 2 (refused connection, retried) + 1 (hang)
    ("retries", "referee", None): 2,
    ("request_failures", "referee", "http_5xx"): 2,
    ("request_failures", "referee", "not_a_verdict"): 1,
    ("request_failures", "referee", "connection"): 2,
    ("request_failures", "referee", "timeout"): 1,
    ("calls_failed", "referee", "http_5xx"): 1,
    ("calls_failed", "referee", "not_a_verdict"): 1,
    ("calls_failed", "referee", "connection"): 1,
    ("calls_failed", "referee", "timeout"): 1,
    ("request_seconds_count", "referee", None): 9,
    ("requests", "judge", None): 7,  # 2 ok + 2 (garbage, retried) + 1 (400) + 2 (503 then ok)
    ("retries", "judge", None): 2,
    ("request_failures", "judge", "bad_body"): 2,
    ("request_failures", "judge", "http_400"): 1,
    ("request_failures", "judge", "http_5xx"): 1,
    ("calls_failed", "judge", "bad_body"): 1,
    ("calls_failed", "judge", "http_400"): 1,
    ("request_seconds_count", "judge", None): 7,
}


def _scrape(port: int) -> tuple[dict, dict]:
    """Our series in the node's Prometheus export, summed over the other labels: ({(series, role, kind): value},
    {(role, le): latency bucket count})."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    got: dict = collections.defaultdict(float)
    buckets: dict = collections.defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.startswith("ray_r1reward_"):
                continue
            series = s.name[len("ray_r1reward_"):]
            if series.endswith("_total"):
                series = series[: -len("_total")]
            if series == "request_seconds_bucket":
                buckets[(s.labels["role"], float(s.labels["le"]))] += s.value
            elif series != "request_seconds_sum":
                got[(series, s.labels["role"], s.labels.get("kind"))] += s.value
    return dict(got), dict(buckets)


@pytest.mark.timeout(300)
def test_referee_and_judge_health_reach_the_ray_metrics_export():
    import ray

    metrics_port = free_port()
    handler, setup, stop = _scripted_server()
    with chat_server_in_thread(handler, setup=setup, before_stop=stop) as (_, port):
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _metrics_export_port=metrics_port,
                 _system_config={"metrics_report_interval_ms": 500})  # fmt: skip
        try:

            class Asker:
                def run(self, addr, dead_addr):
                    return _ask_everything(addr, dead_addr)

            actor = ray.remote(num_cpus=1)(Asker).remote()
            done = ray.get(actor.run.remote(f"127.0.0.1:{port}", f"127.0.0.1:{closed_port()}"), timeout=120)
            deadline = time.monotonic() + EXPORT_DEADLINE_S
            while True:  # the export lags the recording
                try:
                    got, buckets = _scrape(metrics_port)
                except OSError:  # the node's metrics agent is not serving yet
                    got, buckets = None, None
                if got == EXPECTED or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            ray.kill(actor)
        finally:
            ray.shutdown()

    # what the calls themselves saw: the scenario the metrics must count
    assert done["referee"] == [(True, 1, None)] * 3 + [(False, 2, "http_5xx"), (False, 1, "not_a_verdict"),
                                                        (False, 2, "connection"), (False, 1, "timeout")]  # fmt: skip
    assert done["judge"] == [(True, 1, None)] * 2 + [(False, 2, "bad_body"), (False, 1, "http_400"), (True, 2, None)]
    assert done["plain"] == [(True, 1, None), (False, 1, "http_5xx")]  # no role: in no series below
    assert done["pid"] != os.getpid()  # the requests came from a Ray worker

    assert got == EXPECTED
    for role in ("referee", "judge"):
        assert buckets[(role, float("inf"))] == EXPECTED[("request_seconds_count", role, None)]
    # the referee's time-out took its whole second (1 s): at least one request above 0.5 s
    assert buckets[("referee", 0.5)] <= EXPECTED[("request_seconds_count", "referee", None)] - 1


def test_without_ray_nothing_is_recorded_and_ray_is_not_imported():
    """The referee and the judge in a plain process (the eval and rank CLIs): the calls work, Ray is never imported."""
    handler, setup, stop = _scripted_server()
    code = """if True:
        import asyncio, json, sys
        from r1reward_verl.judge.core import OpenAIJudge, PairPrompt
        from r1reward_verl.reward.referee import RefereeSettings, ask_referee, build_referee_messages
        from r1reward_verl import openai_health
        addr = sys.argv[1]
        url = RefereeSettings.chat_url(addr)
        async def run():
            r = await ask_referee(RefereeSettings(url, max_retries=0), build_referee_messages("q [fail500]", "R 1", 1))
            ok = await ask_referee(RefereeSettings(url), build_referee_messages("q", "Response 1", 1))
            j = (await OpenAIJudge(addr).judge([PairPrompt("q", (), "A", "B")], 1))[0]
            return [r.error, ok.verdict, j.outputs[0] is not None]
        print(json.dumps({"calls": asyncio.run(run()), "ray": "ray" in sys.modules,
                          "made": openai_health._metrics is not None}))
    """
    with chat_server_in_thread(handler, setup=setup, before_stop=stop) as (_, port):
        out = subprocess.run([sys.executable, "-c", code, f"127.0.0.1:{port}"], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout) == {"calls": ["http_5xx", "CONSISTENT", True], "ray": False, "made": False}


class _BrokenMetric:
    def inc(self, *a, **kw):
        raise RuntimeError("metrics agent unreachable")

    observe = inc


def test_a_metrics_fault_never_fails_a_request_and_is_logged_once(monkeypatch, caplog):
    """Metrics that raise (a stand-in for Ray's metrics failing in a worker): every referee request still gets its
    verdict, one warning says the metrics are off, and they stay off."""
    from r1reward_verl import openai_health
    from r1reward_verl.reward.referee import RefereeSettings, ask_referee, build_referee_messages

    broken = dict.fromkeys(("requests", "failures", "retries", "calls_failed", "seconds"), _BrokenMetric())
    monkeypatch.setattr(openai_health, "_metrics", broken)
    monkeypatch.setattr(openai_health, "_off", False)
    handler, setup, stop = _scripted_server()
    with chat_server_in_thread(handler, setup=setup, before_stop=stop) as (_, port):
        settings = RefereeSettings(url=RefereeSettings.chat_url(f"127.0.0.1:{port}"), max_retries=0)

        async def run():
            return [await ask_referee(settings, build_referee_messages(q, "Response 1", 1))
                    for q in ("q", "q [fail500]", "q")]  # fmt: skip

        with caplog.at_level(logging.WARNING, logger="r1reward_verl.openai_health"):
            results = asyncio.run(run())
    assert [(r.verdict, r.error) for r in results] == [("CONSISTENT", None), (None, "http_5xx"), ("CONSISTENT", None)]
    warnings = [r for r in caplog.records if r.name == "r1reward_verl.openai_health"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING, warnings
    assert "metrics agent unreachable" in warnings[0].getMessage()
    assert openai_health._off and openai_health._metrics is None
