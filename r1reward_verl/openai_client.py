"""The OpenAI-compatible chat-completions client shared by the consistency referee
(``r1reward_verl.reward.referee``), the cold-start annotator (``preprocess.annotate``) and the
evaluation backend (``r1reward_verl.eval.backends.OpenAIBackend``).

* One ``aiohttp.ClientSession`` per event loop, i.e. per worker: verl's reward-loop worker runs one
  loop for its life, the annotator and the evaluation one ``asyncio.run`` each. Its connection pool
  keeps connections alive across requests instead of opening one per request. The pool has no cap of
  its own (``limit=0``): callers cap their requests in flight (``referee_max_concurrency``,
  ``--concurrency``). Idle connections are dropped after 4 s, before the 5 s after which uvicorn-based
  servers (vLLM, SGLang) close them, so a request rarely meets a connection the server just closed
  (and if it does, it is a ``connection`` fault and retried). The session is closed when its loop is
  shut down by ``asyncio.run`` (``loop.shutdown_asyncgens``).
* ``chat_with_retries``: a per-request time-out and bounded retries with exponential backoff for
  transport faults (HTTP 408/429/5xx, time-outs, connection errors, bodies that cannot be read); other
  4xx and replies the caller refuses (``accept``) are not retried. Never raises for these: it returns
  the error kind. A call that names its ``role`` (the referee, the pairwise judge) records each request
  in the live health metrics (``r1reward_verl.openai_health``: Ray metrics, only inside Ray).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import time
from typing import Any, AsyncIterator, Callable, Optional

import aiohttp

from r1reward_verl import openai_health as health

KEEPALIVE_S = 4.0  # below uvicorn's default timeout_keep_alive (5 s), which vLLM and SGLang servers use

# event loop -> (its session, the async generator that closes it at the loop's shutdown)
_SESSIONS: dict[asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, Any]] = {}


def chat_url(base_or_address: str) -> str:
    """``host:port`` (verl's router), ``http://h:p``, ``.../v1`` or a full ``.../chat/completions`` URL."""
    u = base_or_address.strip().rstrip("/")
    if not u.startswith(("http://", "https://")):
        u = "http://" + u
    if u.endswith("/chat/completions"):
        return u
    if not u.endswith("/v1"):
        u += "/v1"
    return u + "/chat/completions"


def api_key_from_env(var: Optional[str]) -> Optional[str]:
    """The API key from the named environment variable (never from a config file)."""
    if not var:
        return None
    return os.environ.get(var) or None


def image_url_part(data: bytes) -> dict:
    """An image (encoded bytes) as an OpenAI chat ``image_url`` content part with a data URI."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        mime = Image.MIME.get(im.format, "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def required_api_key(api_key_env: Optional[str], api_key: Optional[str] = None) -> Optional[str]:
    """The API key: ``api_key``, else the value of the environment variable NAMED ``api_key_env``; a named variable
    that is not set is a ValueError (never a silent request without the key)."""
    key = api_key or api_key_from_env(api_key_env)
    if api_key_env and not key:
        raise ValueError(f"environment variable {api_key_env} (the API key) is not set")
    return key


def n_choice_payload(messages: list[dict], n: int, temperature: float, top_p: float, max_tokens: int,
                     model: Optional[str]) -> dict:  # fmt: skip
    """A chat-completions body asking for ``n`` choices (``model`` only when named)."""
    payload: dict[str, Any] = {"messages": messages, "n": n, "temperature": temperature, "top_p": top_p,
                               "max_tokens": max_tokens}  # fmt: skip
    if model:
        payload["model"] = model
    return payload


def n_choice_texts(body: dict, n: int) -> list[str]:
    """The ``n`` texts of a reply to :func:`n_choice_payload`; any other shape is a ValueError (a bad body)."""
    texts = [c["message"]["content"] for c in body["choices"]]
    if len(texts) != n or not all(isinstance(t, str) for t in texts):
        raise ValueError("wrong number of choices")
    return texts


def resolve_endpoint(role: str, mode: str, router_address: Optional[str], base_url: Optional[str],
                     model: Optional[str], tokenizer: Any = None, can_be_off: bool = False
                     ) -> tuple[str, Optional[str], Optional[str]]:  # fmt: skip
    """Where the referee or the judge (``role``) is asked: ``hosted`` (verl's reward-model router, the model named
    after its tokenizer unless given), ``endpoint`` (``<role>_base_url``) or, if ``can_be_off``, ``off``; ``auto``
    prefers hosted, then an endpoint if a base URL is set (the judge always has one), then off. Returns
    ``(mode, base URL or None, model)``; a setting that cannot work is a ValueError naming the option."""
    modes = ("auto", "hosted", "endpoint") + (("off",) if can_be_off else ())
    if mode not in modes:
        raise ValueError(f"{role} must be {', '.join(modes[:-1])} or {modes[-1]}, got {mode!r}")
    if mode == "auto":
        mode = "hosted" if router_address else ("endpoint" if base_url or not can_be_off else "off")
    if mode == "off":
        return "off", None, model
    if mode == "hosted":
        if not router_address:
            raise ValueError(f"{role}=hosted needs verl's reward_router_address: set reward.reward_model.enable=True "
                             "and reward.reward_model.enable_resource_pool=True")
        return "hosted", router_address, model or getattr(tokenizer, "name_or_path", None)
    if not base_url:
        raise ValueError(f"{role}=endpoint needs {role}_base_url")
    return "endpoint", base_url, model


def table1_messages(question: str, response_1: str, response_2: str, images: list[bytes]) -> list[dict]:
    """R1-Reward's Table 1 prompt (``r1reward_verl.prompt``) as one OpenAI user message, the images first as data
    URIs: what the annotator and the pairwise judge send."""
    from r1reward_verl.prompt import build_table1_prompt

    content: list[dict] = [image_url_part(im) for im in images]
    content.append({"type": "text", "text": build_table1_prompt(question, response_1, response_2)})
    return [{"role": "user", "content": content}]


def first_content(body: Any) -> str:
    """``choices[0].message.content`` of an OpenAI chat completion (raises on any other shape)."""
    content = body["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise TypeError("content is not a string")
    return content


async def _close_at_shutdown(loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> AsyncIterator[None]:
    """Held open while the loop runs; the loop's ``shutdown_asyncgens`` (run by ``asyncio.run``) closes it."""
    try:
        yield
    finally:
        if _SESSIONS.get(loop, (None,))[0] is session:
            del _SESSIONS[loop]
        await session.close()


async def session() -> aiohttp.ClientSession:
    """The session of the running event loop, made at its first use."""
    loop = asyncio.get_running_loop()
    entry = _SESSIONS.get(loop)
    if entry is not None and not entry[0].closed:
        return entry[0]
    for other in [lp for lp in list(_SESSIONS) if lp.is_closed()]:  # loops closed without shutdown_asyncgens
        _SESSIONS.pop(other, None)
    s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S))
    closer = _close_at_shutdown(loop, s)
    _SESSIONS[loop] = (s, closer)
    await closer.__anext__()  # first iterated inside the loop: the loop now tracks it and closes it at shutdown
    return s


