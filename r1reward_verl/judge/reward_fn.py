"""A trained R1-Reward model as a generative pairwise reward for verl's reward loop: ``compute_score``.

Modes (``judge_mode``): ``group`` and ``knockout`` judge the n rollouts of a prompt against each other and
need the reward manager that sees the whole group (``reward.reward_manager.name=pairwise_group``,
``r1reward_verl.judge.group_manager``); ``reference``, the only one a per-sample reward function can do
and what this function does: each rollout is compared with a
reference answer, in both orders (position bias cancels), optionally with ``judge_k`` samples per order
(majority vote); reward = P(rollout wins) in [0, 1] (``r1reward_verl.judge.core.compare``: an order's verdict
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
| judge_mode | reference | here; ``group`` / ``knockout`` with the ``pairwise_group`` reward manager |
| group_size, group_wait_s, single_score | rollout.n, 120, 0.5 | group modes: see ``r1reward_verl.judge.group_manager`` |

Returned (verl's ``reward_extra_info``, the same keys in every mode): ``score``, ``pairwise_p``,
``pairwise_group_size`` (1 here), ``pairwise_partial`` (0 here), ``pairwise_calls``, ``pairwise_attempts``,
``pairwise_samples``, ``pairwise_unparsable``, ``pairwise_failed_calls``, ``pairwise_comparisons``,
``pairwise_position_agreement``, ``pairwise_error``; ``genrm/*`` step metrics are made of them.
A judge fault never fails the step: the call counts 1/2 and is reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from r1reward_verl.openai_client import resolve_endpoint
from r1reward_verl.judge.core import JudgeStats, OpenAIJudge, compare

_JUDGES: dict[tuple, OpenAIJudge] = {}


def _judge(reward_router_address, reward_model_tokenizer, judge, base_url, model, api_key_env, timeout, max_retries,
           backoff, concurrency, max_tokens) -> OpenAIJudge:  # fmt: skip
    _, url, model = resolve_endpoint("judge", judge, reward_router_address, base_url, model, reward_model_tokenizer)
    key = (url, model, api_key_env, float(timeout), int(max_retries), float(backoff), int(concurrency), int(max_tokens))
    j = _JUDGES.get(key)
    if j is None:  # one judge (hence one concurrency cap per event loop) per setting in this worker process
        j = _JUDGES[key] = OpenAIJudge(url, model, api_key_env=api_key_env,
                                       max_tokens=int(max_tokens), timeout=float(timeout), max_retries=int(max_retries),
                                       backoff=float(backoff), concurrency=int(concurrency))  # fmt: skip
    return j


def _scalar_judge(model: Optional[str]):
    from r1reward_verl.bt.score import is_scalar_model
    from r1reward_verl.judge.scalar import ScalarJudge

    if not model or not is_scalar_model(model):
        raise ValueError(f"judge=scalar: judge_model={model!r} is not an HF export of a scalar reward model (r1reward_verl.bt)")
    j = _JUDGES.get(("scalar", model))
    if j is None:
        j = _JUDGES[("scalar", model)] = ScalarJudge(model)
    return j


def _images(specs: Any) -> list[bytes]:
    from r1reward_verl.data.records import load_image

    if specs is None or len(specs) == 0:
        return []
    return [load_image(s, Path("/"))["bytes"] for s in list(specs)]


def images_of(extra_info: dict, images_key: Optional[str]) -> list[bytes]:
    """The images shown to the judge: ``extra_info[images_key]`` (paths or data URIs), none without a key."""
    return _images(extra_info.get(images_key)) if images_key else []


_JUDGE_DEFAULTS = {"judge": "auto", "judge_base_url": None, "judge_model": None, "judge_api_key_env": None,
                   "judge_timeout": 300.0, "judge_max_retries": 3, "judge_backoff": 0.5, "judge_max_concurrency": 64,
                   "judge_max_tokens": 1024}  # fmt: skip


def judge_from_kwargs(reward_router_address, reward_model_tokenizer, kwargs: dict) -> OpenAIJudge:
    """The judge of these ``reward_kwargs`` (the keys of the table above; others are ignored). ``judge: scalar``:
    the scalar reward model at ``judge_model`` (a local HF export of ``r1reward_verl.bt``), in this process."""
    kw = {**_JUDGE_DEFAULTS, **{k: v for k, v in kwargs.items() if k in _JUDGE_DEFAULTS}}
    if kw["judge"] == "scalar":
        return _scalar_judge(kw["judge_model"])
    return _judge(reward_router_address, reward_model_tokenizer, kw["judge"], kw["judge_base_url"], kw["judge_model"],
                  kw["judge_api_key_env"], kw["judge_timeout"], kw["judge_max_retries"], kw["judge_backoff"],
                  kw["judge_max_concurrency"], kw["judge_max_tokens"])  # fmt: skip


# the judge's counters (r1reward_verl.judge.core.JudgeStats) as reward_extra_info keys pairwise_<counter>
STAT_KEYS = ("calls", "attempts", "samples", "unparsable", "failed_calls", "comparisons", "position_agreement")


def stats_info(stats: Optional[JudgeStats] = None) -> dict:
    """``pairwise_<counter>`` and ``pairwise_error`` (error kinds, comma-joined) of ``stats``; zeros and None without."""
    info = {f"pairwise_{c}": int(getattr(stats, c)) if stats is not None else 0 for c in STAT_KEYS}
    info["pairwise_error"] = (",".join(sorted(stats.errors)) or None) if stats is not None else None
    return info


def reference_of(extra_info: dict, ground_truth: Any, reference_key: str) -> str:
    """The reference answer: ``extra_info[reference_key]``, else ``reward_model.ground_truth``; an error if empty."""
    reference = extra_info.get(reference_key)
    if reference is None:
        reference = ground_truth
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f"no reference answer: extra_info[{reference_key!r}] and reward_model.ground_truth are empty")
    return reference


async def score_against_reference(judge, question: str, images: list, response: str, reference: str, *, k: int,
                                  swap: bool, empty_score: float) -> tuple[float, dict]:  # fmt: skip
    """(P(response beats reference), reward_extra_info without ``score``); an empty response is not judged."""
    base = {"pairwise_group_size": 1, "pairwise_partial": 0}
    if not (response or "").strip():
        return float(empty_score), {"pairwise_p": None, **base, **stats_info()}
    p, stats = await compare(judge, question, images, response, reference, k=int(k), swap=bool(swap))
    return p, {"pairwise_p": p, **base, **stats_info(stats)}


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
    judge_mode: str = "reference",
    **group_settings: Any,
) -> dict:
    """P(this rollout beats the reference answer) by the pairwise judge. See the module docstring."""
    if judge_mode != "reference":
        raise ValueError(f"judge_mode={judge_mode} compares the rollouts of a prompt with each other: it needs the reward "
                         "manager that sees the whole group, reward.reward_manager.name=pairwise_group (and "
                         "reward.num_workers=1); a reward function alone can only do judge_mode=reference")  # fmt: skip
    unknown = set(group_settings) - {"group_size", "group_wait_s", "single_score"}
    if unknown:
        raise TypeError(f"unknown pairwise_genrm reward_kwargs: {sorted(unknown)}")
    info = extra_info if isinstance(extra_info, dict) else {}
    reference = reference_of(info, ground_truth, reference_key)
    question = str(info.get(question_key) or "")
    j = _judge(reward_router_address, reward_model_tokenizer, judge, judge_base_url, judge_model, judge_api_key_env,
               judge_timeout, judge_max_retries, judge_backoff, judge_max_concurrency, judge_max_tokens)  # fmt: skip
    score, extra = await score_against_reference(j, question, images_of(info, images_key), solution_str or "", reference,
                                                 k=judge_k, swap=judge_swap, empty_score=empty_score)  # fmt: skip
    return {"score": score, **extra}
