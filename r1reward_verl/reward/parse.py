"""Strict, linear-time parsing of a reward model's output ``<think>…</think><answer>1|2</answer>``.

Rules (R1-Reward §4.3, "Formatting Reward" and "Result Reward"; tags are case-sensitive):

* ``pred`` (the answer, 1 or 2) exists only when the output has exactly one ``<answer>`` and one
  ``</answer>``, in that order, holding exactly ``1`` or ``2`` (surrounding whitespace allowed),
  and, if the output has any think tag, the answer block comes after the last ``</think>``.
  Anything else — "1 or 2", "12", two answer blocks (even agreeing ones), an answer only in
  prose, a truncated ``<answer>1`` without ``</answer>``, an answer inside the think block — gives
  ``pred = None``: an ambiguous output never earns the result reward for either label.
* ``format_ok`` additionally needs the whole output (leading/trailing whitespace aside) to be one
  ``<think>`` block with non-empty reasoning, then optional whitespace, then the answer block, and
  nothing after it; no nested or repeated think tags.

Every check is a bounded number of ``str.find``/``str.count`` passes: linear in the output length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


@dataclass(frozen=True)
class ParsedOutput:
    format_ok: bool
    pred: Optional[int]
    reasoning: Optional[str]  # the think block's text when format_ok, else None
    reason: str  # why format/pred failed ("ok" when format_ok)


def _answer(text: str) -> tuple[Optional[int], str, int]:
    """(pred, reason, start of the answer block) from the unique answer block, or (None, reason, -1)."""
    n_open, n_close = text.count(ANSWER_OPEN), text.count(ANSWER_CLOSE)
    if n_open == 0 and n_close == 0:
        return None, "no answer tag", -1
    if n_open != 1 or n_close != 1:
        return None, f"{n_open} <answer> and {n_close} </answer> tags (need exactly one each)", -1
    start = text.find(ANSWER_OPEN)
    end = text.find(ANSWER_CLOSE)
    if end < start:
        return None, "</answer> before <answer>", -1
    content = text[start + len(ANSWER_OPEN) : end].strip()
    if content not in ("1", "2"):
        return None, f"answer content {content[:20]!r} is not exactly 1 or 2", -1
    last_think_close = text.rfind(THINK_CLOSE)
    if (THINK_OPEN in text or last_think_close >= 0) and start < last_think_close:
        return None, "answer block inside or before the think block", -1
    return int(content), "ok", start


def parse_output(text: str) -> ParsedOutput:
    """Parse one output. See the module docstring for the exact rules."""
    pred, reason, ans_start = _answer(text)
    if pred is None:
        return ParsedOutput(False, None, None, reason)
    s = text.strip()
    if not s.startswith(THINK_OPEN):
        return ParsedOutput(False, pred, None, "output does not start with <think>")
    if s.count(THINK_OPEN) != 1 or s.count(THINK_CLOSE) != 1:
        return ParsedOutput(False, pred, None, "need exactly one <think> and one </think>")
    close = s.find(THINK_CLOSE)
    reasoning = s[len(THINK_OPEN) : close]
    if not reasoning.strip():
        return ParsedOutput(False, pred, None, "empty reasoning")
    rest = s[close + len(THINK_CLOSE) :].lstrip()
    if not rest.startswith(ANSWER_OPEN):
        return ParsedOutput(False, pred, None, "text between </think> and <answer>")
    if not rest.endswith(ANSWER_CLOSE):
        return ParsedOutput(False, pred, None, "text after </answer>")
    return ParsedOutput(True, pred, reasoning.strip(), "ok")
