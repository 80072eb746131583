"""The pairwise judge's ``group`` and ``knockout`` modes: a reward manager for verl's reward loop.

verl 0.9.1's reward loop scores one rollout at a time: the agent loop sends each finished rollout to a
reward-loop worker (``RewardLoopWorker.compute_score`` -> ``reward_manager.run_single``), and a reward
*function* sees one ``solution_str``. Comparing the n rollouts of a prompt with each other needs the whole
group in one place, so this is a reward *manager* registered in verl's reward-manager registry
(``verl.experimental.reward_loop.reward_manager.register``; verl imports this module in every process
through the ``verl.plugins`` entry point ``r1reward_genrm``). Its ``run_single`` parks each rollout under
its ``uid`` (the id verl gives the n rollouts of one prompt) until the group is complete, judges the
group once (``r1reward_verl.judge.core``: round robin or knockout, every comparison in both orders), and
answers every waiting rollout with its own score:

* ``group``: round robin, reward = share of its comparisons won (a tie, an unparsable verdict or a failed
  judge call counting 1/2); n(n-1) judge calls per group with both orders;
* ``knockout``: a single-elimination bracket with byes, reward = (round reached - 1) / rounds;
  2(n-1) calls per group.

Config (the judge's settings are the reward function's ``reward_kwargs``, one table for all modes)::

    reward.num_workers=1                                     # the whole group must reach one manager
    reward.reward_manager.name=pairwise_group
    reward.custom_reward_function.path=pkg://reward_fns.pairwise_genrm
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.judge_mode=group      # or knockout, reference

Why one worker: the agent loop picks a reward-loop worker at random for each rollout, so with several
workers a group's rollouts land in different processes. One worker is an async Ray actor: the n
rollouts of a group wait there concurrently, and the judge calls of all groups run concurrently under
the judge's cap (``judge_max_concurrency``), so one worker is not a bottleneck for a remote or hosted
judge. More workers are refused at start with this explanation.

The judge sees the policy prompt's own images (``raw_prompt``, as verl's ``RLHFDataset`` built it for the
policy) and the question ``extra_info[question_key]`` (else the prompt's text), in the Table 1 prompt of
training and evaluation.

A group that does not fill within ``group_wait_s`` of its first rollout (a rollout aborted, or a
validation pass with fewer samples per prompt than training) is judged with the rollouts that came;
a lone rollout gets ``single_score``; both are counted (``pairwise_partial``). An empty rollout gets
``empty_score`` and is not sent to the judge. A judge fault never fails the step: the call counts 1/2
and is reported; an unexpected error in a group's judging gives its rollouts 1/2 and ``pairwise_error``.

``reward_extra_info`` per rollout (the same keys in every mode; ``r1reward_verl.reward.step_metrics
.genrm_step_metrics`` makes ``genrm/*`` step metrics of them): ``score``, ``pairwise_p``,
``pairwise_group_size``, ``pairwise_partial``, and the group's judge counters on its first rollout only
(0 on the others, so sums over a batch are totals): ``pairwise_calls``, ``pairwise_attempts``,
``pairwise_samples``, ``pairwise_unparsable``, ``pairwise_failed_calls``, ``pairwise_comparisons``,
``pairwise_position_agreement``; ``pairwise_error``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import OmegaConf
from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from r1reward_verl.judge.reward_fn import images_of, judge_from_kwargs, reference_of, score_against_reference, stats_info

logger = logging.getLogger(__name__)

NAME = "pairwise_group"
JUDGE_MODES = ("reference", "group", "knockout")
_SCHEDULER = {"group": "round_robin", "knockout": "knockout"}


@dataclass
class GroupSettings:
    """The manager's own ``reward_kwargs`` (the judge's settings are ``r1reward_verl.judge.reward_fn``'s)."""

    judge_mode: str = "group"
    group_size: Optional[int] = None  # default: actor_rollout_ref.rollout.n
    group_wait_s: float = 120.0
    single_score: float = 0.5
    empty_score: float = 0.0
    question_key: str = "question"  # extra_info[question_key]; missing: the text of the policy prompt
    images_key: Optional[str] = "raw_prompt"  # raw_prompt: the policy prompt's own images; None: none
    judge_k: int = 1
    judge_swap: bool = True
    reference_key: str = "reference"  # reference mode: extra_info[reference_key], else reward_model.ground_truth

    @classmethod
    def split(cls, kwargs: dict) -> tuple["GroupSettings", dict]:
        """(these settings, the rest of ``kwargs``: the judge's)."""
        mine = {k: kwargs[k] for k in cls.__dataclass_fields__ if k in kwargs}
        rest = {k: v for k, v in kwargs.items() if k not in cls.__dataclass_fields__}
        s = cls(**mine)
        if s.judge_mode not in JUDGE_MODES:
            raise ValueError(f"judge_mode must be one of {', '.join(JUDGE_MODES)}; got {s.judge_mode!r}")
        if s.group_size is not None and int(s.group_size) < 1:
            raise ValueError(f"group_size must be >= 1, got {s.group_size!r}")
        if float(s.group_wait_s) <= 0:
            raise ValueError(f"group_wait_s must be > 0, got {s.group_wait_s!r}")
        return s, rest


