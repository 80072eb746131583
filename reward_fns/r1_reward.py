"""R1-Reward's reward for verl's reward loop (R1-Reward §4.3): ``compute_score``.

    reward.custom_reward_function.path=<repo>/reward_fns/r1_reward.py   (or pkg://reward_fns.r1_reward)
    reward.custom_reward_function.name=compute_score

score = result * (1 + w_consistency * consistency) + w_format * format, with
* format: one ``<think>`` block then one ``<answer>1|2</answer>`` (see ``r1reward_verl/reward/parse.py``);
* result: the answer equals ``reward_model.ground_truth`` ("1" or "2");
* consistency: a referee (Qwen2.5-VL-7B-Instruct in the paper) says the reasoning's own conclusion
  agrees with the answer; asked only when result = 1, unless ``referee_always``.

Reward kwargs (``reward.custom_reward_function.reward_kwargs.*``):

| key | default | meaning |
|---|---|---|
| w_consistency, w_format | 0.5, 0.5 | the two weights |
| mismatch_value | 0.0 | consistency of an INCONSISTENT verdict; -1 reproduces the authors' released reward server |
| referee | auto | hosted (verl's reward_router_address), endpoint (referee_base_url), off; auto: hosted if verl passes a router address, else endpoint if a base URL is set, else off |
| referee_base_url | None | any OpenAI-compatible server, e.g. http://host:8000/v1 |
| referee_model | None | model name; hosted default: the referee's model path as verl serves it |
| referee_api_key_env | None | name of the environment variable holding the API key (never the key itself) |
| referee_constrained | auto | send vLLM's structured_outputs.choice (auto: on when hosted by verl's vLLM) |
| referee_always | False | ask the referee whenever there is an answer, for telemetry |
| referee_timeout | 60 | seconds per request |
| referee_max_retries | 3 | retries of transport faults (HTTP 408/429/5xx, time-outs, refused connections, garbage bodies) after the first attempt, exponential backoff from referee_backoff (0.5 s) |
| referee_max_concurrency | 64 | concurrent referee requests per reward-loop worker process |
| referee_max_tokens, referee_max_reasoning_chars | 8, 4000 | verdict length; tail of the reasoning sent |
| referee_fail_fast_steps | 2 (config) | read by the ``r1reward_*`` trainers: stop the run when every referee request failed in each of the first N steps that asked it; 0/null: never |

A failing referee request never fails the step: after the retries (transport faults only; a reply that
is not a verdict is not asked again), consistency = 0, ``referee_ok = False``, and the ``r1reward_*``
trainers count it in the step metrics (``referee/failed``, ``referee/error/<kind>``). A referee that
fails *every* request of the first steps stops the run (``referee_fail_fast_steps``).
"""

from r1reward_verl.reward.score import compute_score, r1_reward

__all__ = ["compute_score", "r1_reward"]
