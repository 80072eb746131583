"""Stop a run whose referee never answers, instead of training for days without the consistency term.

A failing referee request never fails a step (the rollout gets consistency 0 and the step metrics count
it), which is right for a flaky referee and wrong for a dead one: a referee that is asleep, at a wrong
URL, too slow for the time-out or asked for a model it does not serve fails *every* request. The
``r1reward_*`` trainers feed each step's ``referee/*`` metrics to :class:`RefereeFailFast`; when every
referee request of each of the first ``referee_fail_fast_steps`` steps that asked the referee has
failed, it raises :class:`RefereeDeadError`, naming the referee and the likely causes.

* a step in which the referee was not asked (no right answer yet) is no evidence: it is skipped;
* one answered request in a watched step shows the referee works: the check is off for the rest of the run
  (later outages are counted in ``referee/failed``, as before);
* ``reward.custom_reward_function.reward_kwargs.referee_fail_fast_steps``: 2 by default; 0 or null turns it off.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

DEFAULT_STEPS = 2


class RefereeDeadError(RuntimeError):
    """Every referee request of the first watched steps failed."""


def _kwargs(config: Any) -> dict:
    try:
        return dict(config.reward.custom_reward_function.get("reward_kwargs") or {})
    except AttributeError:
        return {}


def fail_fast_steps(config: Any) -> int:
    """``referee_fail_fast_steps`` of the reward kwargs (0 or null: off; absent: 2)."""
    value = _kwargs(config).get("referee_fail_fast_steps", DEFAULT_STEPS)
    return int(value or 0)


def describe_referee(config: Any, mode: Optional[str] = None, router_address: Optional[str] = None) -> str:
    """``mode=..., url=..., model=...`` of the configured referee (``mode``: what the reward function reported)."""
    kw = _kwargs(config)
    mode = mode or kw.get("referee") or "auto"
    parts = [f"mode={mode}"]
    if mode == "hosted":
        rm = config.reward.get("reward_model") or {}
        url = f"verl's reward router {router_address}" if router_address else "verl's reward router"
        model = kw.get("referee_model") or rm.get("model_path")
        parts += [f"url={url}", f"model={model}",
                  f"free_cache_engine={(rm.get('rollout') or {}).get('free_cache_engine')}"]  # fmt: skip
    else:
        parts += [f"url={kw.get('referee_base_url')}", f"model={kw.get('referee_model')}"]
    parts.append(f"referee_timeout={kw.get('referee_timeout')}s")
    return ", ".join(parts)


LIKELY_CAUSES = """Likely causes:
  - a sleeping hosted referee: verl's RewardModelManager puts the vLLM servers to sleep at start-up when
    reward.reward_model.rollout.free_cache_engine=true, and only the colocated reward path wakes them;
    referee=hosted sets it to false (check that no override turns it back on);
  - a wrong URL or a server that is down or not reachable from the reward-loop workers (error 'connection');
    referee=endpoint reads reward.custom_reward_function.reward_kwargs.referee_base_url / R1R_REFEREE_URL;
  - time-outs (error 'timeout'): the referee is asleep, still loading, overloaded or slower than
    referee_timeout; raise referee_timeout or lower referee_max_concurrency;
  - a referee prompt longer than the referee's max_model_len (HTTP 400 from vLLM, counted as the router's
    http_5xx when hosted): raise reward.reward_model.rollout.prompt_length / max_model_len, or lower
    referee_max_reasoning_chars;
  - a wrong model name (HTTP 404/400: referee_model must be a model the server serves) or API key
    (HTTP 401/403: referee_api_key_env names the variable holding it);
  - replies that are not a verdict (error 'not_a_verdict'): not an instruction-following model, or a server
    without vLLM's structured_outputs (referee_constrained).
To train without the consistency term use referee=off; to turn this check off set
reward.custom_reward_function.reward_kwargs.referee_fail_fast_steps=0."""


class RefereeFailFast:
    """Watches the ``referee/*`` step metrics (``reward_step_metrics``) of the first steps of a run."""

    def __init__(self, steps: int):
        self.steps = max(int(steps or 0), 0)
        self.armed = self.steps > 0
        self.dead_steps: list[Any] = []  # ids of the watched steps in which every request failed
        self.asked = self.failed = 0
        self.errors: Counter = Counter()
        self.mode: Optional[str] = None

    def observe(self, step: Any, metrics: dict, infos: list[dict] = ()) -> bool:
        """Record one advantage computation of step ``step``; True when the referee is found dead."""
        if not self.armed:
            return False
        asked = int(metrics.get("referee/asked", 0))
        if asked == 0:
            return False
        failed = int(metrics.get("referee/failed", 0))
        if failed < asked:
            self.armed = False  # the referee answers: done watching
            return False
        if step is None:  # no step counter: each call is a step
            step = ("call", len(self.dead_steps))
        if step not in self.dead_steps:
            self.dead_steps.append(step)
        self.asked += asked
        self.failed += failed
        for key, value in metrics.items():
            if key.startswith("referee/error/"):
                self.errors[key.removeprefix("referee/error/")] += int(value)
        self.mode = self.mode or next((i.get("referee_mode") for i in infos if i.get("referee_asked")), None)
        if len(self.dead_steps) >= self.steps:
            self.armed = False
            return True
        return False

    def error(self, config: Any, router_address: Optional[str] = None) -> RefereeDeadError:
        errors = ", ".join(f"{k}={v}" for k, v in self.errors.most_common()) or "none recorded"
        return RefereeDeadError(
            f"R1-Reward referee unusable: every referee request failed in each of the first {len(self.dead_steps)} "
            f"training steps that asked it ({self.failed} of {self.asked} requests failed after all retries; "
            f"errors: {errors}). Referee: {describe_referee(config, self.mode, router_address)}.\n{LIKELY_CAUSES}"
        )