def _image_bytes(x: Any) -> Optional[bytes]:
    """PNG/JPEG bytes of an image as verl's RLHFDataset puts it in ``raw_prompt`` (PIL, {"bytes"}, a path)."""
    import io
    import os

    if isinstance(x, dict):
        if x.get("bytes"):
            return bytes(x["bytes"])
        return _image_bytes(x.get("image") if x.get("image") is not None else x.get("path"))
    if isinstance(x, (str, os.PathLike)):
        with open(x, "rb") as fh:
            return fh.read()
    if hasattr(x, "save"):  # PIL
        buf = io.BytesIO()
        x.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()
    return None


def prompt_parts(raw_prompt: Any) -> tuple[str, list[bytes]]:
    """(the text of the user turns, the images in order) of a policy prompt as verl's ``RLHFDataset`` builds
    ``raw_prompt``: messages whose content is a string or a list of ``{"type": "text"|"image", ...}`` parts."""
    texts, images = [], []
    for m in list(raw_prompt) if raw_prompt is not None else []:
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            texts.append(content.replace("<image>", "").strip())
            continue
        for part in content or []:
            if part.get("type") == "text":
                texts.append(str(part.get("text", "")).strip())
            elif part.get("type") == "image":
                b = _image_bytes(part)
                if b is not None:
                    images.append(b)
    return "\n".join(t for t in texts if t), images


@dataclass
class _Group:
    expected: int
    question: str
    images: list
    responses: list[str] = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    timer: Optional[asyncio.TimerHandle] = None


