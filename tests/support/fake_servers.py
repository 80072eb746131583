"""Small OpenAI-compatible servers for tests and benchmarks (FastAPI + uvicorn): referees, judges and faults.
(The miniature's own referee is :mod:`r1reward_verl.demo.referee`; the in-thread judges of
:mod:`tests.support.judges` are others, with other behaviour names.)

    python -m tests.support.fake_servers tiny --model DIR --port 8011      # a real model: the tiny Qwen2.5-VL
    python -m tests.support.fake_servers scripted --port 8012 [--behaviour rule] [--latency 0.05]

``tiny`` runs a checkpoint with transformers on CPU: greedy generation, or, when the request has
vLLM's ``structured_outputs: {"choice": [...]}``, the choice with the highest log-likelihood. Images
(``image_url`` parts as base64 data URIs) go through the model's processor; ``GET /stats`` counts the
requests and the images they carried.

``scripted`` answers deterministically for tests (bind it to 127.0.0.1 only):
* ``rule``: reads the reasoning between the request's own boundary markers and the "Final answer"
  line, and answers CONSISTENT if the last "Response N" mentioned in the reasoning is the final
  answer's N, INCONSISTENT if it is the other, UNCLEAR if none;
* ``synth``: the referee of the miniature's synthetic task (:func:`synth_verdict`): CONSISTENT iff the
  reasoning's own analysis (the image's colour, each response's colour) supports the final answer;
* ``echo``: repeats the reasoning, then a verdict line (a sloppy referee: not a strict verdict);
* ``fail500``, ``non_json`` (a non-JSON 200 body), ``slow`` (sleeps ``--slow-seconds``), and
  ``fail_first`` (HTTP 500 for the first ``--fail-first`` requests, then ``rule``);
* ``annotator``: a scripted annotator for Table 1 prompts whose question carries ``[need=N]`` and whose
  right response contains ``(correct)``: it picks the other response until the N-th time it sees that
  prompt, then the right one (N=0: always wrong), as ``<think>…</think><answer>X</answer>``.
* ``critic``: a scripted critic for critique requests (``preprocess.annotate --critiques``): for the text after
  ``Response:`` it answers ``Critique of <response>: right.`` if it contains ``(correct)``, else ``... wrong.``;
  an empty reply if it contains ``[empty]``; HTTP 400 for a request with no system message or with a Table 1 prompt;
  ``GET /stats``'s ``images`` counts the image parts received.
* ``position_biased``: a position-biased judge for evaluation: answers ``1`` when greedy (temperature 0) and,
  for the ``n`` samples of a request, ``1`` except every third sample (``2``), as
  ``<think>…</think><answer>X</answer>``; ``usage.prompt_tokens`` = whitespace tokens of the prompt.
``GET /stats`` returns the request count, the peak number of requests in flight and the number of
TCP connections the requests came on (distinct client addresses: a client that reuses its
connections shows few).
"""


import argparse
import asyncio
import re

from r1reward_verl.demo.referee import MARK_RE, chat_completion, user_text, rule_verdict, synth_verdict

_NEED_RE = re.compile(r"\[need=(\d+)\]")


def scripted_app(behaviour: str = "rule", latency: float = 0.0, slow_seconds: float = 30.0, fail_first: int = 0):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse

    app = FastAPI()
    stats = {"requests": 0, "in_flight": 0, "peak_in_flight": 0, "connections": 0}
    seen: dict[str, int] = {}
    peers: set = set()  # (host, port) of the client side of each TCP connection

    @app.get("/health")
    async def health():
        return {"ok": True}

    @app.get("/stats")
    async def get_stats():
        return stats

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        stats["requests"] += 1
        n = stats["requests"]
        peers.add((request.client.host, request.client.port) if request.client else None)
        stats["connections"] = len(peers)
        stats["in_flight"] += 1
        stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
        try:
            if latency:
                await asyncio.sleep(latency)
            text = user_text(body.get("messages", []))
            if behaviour == "fail500" or (behaviour == "fail_first" and n <= fail_first):
                return JSONResponse({"error": "scripted failure"}, status_code=500)
            if behaviour == "non_json":
                return PlainTextResponse("<html>not json</html>")
            if behaviour == "slow":
                await asyncio.sleep(slow_seconds)
            if behaviour == "annotator":
                m = _NEED_RE.search(text)
                r1, r2 = text.find("[Response 1]:"), text.find("[Response 2]:")
                if not m or r1 < 0 or r2 < r1:
                    return JSONResponse({"error": "not a Table 1 prompt with [need=N]"}, status_code=400)
                gold = 1 if "(correct)" in text[r1:r2] else 2
                need = int(m.group(1))
                seen[text] = seen.get(text, 0) + 1
                pick = gold if need and seen[text] >= need else 3 - gold
                reply = f"<think>Response {pick} answers the question better.</think><answer>{pick}</answer>"
                return chat_completion(reply, body.get("model", "scripted"))
            if behaviour == "critic":
                messages = body.get("messages", [])
                if not messages or messages[0].get("role") != "system" or "[Response 1]:" in text:
                    return JSONResponse({"error": "not a critique request"}, status_code=400)
                stats["images"] = stats.get("images", 0) + sum(
                    1 for m in messages if isinstance(m.get("content"), list)
                    for part in m["content"] if part.get("type") == "image_url")  # fmt: skip
                response = text.split("Response: ", 1)[1].rsplit("\n", 1)[0]
                if "[empty]" in response:
                    return chat_completion("", body.get("model", "scripted"))
                verdict = "right" if "(correct)" in response else "wrong"
                return chat_completion(f"Critique of {response}: {verdict}.", body.get("model", "scripted"))
            if behaviour == "position_biased":
                n_choices = int(body.get("n") or 1)
                greedy = float(body.get("temperature", 1.0)) == 0.0
                picks = [1] if greedy else [2 if i % 3 == 2 else 1 for i in range(n_choices)]
                out = chat_completion("", body.get("model", "scripted"))
                out["choices"] = [{"index": i, "message": {"role": "assistant",
                                   "content": f"<think>Response {p} comes first.</think><answer>{p}</answer>"},
                                   "finish_reason": "stop"} for i, p in enumerate(picks)]  # fmt: skip
                out["usage"] = {"prompt_tokens": len(text.split()), "completion_tokens": 8 * len(picks),
                                "total_tokens": len(text.split()) + 8 * len(picks)}  # fmt: skip
                return out
            verdict = synth_verdict(text) if behaviour == "synth" else rule_verdict(text)
            if behaviour == "echo":
                m = MARK_RE.search(text)
                echoed = text[m.end():] if m else text
                return chat_completion(f"The reasoning says: {echoed}\nVerdict: {verdict}", body.get("model", "scripted"))
            return chat_completion(verdict, body.get("model", "scripted"))
        finally:
            stats["in_flight"] -= 1

    return app


