"""The evaluator's backend for critic-then-score (``r1reward_verl.data.outputs``): the critic (a generative model, the
transformers backend) writes a critique of each response, greedily, then the scalar scorer scores each response
with its critique; the pair's verdict is the higher score. As with :mod:`.scalar`, each distinct (question,
images, response) is critiqued and scored once per call, so both orders of a pair get the same two scores."""

from __future__ import annotations

from r1reward_verl.data.outputs import critique_request, scored_response
from r1reward_verl.eval.backends import Request, Result, TransformersBackend
from r1reward_verl.eval.scalar import ScalarBackend, _image_key


class CriticThenScoreBackend(ScalarBackend):
    def __init__(self, scorer_path: str, critic_path: str, *, max_new_tokens: int = 64, batch_size: int = 16,
                 seed: int = 0, device: str = "cpu"):  # fmt: skip
        super().__init__(scorer_path, device=device, batch_size=batch_size)
        self.critic = TransformersBackend(critic_path, max_new_tokens=max_new_tokens, seed=seed, device=device,
                                          batch_size=batch_size)  # fmt: skip
        self.critiques: dict[tuple, str] = {}  # the last call's, by (question, images, response)

    def run(self, requests: list[Request], progress: bool = True) -> list[Result]:
        keys, asks = {}, []
        for r in requests:
            if r.texts is None:
                raise ValueError("the request carries no question and responses (Request.texts) to score")
            question, r1, r2 = r.texts
            for resp in (r1, r2):
                key = (question, _image_key(r.images), resp)
                if key not in keys:
                    keys[key] = len(asks)
                    content = [{"type": "image"} for _ in r.images]
                    content.append({"type": "text", "text": critique_request(question, resp, 0)})
                    asks.append(Request([{"role": "user", "content": content}], r.images, greedy=True, n=0))
        critiqued = self.critic.run(asks, progress=progress)
        self.critiques = {k: critiqued[i].greedy for k, i in keys.items()}
        scored = []
        for r in requests:
            question, r1, r2 = r.texts
            k1, k2 = ((question, _image_key(r.images), resp) for resp in (r1, r2))
            errors = [critiqued[keys[k]].error for k in (k1, k2) if critiqued[keys[k]].error]
            scored.append(None if errors else
                          Request(r.messages, r.images, texts=(question, scored_response(r1, self.critiques[k1]),
                                                                scored_response(r2, self.critiques[k2]))))  # fmt: skip
        ok = super().run([s for s in scored if s is not None], progress=progress) if any(scored) else []
        it = iter(ok)
        out = []
        for r, s in zip(requests, scored):
            if s is None:
                out.append(Result(None, [], 0, error="critic_failed"))
            else:
                out.append(next(it))
        return out