@register(NAME)
class PairwiseGroupRewardManager(RewardManagerBase):
    """Judges the n rollouts of each prompt (same ``uid``) against each other; see the module docstring."""

    def __init__(self, config, tokenizer, compute_score, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        fn_cfg = config.reward.custom_reward_function
        kwargs = fn_cfg.get("reward_kwargs") or {}
        kwargs = OmegaConf.to_container(kwargs, resolve=True) if OmegaConf.is_config(kwargs) else dict(kwargs)
        self.settings, judge_kwargs = GroupSettings.split(kwargs)
        self.judge = judge_from_kwargs(reward_router_address, reward_model_tokenizer, judge_kwargs)
        self.groups: dict[str, _Group] = {}
        if self.settings.judge_mode == "reference":
            return  # every rollout on its own: any number of workers
        workers = config.reward.get("num_workers", 1)
        if workers != 1:
            raise ValueError(
                f"reward.reward_manager.name={NAME} with judge_mode={self.settings.judge_mode} needs reward.num_workers=1 "
                f"(got {workers}): verl's agent loop sends each rollout to a reward-loop worker chosen at random, so with "
                "several workers the rollouts of one prompt would be judged apart"
            )  # fmt: skip
        self.expected = int(self.settings.group_size or config.actor_rollout_ref.rollout.n)

    # ------------------------------------------------------------------------------------------ verl's hook

    async def run_single(self, data: DataProto) -> dict:
        item = data[-1:][0]  # multi-turn: the last sequence, as verl's naive manager
        response_ids = item.batch["responses"]
        valid = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
        response = await self.loop.run_in_executor(
            None, lambda: self.tokenizer.decode(response_ids[:valid], skip_special_tokens=True)
        )
        nt = item.non_tensor_batch
        info = nt.get("extra_info") or {}
        info = info if isinstance(info, dict) else {}
        if self.settings.judge_mode == "reference":
            ground_truth = (nt.get("reward_model") or {}).get("ground_truth")
            score, extra = await self.score_reference(info, nt.get("raw_prompt"), response, ground_truth)
            return {"reward_score": score, "reward_extra_info": {"score": score, **extra}}
        uid = nt.get("uid")
        if uid is None:
            raise ValueError(f"judge_mode={self.settings.judge_mode} groups rollouts by 'uid', and this sample has none")
        score, extra = await self._join(str(uid), response, info, nt.get("raw_prompt"))
        return {"reward_score": score, "reward_extra_info": {"score": score, **extra}}

    # --------------------------------------------------------------------------------------------- groups

    async def score_reference(self, info: dict, raw_prompt: Any, response: str, ground_truth: Any) -> tuple[float, dict]:
        """Reference mode: P(response beats the reference answer), both orders (what ``r1reward_verl.judge.reward_fn
        .compute_score`` does for verl's naive manager, here with the policy prompt's own images)."""
        s = self.settings
        reference = reference_of(info, ground_truth, s.reference_key)
        question, images = self._question_and_images(info, raw_prompt)
        return await score_against_reference(self.judge, question, images, response, reference, k=s.judge_k,
                                             swap=s.judge_swap, empty_score=s.empty_score)  # fmt: skip

    def _question_and_images(self, info: dict, raw_prompt: Any) -> tuple[str, list[bytes]]:
        """What the judge is shown besides the answers: the question and the images (see the settings)."""
        s = self.settings
        text, prompt_images = prompt_parts(raw_prompt)
        question = str(info.get(s.question_key) or text)
        if s.images_key == "raw_prompt":
            images = prompt_images
        else:
            images = images_of(info, s.images_key)
        return question, images

    async def _join(self, uid: str, response: str, info: dict, raw_prompt: Any = None) -> tuple[float, dict]:
        loop = asyncio.get_running_loop()
        g = self.groups.get(uid)
        if g is None:
            question, images = self._question_and_images(info, raw_prompt)
            g = self.groups[uid] = _Group(self.expected, question, images)
            g.timer = loop.call_later(float(self.settings.group_wait_s), self._close, uid)
        fut = loop.create_future()
        g.responses.append(response)
        g.futures.append(fut)
        if len(g.responses) >= g.expected:
            self._close(uid)
        return await fut

    def _close(self, uid: str) -> None:
        """Stop waiting for ``uid``'s rollouts and judge those that came (at most once per group)."""
        g = self.groups.pop(uid, None)
        if g is None:
            return
        if g.timer is not None:
            g.timer.cancel()
        asyncio.get_running_loop().create_task(self._judge_group(g))

    async def _judge_group(self, g: _Group) -> None:
        try:
            results = await self.score_group(g.question, g.images, g.responses, partial=len(g.responses) < g.expected)
        except Exception as e:  # a fault in judging must not fail the step: 1/2 each, reported
            logger.warning("pairwise judge: a group of %d failed: %r", len(g.responses), e)
            failed = {"pairwise_p": 0.5, "pairwise_group_size": len(g.responses), "pairwise_partial": 0,
                      **stats_info(), "pairwise_error": type(e).__name__}  # fmt: skip
            results = [(0.5, dict(failed)) for _ in g.responses]
        for fut, res in zip(g.futures, results):
            if not fut.done():
                fut.set_result(res)

    async def score_group(self, question: str, images: list, responses: list[str],
                          partial: bool = False) -> list[tuple[float, dict]]:  # fmt: skip
        """(score, extra info) per response: empty ones ``empty_score``, a lone one ``single_score``, the rest
        by the judge (round robin or knockout over the non-empty responses)."""
        from r1reward_verl.judge.core import rank_group

        s = self.settings
        live = [i for i, r in enumerate(responses) if r.strip()]
        base = {"pairwise_group_size": len(responses), "pairwise_partial": int(partial)}
        scores = {i: float(s.empty_score) for i in range(len(responses)) if i not in live}
        stats = None
        if len(live) == 1:
            scores[live[0]] = float(s.single_score)
        elif live:
            res = await rank_group(self.judge, question, images, [responses[i] for i in live],
                                   mode=_SCHEDULER[s.judge_mode], k=int(s.judge_k), swap=bool(s.judge_swap))  # fmt: skip
            for j, i in enumerate(live):
                scores[i] = float(res.scores[j])
            stats = res.stats
        # the group's counters on its first rollout, zeros on the others: sums over a batch are totals
        return [(scores[i], {"pairwise_p": scores[i], **base, **stats_info(stats if i == 0 else None)})
                for i in range(len(responses))]