class _Retryable(Exception):
    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


class _Fatal(Exception):
    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


async def _post_once(s: aiohttp.ClientSession, url: str, payload: dict, api_key: Optional[str], timeout: float,
                     extract: Callable[[Any], Any]) -> Any:  # fmt: skip
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with s.post(url, json=payload, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            body = await resp.read()
            if resp.status in (408, 429) or resp.status >= 500:
                raise _Retryable(f"http_{resp.status // 100}xx" if resp.status >= 500 else f"http_{resp.status}")
            if resp.status >= 400:
                raise _Fatal(f"http_{resp.status}")
    except asyncio.TimeoutError:
        raise _Retryable("timeout") from None
    except aiohttp.ClientError:
        raise _Retryable("connection") from None
    try:
        return extract(json.loads(body))
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retryable("bad_body") from None


async def chat_with_retries(
    url: str,
    payload: dict,
    *,
    api_key: Optional[str] = None,
    timeout: float = 60.0,
    max_retries: int = 3,
    backoff: float = 0.5,
    accept: Callable[[Any], bool] = lambda content: True,
    refused: str = "refused",
    extract: Callable[[Any], Any] = first_content,
    role: Optional[str] = None,
) -> tuple[Any, int, Optional[str]]:
    """POST an OpenAI chat completion with bounded retries; returns ``(extract(body) or None, attempts, error kind)``.

    ``extract`` takes what is needed from the JSON body (default: ``choices[0].message.content``).
    Retried (transport faults): HTTP 408/429/5xx, time-outs (``timeout`` seconds per request, all of
    it), connection errors, bodies ``extract`` cannot read; the delay before retry r (0-based) is
    ``min(backoff * 2**r, 8)`` seconds times a random factor in [0.5, 1]. Not retried: other 4xx, and a
    value ``accept`` refuses (error kind ``refused``): the server answered, and asking again for a
    deterministic reply brings the same one back. Never raises for these.

    ``role`` (``referee``, ``judge``): every request is recorded in that role's live health metrics
    (``r1reward_verl.openai_health``, Ray metrics, only inside Ray); None records nothing.
    """
    s = await session()
    attempts, error = 0, None
    for attempt in range(max_retries + 1):
        attempts = attempt + 1
        t0 = time.perf_counter()
        try:
            content = await _post_once(s, url, payload, api_key, timeout, extract)
            error, retryable = (None if accept(content) else refused), False
        except _Retryable as e:
            error, retryable = e.kind, True
        except _Fatal as e:
            error, retryable = e.kind, False
        except BaseException as e:  # not a fault of the endpoint's: recorded, then raised
            error = "cancelled" if isinstance(e, asyncio.CancelledError) else "exception"
            health.request_done(role, time.perf_counter() - t0, attempt > 0, error)
            health.call_failed(role, error)
            raise
        health.request_done(role, time.perf_counter() - t0, attempt > 0, error)
        if error is None:
            return content, attempts, None
        if not retryable or attempt == max_retries:
            break
        delay = min(backoff * (2**attempt), 8.0)
        await asyncio.sleep(delay * (0.5 + random.random() / 2))
    if error is not None:  # None only when max_retries < 0 sent nothing
        health.call_failed(role, error)
    return None, attempts, error
