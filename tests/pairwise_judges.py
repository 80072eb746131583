"""Scripted pairwise judges for tests: an OpenAI-compatible aiohttp server on 127.0.0.1 in a background thread.

Behaviours (the reply is ``<think>…</think><answer>X</answer>``, one per requested ``n``):
* ``first``: always answers 1 (a pure position bias);
* ``longer``: the longer of Response 1 / Response 2 of the Table 1 prompt (1 on equal lengths);
* ``flaky``: HTTP 500 for every odd-numbered request (1st, 3rd, ...), otherwise ``longer``;
* ``garbage``: a well-formed completion whose text has no answer (unparsable).
``stats``: requests, the ``n`` of each request, the images each carried, peak requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from aiohttp import web

R1, R2, END = "[Response 1]: ", "\n[Response 2]: ", "\n\nOutput Format"


def responses_of(text: str) -> tuple[str, str]:
    i1, i2, end = text.find(R1), text.find(R2), text.find(END)
    assert 0 <= i1 < i2 < end, "not a Table 1 prompt"
    return text[i1 + len(R1) : i2], text[i2 + len(R2) : end]


def _text_and_images(body: dict) -> tuple[str, int]:
    texts, images = [], 0
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, str):
            texts.append(c)
        else:
            for part in c:
                if part.get("type") == "text":
                    texts.append(part["text"])
                elif part.get("type") == "image_url":
                    images += 1
    return "\n".join(texts), images


class ScriptedJudge:
    def __init__(self, behaviour: str, latency: float = 0.0):
        self.behaviour, self.latency = behaviour, latency
        self.stats = {"requests": 0, "ns": [], "images": [], "in_flight": 0, "peak_in_flight": 0, "texts": []}
        self.url = None

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        st = self.stats
        st["requests"] += 1
        count = st["requests"]
        st["in_flight"] += 1
        st["peak_in_flight"] = max(st["peak_in_flight"], st["in_flight"])
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            n = int(body.get("n") or 1)
            text, images = _text_and_images(body)
            st["ns"].append(n)
            st["images"].append(images)
            st["texts"].append(text)
            if self.behaviour == "flaky" and count % 2 == 1:
                return web.json_response({"error": "scripted failure"}, status=500)
            if self.behaviour == "first":
                pick = 1
            elif self.behaviour == "garbage":
                pick = None
            else:
                r1, r2 = responses_of(text)
                pick = 1 if len(r1) >= len(r2) else 2
            content = "I cannot decide." if pick is None else f"<think>Response {pick} is better.</think><answer>{pick}</answer>"
            return web.json_response({
                "id": "chatcmpl-scripted", "object": "chat.completion", "model": body.get("model", "scripted"),
                "choices": [{"index": i, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                            for i in range(n)],
                "usage": {"prompt_tokens": len(text.split()), "completion_tokens": 8 * n},
            })  # fmt: skip
        finally:
            st["in_flight"] -= 1


@contextlib.contextmanager
def scripted_judge(behaviour: str, latency: float = 0.0):
    """Start a ``ScriptedJudge`` on 127.0.0.1 (a free port); yields it with ``.url`` = ``http://127.0.0.1:P/v1``."""
    judge = ScriptedJudge(behaviour, latency)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def start():
        app = web.Application()
        app.router.add_post("/v1/chat/completions", judge.chat)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = site._server.sockets[0].getsockname()[1]

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "scripted judge did not start"
    judge.url = f"http://127.0.0.1:{holder['port']}/v1"
    try:
        yield judge
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
