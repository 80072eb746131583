"""The miniature's consistency referee: an OpenAI-compatible server on 127.0.0.1 (aiohttp) that answers the
referee prompt (``r1reward_verl.reward.referee``) by rule, for ``python -m r1reward_verl.demo --referee synth|rule``.

    python -m r1reward_verl.demo.referee --behaviour synth --port 8012

* ``synth`` (:func:`synth_verdict`): CONSISTENT iff the reasoning's own analysis of the synthetic task (the
  image's colour, each response's colour) supports the final answer, what a good referee says on this task;
* ``rule`` (:func:`rule_verdict`): CONSISTENT iff the reasoning's last "Response N" is the final answer's N.

``GET /health`` answers once it serves; ``GET /stats`` counts the requests.
"""

from __future__ import annotations

import argparse
import re
import time
import uuid
from typing import Optional

MARK_RE = re.compile(r"\[\[REASONING ([0-9a-f]+)\]\]\n")
_FINAL_RE = re.compile(r"Final answer: Response ([12]) is better\.")


def chat_completion(content: str, model: str) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def user_text(messages: list[dict]) -> str:
    parts = []
    for m in messages:
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts.extend(x.get("text", "") for x in c if isinstance(x, dict))
    return "\n".join(parts)


def _reasoning_and_final(user_text: str) -> tuple[Optional[str], Optional[str]]:
    """The reasoning between the referee prompt's boundary markers and the final answer's N (or None)."""
    m = MARK_RE.search(user_text)
    final = _FINAL_RE.findall(user_text)
    if not m or not final:
        return None, None
    nonce = m.group(1)
    end = user_text.find(f"\n[[END REASONING {nonce}]]", m.end())
    return user_text[m.end() : end if end >= 0 else len(user_text)], final[-1]


def rule_verdict(user_text: str) -> str:
    """The ``rule`` referee: compare the reasoning's last "Response N" with the final answer."""
    reasoning, final = _reasoning_and_final(user_text)
    if reasoning is None:
        return "UNCLEAR"
    mentions = re.findall(r"Response ([12])", reasoning)
    if not mentions:
        return "UNCLEAR"
    return "CONSISTENT" if mentions[-1] == final else "INCONSISTENT"


def synth_verdict(user_text: str) -> str:
    """The ``synth`` referee, for ``preprocess.synth``'s reasoning template: CONSISTENT iff the reasoning
    reads as the template does (``r1reward_verl.demo.synth.REASONING_RE``) and its conclusion follows from its own
    analysis: the colour it says the image shows is the colour it lists for the response it concludes
    for, and that response is the final answer. Otherwise INCONSISTENT (a garbled analysis supports no
    answer); UNCLEAR only when the prompt has no reasoning block or final answer. It never looks at the
    image: like the paper's referee it judges the reasoning against the answer, not the answer's truth."""
    from r1reward_verl.demo.synth import REASONING_RE

    reasoning, final = _reasoning_and_final(user_text)
    if reasoning is None:
        return "UNCLEAR"
    m = REASONING_RE.match(reasoning.strip())
    if not m:
        return "INCONSISTENT"
    said = {"1": m["said_1"], "2": m["said_2"]}
    return "CONSISTENT" if m["better"] == final and said[final] == m["colour"] else "INCONSISTENT"


VERDICTS = {"synth": synth_verdict, "rule": rule_verdict}


def app(behaviour: str = "synth"):
    """The aiohttp application: ``POST /v1/chat/completions`` answers with ``VERDICTS[behaviour]``."""
    from aiohttp import web

    verdict_of = VERDICTS[behaviour]
    stats = {"requests": 0}

    async def chat(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        stats["requests"] += 1
        verdict = verdict_of(user_text(body.get("messages", [])))
        return web.json_response(chat_completion(verdict, body.get("model", behaviour)))

    async def health(_request):
        return web.json_response({"ok": True})

    async def get_stats(_request):
        return web.json_response(stats)

    application = web.Application(client_max_size=64 << 20)  # prompts carry their images as data URIs
    application.add_routes([web.post("/v1/chat/completions", chat), web.get("/health", health),
                            web.get("/stats", get_stats)])  # fmt: skip
    return application


def main(argv=None) -> None:
    from aiohttp import web

    parser = argparse.ArgumentParser(prog="python -m r1reward_verl.demo.referee",
                                     description="The miniature's rule referee (OpenAI-compatible).")  # fmt: skip
    parser.add_argument("--behaviour", default="synth", choices=sorted(VERDICTS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(app(args.behaviour), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
