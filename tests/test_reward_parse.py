"""Table-driven tests of the output parser and the reward formula (R1-Reward §4.3)."""

import asyncio

import pytest

from r1reward_verl.reward.parse import parse_output
from reward_fns.r1_reward import compute_score, r1_reward

# (output, format_ok, pred)
CASES = [
    ("<think>Response 1 is more accurate.</think><answer>1</answer>", True, 1),
    ("  \n<think>R2 wins.</think>\n\n<answer> 2 </answer>\n ", True, 2),
    ("<think>x</think> <answer>\n1\n</answer>", True, 1),
    # ambiguous or malformed answers: no prediction at all
    ("<think>x</think><answer>1 or 2</answer>", False, None),
    ("<think>x</think><answer>12</answer>", False, None),
    ("<think>x</think><answer>3</answer>", False, None),
    ("<think>x</think><answer></answer>", False, None),
    ("<think>x</think><answer>1</answer><answer>2</answer>", False, None),  # conflicting
    ("<think>x</think><answer>1</answer><answer>1</answer>", False, None),  # repeated, even if agreeing
    ("<think>I pick 1.</think>The answer is 1.", False, None),  # answer outside the tags
    ("<think>x</think><answer>1", False, None),  # truncated
    ("<think>x</think>1</answer>", False, None),
    ("<think>x</think></answer>1<answer>", False, None),
    ("<think>x <answer>1</answer></think>", False, None),  # answer only inside think
    ("<think>x <answer>2</answer></think><answer>1</answer>", False, None),  # answer tags inside think too
    ("<think>a<think>b</think>c</think><answer>1</answer>", False, 1),  # nested think: pred ok, format not
    ("<think>x</think><think>y</think><answer>1</answer>", False, 1),
    ("<think>x</think>so: <answer>1</answer>", False, 1),  # text between think and answer
    ("<think>x</think><answer>1</answer> thanks", False, 1),  # text after the answer
    ("<answer>1</answer>", False, 1),  # no reasoning
    ("<think>  </think><answer>1</answer>", False, 1),  # empty reasoning
    ("prefix <think>x</think><answer>1</answer>", False, 1),
    ("<THINK>x</THINK><ANSWER>1</ANSWER>", False, None),  # tags are case-sensitive
    ("", False, None),
]


@pytest.mark.parametrize("text, format_ok, pred", CASES)
def test_parse_cases(text, format_ok, pred):
    p = parse_output(text)
    assert (p.format_ok, p.pred) == (format_ok, pred), p.reason


@pytest.mark.parametrize(
    "result, consistency, fmt, expected",
    [(1, 1, 1, 2.0), (1, 0, 1, 1.5), (1, 1, 0, 1.5), (0, 1, 1, 0.5), (0, 0, 0, 0.0), (1, -1, 1, 1.0), (0, -1, 1, 0.5)],
)
def test_formula(result, consistency, fmt, expected):
    assert r1_reward(result, consistency, fmt) == expected


def test_weights_are_settable():
    assert r1_reward(1, 1, 1, w_consistency=1.0, w_format=0.0) == 2.0


@pytest.mark.parametrize(
    "text, truth, score, fmt, result",
    [
        ("<think>R1 better.</think><answer>1</answer>", "1", 1.5, 1.0, 1.0),
        ("<think>R1 better.</think><answer>1</answer>", "2", 0.5, 1.0, 0.0),
        ("<think>x</think><answer>1 or 2</answer>", "1", 0.0, 0.0, 0.0),
        ("<think>x</think><answer>1 or 2</answer>", "2", 0.0, 0.0, 0.0),
        ("<answer>2</answer>", 2, 1.0, 0.0, 1.0),
    ],
)
def test_compute_score_without_referee(text, truth, score, fmt, result):
    out = asyncio.run(compute_score("r1reward", text, truth, {}))
    assert (out["score"], out["format"], out["result"], out["consistency"]) == (score, fmt, result, 0.0)
    assert out["referee_mode"] == "off" and out["referee_ok"] is None and out["referee_asked"] is False


def test_bad_ground_truth_is_an_error():
    with pytest.raises(ValueError, match="ground_truth"):
        asyncio.run(compute_score("r1reward", "<answer>1</answer>", "A", {}))


def test_unknown_reward_kwarg_is_an_error():
    with pytest.raises(TypeError):
        asyncio.run(compute_score("r1reward", "<answer>1</answer>", "1", {}, w_consistancy=1.0))


def test_long_and_pathological_outputs():
    """Correct answers on 200,000-character inputs (speed is measured in benchmarks/bench_referee.py, not here)."""
    long_think = "<think>" + ("Response 1 is better because. " * 7000)[:200_000] + "</think><answer>1</answer>"
    assert parse_output(long_think).format_ok and parse_output(long_think).pred == 1
    many_tags = "<think>" + "<answer>" * 25_000 + "</think>" * 25_000
    assert parse_output(many_tags).pred is None
    assert parse_output("x" * 200_000).pred is None
