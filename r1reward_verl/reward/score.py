"""The R1-Reward reward (§4.3) as a verl reward-loop function: format, result and referee-checked consistency."""

from __future__ import annotations

import time

from typing import Any, Optional

from r1reward_verl.openai_client import api_key_from_env, resolve_endpoint
from r1reward_verl.reward.parse import parse_output
from r1reward_verl.reward.referee import RefereeSettings, ask_referee, build_referee_messages

CONSISTENCY_OF_VERDICT = {"CONSISTENT": 1.0, "UNCLEAR": 0.0}  # INCONSISTENT -> mismatch_value


def r1_reward(result: float, consistency: float, format_ok: float, w_consistency: float = 0.5, w_format: float = 0.5) -> float:
    """Final Reward = Result x (1 + 0.5 x Consistency) + 0.5 x Formatting, R1-Reward §4.3 (Eq. for the final reward).

    The consistency term counts only when the result is right, so a consistent wrong answer earns
    nothing for consistency. ``w_consistency`` and ``w_format`` are the two 0.5 weights.
    """
    return result * (1.0 + w_consistency * consistency) + w_format * format_ok


def _label(ground_truth: Any) -> int:
    s = str(ground_truth).strip()
    if s not in ("1", "2"):
        raise ValueError(f"ground_truth must be '1' or '2' (the preferred response), got {ground_truth!r}")
    return int(s)


def _reasoning_before_answer(text: str) -> str:
    head = text[: text.find("<answer>")] if "<answer>" in text else text
    return head.replace("<think>", " ").replace("</think>", " ").strip()


def referee_settings(
    reward_router_address: Optional[str],
    reward_model_tokenizer: Any,
    referee: str,
    base_url: Optional[str],
    model: Optional[str],
    api_key_env: Optional[str],
    constrained: Any,
    **knobs: Any,
) -> tuple[str, Optional[RefereeSettings]]:
    """Pick the way in: ``hosted`` (verl's router), ``endpoint`` (a base URL) or ``off``. ``auto`` prefers hosted."""
    mode, base, model = resolve_endpoint("referee", referee, reward_router_address, base_url, model,
                                         reward_model_tokenizer, can_be_off=True)  # fmt: skip
    if mode == "off":
        return "off", None
    url = RefereeSettings.chat_url(base)
    if constrained == "auto":
        constrained = mode == "hosted"  # verl hosts the referee on vLLM, which supports structured_outputs
    return mode, RefereeSettings(url=url, model=model, api_key=api_key_from_env(api_key_env),
                                 constrained=bool(constrained), **knobs)


def day_clock() -> float:
    """Seconds since 00:00 UTC. verl carries reward_extra_info through TransferQueue as float32, whose
    24-bit mantissa would round a Unix time (~1.8e9 s) to 128 s; seconds of the day keep ~8 ms.
    :func:`r1reward_verl.reward.step_metrics.reward_overlap_metrics` unwraps a batch that spans midnight."""
    return time.time() % 86400.0


async def compute_score(
    data_source: Any = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: Optional[dict] = None,
    reward_router_address: Optional[str] = None,
    reward_model_tokenizer: Any = None,
    *,
    w_consistency: float = 0.5,
    w_format: float = 0.5,
    mismatch_value: float = 0.0,
    referee: str = "auto",
    referee_base_url: Optional[str] = None,
    referee_model: Optional[str] = None,
    referee_api_key_env: Optional[str] = None,
    referee_constrained: Any = "auto",
    referee_always: bool = False,
    referee_timeout: float = 60.0,
    referee_max_retries: int = 3,
    referee_backoff: float = 0.5,
    referee_max_concurrency: int = 64,
    referee_max_tokens: int = 8,
    referee_max_reasoning_chars: int = 4000,
    referee_fail_fast_steps: Any = None,
) -> dict:
    """R1-Reward score of one rollout. See ``reward_fns/r1_reward.py`` for the configuration keys
    (``referee_fail_fast_steps`` is read by the ``r1reward_*`` trainers, not here).

    Returns ``score, format, result, consistency, pred, referee_ok`` (None when the referee was not
    asked) and ``referee_mode, referee_asked, referee_verdict, referee_attempts, referee_error``, and the
    wall-clock start/end of this call, ``reward_t0`` / ``reward_t1`` (:func:`day_clock`; overlap metrics).
    """
    started = day_clock()  # reward_t0/t1: when this rollout's reward began (its generation ended) and ended
    label = _label(ground_truth)
    parsed = parse_output(solution_str or "")
    fmt = 1.0 if parsed.format_ok else 0.0
    result = 1.0 if parsed.pred == label else 0.0
    mode, settings = referee_settings(
        reward_router_address, reward_model_tokenizer, referee, referee_base_url, referee_model, referee_api_key_env,
        referee_constrained, timeout=float(referee_timeout), max_retries=int(referee_max_retries),
        backoff=float(referee_backoff), max_concurrency=int(referee_max_concurrency),
        max_tokens=int(referee_max_tokens), max_reasoning_chars=int(referee_max_reasoning_chars),
    )  # fmt: skip

    out = {"referee_mode": mode, "referee_asked": False, "referee_ok": None, "referee_verdict": None,
           "referee_attempts": 0, "referee_error": None}  # fmt: skip
    consistency = 0.0
    # the referee can only change the score when the result is right; referee_always asks for telemetry
    ask = settings is not None and parsed.pred is not None and (result == 1.0 or referee_always)
    if ask:
        reasoning = parsed.reasoning if parsed.format_ok else _reasoning_before_answer(solution_str)
        question = (extra_info or {}).get("question", "") if isinstance(extra_info, dict) else ""
        messages = build_referee_messages(question, reasoning, parsed.pred, settings.max_reasoning_chars)
        res = await ask_referee(settings, messages)
        out.update(referee_asked=True, referee_ok=res.ok, referee_verdict=res.verdict, referee_attempts=res.attempts,
                   referee_error=res.error)  # fmt: skip
        if res.ok:
            consistency = CONSISTENCY_OF_VERDICT.get(res.verdict, float(mismatch_value))
    return {
        "score": r1_reward(result, consistency, fmt, w_consistency, w_format),
        "format": fmt,
        "result": result,
        "consistency": consistency,
        "pred": parsed.pred,
        **out,
        "reward_t0": started,
        "reward_t1": day_clock(),
    }