def _data_uri_image(url: str):
    """A PIL image from a ``data:image/...;base64,...`` URI (what our OpenAI clients send), decoded by
    ``r1reward_verl.data.records.load_image`` like every other image spec; never a server-side path."""
    import io
    from pathlib import Path

    from PIL import Image

    from r1reward_verl.data.records import load_image

    if not url.startswith("data:") or ";base64," not in url:
        raise ValueError(f"the tiny server takes images as base64 data URIs, got {url[:40]!r}")
    return Image.open(io.BytesIO(load_image(url, Path("/"))["bytes"])).convert("RGB")


def tiny_app(model_dir: str):
    import torch
    from fastapi import FastAPI, Request
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(model_dir)
    tokenizer = processor.tokenizer
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir).eval()
    lock = asyncio.Lock()
    app = FastAPI()

    stats = {"requests": 0, "images": 0}

    def _inputs(messages) -> dict:
        """The chat through the processor: text parts, and ``image_url`` parts (data URIs) as real images."""
        msgs, images = [], []
        for m in messages:
            c = m["content"]
            if isinstance(c, str):
                msgs.append({"role": m["role"], "content": c})
                continue
            parts = []
            for x in c:
                if x.get("type") == "text":
                    parts.append({"type": "text", "text": x.get("text", "")})
                elif x.get("type") == "image_url":
                    images.append(_data_uri_image(x["image_url"]["url"]))
                    parts.append({"type": "image"})
            msgs.append({"role": m["role"], "content": parts})
        text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        stats["images"] += len(images)
        return dict(processor(text=[text], images=images or None, return_tensors="pt"))

    def _vision(enc: dict) -> dict:
        return {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}

    @torch.no_grad()
    def _choose(enc, choices):
        ids = enc["input_ids"]
        best, best_lp = None, None
        for c in choices:
            cid = tokenizer(c, return_tensors="pt")["input_ids"]
            full = torch.cat([ids, cid], dim=1)
            logits = model(input_ids=full, attention_mask=torch.ones_like(full), **_vision(enc)).logits
            logp = torch.log_softmax(logits[0, :-1].float(), -1)
            lp = logp[ids.shape[1] - 1 :].gather(-1, cid[0, :, None]).sum().item()
            if best_lp is None or lp > best_lp:
                best, best_lp = c, lp
        return best

    @torch.no_grad()
    def _generate(enc, max_tokens):
        ids = enc["input_ids"]
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **_vision(enc), max_new_tokens=max_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    @app.get("/stats")
    async def get_stats():
        return dict(stats)

    @app.get("/health")
    async def health():
        return {"ok": True}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_dir, "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        stats["requests"] += 1
        choices = (body.get("structured_outputs") or {}).get("choice")
        async with lock:
            enc = await asyncio.to_thread(_inputs, body["messages"])
            if choices:
                content = await asyncio.to_thread(_choose, enc, choices)
            else:
                content = await asyncio.to_thread(_generate, enc, int(body.get("max_tokens") or 16))
        return chat_completion(content, body.get("model") or model_dir)

    return app


def main(argv=None):
    import uvicorn

    parser = argparse.ArgumentParser(description="OpenAI-compatible referee servers for tests and local trials.")
    sub = parser.add_subparsers(dest="kind", required=True)
    t = sub.add_parser("tiny")
    t.add_argument("--model", required=True)
    s = sub.add_parser("scripted")
    s.add_argument("--behaviour", default="rule", choices=["rule", "synth", "echo", "fail500", "non_json", "slow", "fail_first", "annotator", "critic", "position_biased"])
    s.add_argument("--latency", type=float, default=0.0)
    s.add_argument("--slow-seconds", type=float, default=30.0)
    s.add_argument("--fail-first", type=int, default=0)
    for p in (t, s):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.kind == "tiny":
        app = tiny_app(args.model)
    else:
        app = scripted_app(args.behaviour, args.latency, args.slow_seconds, args.fail_first)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=30)


if __name__ == "__main__":
    main()
