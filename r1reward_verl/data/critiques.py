"""The annotator's critiques (``python -m preprocess.annotate --critiques``): for critic-then-score (MM-RLHF-Reward,
R1-Reward Table 6), one critique of each response of a pair, asked of an OpenAI-compatible endpoint.

Each response is asked on its own, as the critic will be at evaluation: the question with the pair's images and
that response (:func:`r1reward_verl.data.outputs.critique_request`), under :data:`CRITIC_SYSTEM`; never the label,
never the other response. A pair is written only when both critiques came back non-empty: a failed or empty reply
leaves the pair for the next run (a failed remote call is never a result). The record is the pair as read
(``attempts`` and ``reasoning`` too, if it had them: a second pass over an annotated file) plus ``critique_1``,
``critique_2`` and ``critic`` (the model), ready for ``python -m preprocess.pairs --critic-out``."""

from __future__ import annotations

import asyncio
from typing import Optional

from r1reward_verl.data.outputs import critique_request
from r1reward_verl.data.records import Pair
from r1reward_verl.openai_client import chat_with_retries, image_url_part

CRITIC_SYSTEM = ("You review one answer to a question about the image(s). Write a short critique of it, one to three "
                 "sentences: what the image shows that bears on the question, what the response claims, and whether "
                 "it is correct, complete and free of hallucination. Do not write a new answer.")  # fmt: skip


def critique_messages(question: str, response: str, images: list[bytes]) -> list[dict]:
    """The request for one response's critique: :data:`CRITIC_SYSTEM`, then the images as data URIs and the
    critic's user turn (without ``<image>`` placeholders: the images are parts of the message)."""
    content = [image_url_part(im) for im in images]
    content.append({"type": "text", "text": critique_request(question, response, 0)})
    return [{"role": "system", "content": CRITIC_SYSTEM}, {"role": "user", "content": content}]


async def critique_pair(p: Pair, url: str, model: Optional[str], api_key: Optional[str], timeout: float,
                        request_retries: int, backoff: float) -> tuple[Optional[tuple[str, str]], Optional[str]]:  # fmt: skip
    """Both responses' critiques, asked concurrently at temperature 0 -> ((critique_1, critique_2), None), or
    (None, the error kind) when either request failed (``empty_critique``: the endpoint answered with nothing)."""
    images = [im["bytes"] for im in p.images]

    async def ask(response: str):
        payload = {"messages": critique_messages(p.question, response, images), "temperature": 0.0}
        if model:
            payload["model"] = model
        content, _, error = await chat_with_retries(url, payload, api_key=api_key, timeout=timeout,
                                                    max_retries=request_retries, backoff=backoff,
                                                    accept=lambda c: bool(c.strip()), refused="empty_critique")  # fmt: skip
        return content, error

    (c1, e1), (c2, e2) = await asyncio.gather(ask(p.response_1), ask(p.response_2))
    if c1 is None or c2 is None:
        return None, e1 or e2
    return (c1.strip(), c2.strip()), None
