"""A scalar (Bradley-Terry) reward model as a judge (``r1reward_verl.bt``): one call per candidate instead of one per
ordered pair. A comparison of a and b is P(a wins) = σ(r_a − r_b), the model's own Bradley-Terry probability, the
same in both orders by construction; so round robin over n candidates costs n calls and a candidate's score is
its mean σ(r_i − r_j) over the others (``judge.core.compare_pairs``)."""

from __future__ import annotations

import asyncio
from typing import Optional, Sequence


class ScalarJudge:
    """``await rewards(question, images, candidates)`` -> ``(rewards, error)``: one reward per candidate, or None
    and the error kind when the model failed (the comparisons then count 1/2, like a failed judge call)."""

    def __init__(self, model_path: str, *, device: str = "cpu", dtype: str = "float32", batch_size: int = 16):
        from r1reward_verl.bt.score import ScalarRewardModel

        self.model = ScalarRewardModel(model_path, device=device, dtype=dtype, batch_size=batch_size)
        self._lock: Optional[asyncio.Lock] = None

    async def rewards(self, question: str, images: Sequence[bytes], candidates: Sequence[str]):
        if self._lock is None:
            self._lock = asyncio.Lock()
        items = [(question, list(images), c) for c in candidates]
        try:
            async with self._lock:
                return await asyncio.to_thread(self.model.score, items), None
        except Exception as e:  # noqa: BLE001  (a reward must not fail the step: counted, worth 1/2)
            return None, f"exception:{type(e).__name__}"


def is_scalar_judge(judge) -> bool:
    return callable(getattr(judge, "rewards", None))
