"""Step metrics of the R1-Reward reward, aggregated from each trajectory's ``reward_extra_info``."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable


def reward_step_metrics(infos: Iterable[dict]) -> dict[str, float]:
    """``reward/*`` means and ``referee/*`` counts over the trajectories that carry our reward's fields.

    referee/asked, referee/failed (after all retries), referee/failed_frac (of asked),
    referee/inconsistent_frac (of answered), referee/attempts_mean, referee/error/<kind> counts.
    """
    infos = [i for i in infos if isinstance(i, dict) and "referee_asked" in i and "result" in i]
    if not infos:
        return {}
    n = len(infos)
    asked = [i for i in infos if i.get("referee_asked")]
    failed = [i for i in asked if i.get("referee_ok") is False]
    answered = [i for i in asked if i.get("referee_ok")]
    metrics = {
        "reward/format_mean": sum(float(i["format"]) for i in infos) / n,
        "reward/result_mean": sum(float(i["result"]) for i in infos) / n,
        "reward/consistency_mean": sum(float(i["consistency"]) for i in infos) / n,
        "reward/no_answer_frac": sum(i.get("pred") is None for i in infos) / n,
        "referee/asked": float(len(asked)),
        "referee/failed": float(len(failed)),
        "referee/failed_frac": len(failed) / len(asked) if asked else 0.0,
        "referee/inconsistent_frac": (
            sum(i.get("referee_verdict") == "INCONSISTENT" for i in answered) / len(answered) if answered else 0.0
        ),
        "referee/attempts_mean": sum(int(i.get("referee_attempts") or 0) for i in asked) / len(asked) if asked else 0.0,
    }
    for kind, count in Counter(i.get("referee_error") for i in failed).items():
        metrics[f"referee/error/{kind}"] = float(count)
    metrics.update(reward_overlap_metrics(infos))
    return metrics


def reward_overlap_metrics(infos: list[dict]) -> dict[str, float]:
    """How much of the reward work (referee included) hid behind generation, from each rollout's
    ``reward_t0`` / ``reward_t1`` (verl's reward loop scores a rollout as soon as it is generated).

    reward/busy_s: serial sum of the reward calls; reward/tail_wait_s: time from the last reward start
    (= the last rollout's end) to the last reward end, i.e. reward time the step waited for after
    generation; reward/overlap_frac: share of busy_s spent before the last rollout ended.
    """
    spans = [(float(i["reward_t0"]), float(i["reward_t1"])) for i in infos
             if i.get("reward_t0") is not None and i.get("reward_t1") is not None]  # fmt: skip
    spans = [(t0, t1) for t0, t1 in spans if math.isfinite(t0) and math.isfinite(t1)]  # NaN would poison max()
    if not spans:
        return {}
    # seconds of the day (score.day_clock): a batch that spans midnight has times near 0 and near 86400
    if max(max(s) for s in spans) - min(min(s) for s in spans) > 43200:
        spans = [tuple(t + 86400.0 if t < 43200 else t for t in s) for s in spans]
    gen_end = max(t0 for t0, _ in spans)
    busy = sum(t1 - t0 for t0, t1 in spans)
    hidden = sum(max(0.0, min(t1, gen_end) - t0) for t0, t1 in spans)
    return {
        "reward/busy_s": busy,
        "reward/tail_wait_s": max(t1 for _, t1 in spans) - gen_end,
        "reward/overlap_frac": hidden / busy if busy > 0 else 1.0,
    }


def genrm_step_metrics(infos: Iterable[dict]) -> dict[str, float]:
    """``genrm/*`` over the trajectories rewarded by the pairwise judge (``r1reward_verl.judge.reward_fn``, any mode).

    genrm/calls (judge calls, one order of one comparison each), genrm/failed_calls, genrm/unparsable_frac (of the
    judge outputs asked for), genrm/position_agreement (share of comparisons asked in both orders whose two
    verdicts agree), genrm/partial_rollouts (rollouts judged in a group that did not fill), genrm/score_mean.
    In group modes the counters sit on one rollout per group (0 on the others), so the sums are totals.
    """
    infos = [i for i in infos if isinstance(i, dict) and "pairwise_calls" in i and "pairwise_p" in i]
    if not infos:
        return {}

    def total(key: str) -> float:
        return float(sum(int(i.get(key) or 0) for i in infos))

    samples, comparisons = total("pairwise_samples"), total("pairwise_comparisons")
    scores = [float(i["pairwise_p"]) for i in infos if i.get("pairwise_p") is not None]
    return {
        "genrm/calls": total("pairwise_calls"),
        "genrm/failed_calls": total("pairwise_failed_calls"),
        "genrm/unparsable_frac": total("pairwise_unparsable") / samples if samples else 0.0,
        "genrm/position_agreement": total("pairwise_position_agreement") / comparisons if comparisons else 0.0,
        "genrm/partial_rollouts": total("pairwise_partial"),
        "genrm/score_mean": sum(scores) / len(scores) if scores else 0.0,
    }
