"""A trained R1-Reward model as a generative pairwise reward for verl's reward loop: ``compute_score``.

Mode ``reference`` (the only one a per-sample reward function can do): each rollout is compared with a
reference answer, in both orders (position bias cancels), optionally with ``judge_k`` samples per order
(majority vote); reward = P(rollout wins) in [0, 1] (``r1reward_verl.pairwise.compare``: an order's verdict
counts 1/0, a tie, an unparsable reply or a failed judge call 1/2).

    reward.custom_reward_function.path=pkg://reward_fns.pairwise_genrm
    reward.custom_reward_function.name=compute_score
    reward.custom_reward_function.reward_kwargs={judge_base_url: "http://host:8000/v1", judge_model: r1reward}

The judge, two ways in, one code path (the shared OpenAI client, as the consistency referee):
``judge=hosted`` posts to verl's reward-model router (``reward_router_address``: the trained model served by
verl's reward loop on its own pool, ``reward.reward_model.enable=True enable_resource_pool=True
model_path=…``); ``judge=endpoint`` to ``judge_base_url``; ``auto`` prefers hosted.

Reward kwargs:

| key | default | meaning |
|---|---|---|
| judge | auto | hosted, endpoint or auto |
| judge_base_url, judge_model, judge_api_key_env | None | the endpoint; model name; NAME of the key's environment variable |
| reference_key | reference | ``extra_info[reference_key]`` is the reference answer; missing: ``reward_model.ground_truth`` |
| question_key | question | ``extra_info[question_key]`` is the question |
| images_key | None | ``extra_info[images_key]``: image paths (absolute) or data URIs shown to the judge |
| judge_k | 1 | samples per order (one request with n = k); temperature 0 for k = 1, else 1 |
| judge_swap | True | ask both orders |
| judge_timeout, judge_max_retries, judge_backoff | 300, 3, 0.5 | per request; transport faults retried |
| judge_max_concurrency | 64 | judge requests in flight per reward-loop worker process |
| judge_max_tokens | 1024 | the judge's reasoning length |
| empty_score | 0.0 | the reward of an empty rollout (not sent to the judge) |

Returned (verl's ``reward_extra_info``): ``score``, ``pairwise_p``, ``pairwise_calls``, ``pairwise_attempts``,
``pairwise_unparsable``, ``pairwise_failed_calls``, ``pairwise_position_agreement``, ``pairwise_error``.
A judge fault never fails the step: the call counts 1/2 and is reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from r1reward_verl.openai_client import api_key_from_env
from r1reward_verl.pairwise import OpenAIJudge, compare

_JUDGES: dict[tuple, OpenAIJudge] = {}


def _judge(reward_router_address, reward_model_tokenizer, judge, base_url, model, api_key_env, timeout, max_retries,
           backoff, concurrency, max_tokens) -> OpenAIJudge:  # fmt: skip
    if judge not in ("auto", "hosted", "endpoint"):
        raise ValueError(f"judge must be auto, hosted or endpoint, got {judge!r}")
    mode = judge if judge != "auto" else ("hosted" if reward_router_address else "endpoint")
    if mode == "hosted":
        if not reward_router_address:
            raise ValueError("judge=hosted needs verl's reward_router_address: set reward.reward_model.enable=True "
                             "and reward.reward_model.enable_resource_pool=True")
        url, model = reward_router_address, model or getattr(reward_model_tokenizer, "name_or_path", None)
    else:
        if not base_url:
            raise ValueError("judge=endpoint needs judge_base_url")
        url = base_url
    key = (url, model, api_key_env, float(timeout), int(max_retries), float(backoff), int(concurrency), int(max_tokens))
    j = _JUDGES.get(key)
    if j is None:  # one judge (hence one concurrency cap per event loop) per setting in this worker process
        j = _JUDGES[key] = OpenAIJudge(url, model, api_key=api_key_from_env(api_key_env), api_key_env=api_key_env,
                                       max_tokens=int(max_tokens), timeout=float(timeout), max_retries=int(max_retries),
                                       backoff=float(backoff), concurrency=int(concurrency))  # fmt: skip
    return j


def _images(specs: Any) -> list[bytes]:
    from preprocess.records import load_image

    if not specs:
        return []
    return [load_image(s, Path("/"))["bytes"] for s in list(specs)]


async def compute_score(
    data_source: Any = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: Optional[dict] = None,
    reward_router_address: Optional[str] = None,
    reward_model_tokenizer: Any = None,
    *,
    judge: str = "auto",
    judge_base_url: Optional[str] = None,
    judge_model: Optional[str] = None,
    judge_api_key_env: Optional[str] = None,
    reference_key: str = "reference",
    question_key: str = "question",
    images_key: Optional[str] = None,
    judge_k: int = 1,
    judge_swap: bool = True,
    judge_timeout: float = 300.0,
    judge_max_retries: int = 3,
    judge_backoff: float = 0.5,
    judge_max_concurrency: int = 64,
    judge_max_tokens: int = 1024,
    empty_score: float = 0.0,
) -> dict:
    """P(this rollout beats the reference answer) by the pairwise judge. See the module docstring."""
    info = extra_info if isinstance(extra_info, dict) else {}
    reference = info.get(reference_key)
    if reference is None:
        reference = ground_truth
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f"no reference answer: extra_info[{reference_key!r}] and reward_model.ground_truth are empty")
    question = str(info.get(question_key) or "")
    j = _judge(reward_router_address, reward_model_tokenizer, judge, judge_base_url, judge_model, judge_api_key_env,
               judge_timeout, judge_max_retries, judge_backoff, judge_max_concurrency, judge_max_tokens)  # fmt: skip
    out = {"pairwise_p": None, "pairwise_calls": 0, "pairwise_attempts": 0, "pairwise_unparsable": 0,
           "pairwise_failed_calls": 0, "pairwise_position_agreement": 0, "pairwise_error": None}  # fmt: skip
    if not (solution_str or "").strip():
        return {"score": float(empty_score), **out}
    images = _images(info.get(images_key)) if images_key else []
    p, stats = await compare(j, question, images, solution_str, reference, k=int(judge_k), swap=bool(judge_swap))
    out.update(pairwise_p=p, pairwise_calls=stats.calls, pairwise_attempts=stats.attempts,
               pairwise_unparsable=stats.unparsable, pairwise_failed_calls=stats.failed_calls,
               pairwise_position_agreement=stats.position_agreement,
               pairwise_error=",".join(sorted(stats.errors)) or None)  # fmt: skip
    return {"score": p, **out}
