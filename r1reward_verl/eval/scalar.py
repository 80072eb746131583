"""The evaluator's backend for a scalar reward model (``r1reward_verl.bt``): each response of a pair is scored on
its own, with the question and the images, and the pair's verdict is the higher reward (``runner.scalar_pred``).
The other order of a pair is the same two scores, swapped: order invariance holds by construction (each distinct
(question, images, response) is scored once per call), so "right in both orders" equals accuracy."""

from __future__ import annotations

import hashlib
from r1reward_verl.eval.backends import Request, Result


def _image_key(images: list) -> tuple:
    return tuple(hashlib.sha256(im.tobytes()).hexdigest() + f"{im.size}" for im in images)


class ScalarBackend:
    """``--backend scalar`` (chosen by itself when ``--model`` is a scalar reward model). No text is generated, so
    ``--k`` must be 0; ``prompt_tokens`` counts the tokens scored."""

    def __init__(self, model_path: str, *, device: str = "cpu", dtype: str = "float32", batch_size: int = 16):
        from r1reward_verl.bt.score import ScalarRewardModel

        self.model = ScalarRewardModel(model_path, device=device, dtype=dtype, batch_size=batch_size)
        self.failed_requests = 0

    def run(self, requests: list[Request], progress: bool = True) -> list[Result]:
        if any(r.video for r in requests):
            raise ValueError("the scalar reward model scores images, not videos")
        if any(r.n for r in requests):
            raise ValueError("a scalar reward model has no samples: k must be 0")
        index: dict[tuple, int] = {}
        items: list[tuple[str, list, str]] = []
        keys: list[tuple[tuple, tuple]] = []
        for r in requests:
            if r.texts is None:
                raise ValueError("the request carries no question and responses (Request.texts) to score")
            question, r1, r2 = r.texts
            img = _image_key(r.images)
            pair_keys = []
            for resp in (r1, r2):
                key = (question, img, resp)
                if key not in index:
                    index[key] = len(items)
                    items.append((question, r.images, resp))
                pair_keys.append(key)
            keys.append(tuple(pair_keys))
        before = self.model.tokens
        scores = self.model.score(items)
        per_request = (self.model.tokens - before) // max(len(requests), 1)
        return [Result(None, [], per_request, scores=(scores[index[k1]], scores[index[k2]])) for k1, k2 in keys]

