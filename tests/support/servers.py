"""Start/stop the OpenAI-compatible test servers (``tests.support.fake_servers``) on 127.0.0.1, by their own pid; and
:func:`held_referee`, a referee in a thread of the test's process that answers only when the test releases a request."""

import asyncio
import collections
import contextlib
import sys
import tempfile
import threading
from pathlib import Path

from r1reward_verl.procs import Server, free_port


def closed_port() -> int:
    """A port nothing listens on (bound and released; nothing else here binds it in between)."""
    return free_port()


@contextlib.contextmanager
def running_server(*args, startup_timeout: float = 120.0):
    """``python -m tests.support.fake_servers ARGS --port P`` (:class:`r1reward_verl.procs.Server`: its own session,
    up when ``/health`` answers); yields ``127.0.0.1:P``; always stopped, with its session."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="r1r-server-") as d:
        log = Path(d) / "server.log"
        cmd = [sys.executable, "-m", "tests.support.fake_servers", *args, "--port", str(port)]
        try:
            server = Server(cmd, f"http://127.0.0.1:{port}/health", log, startup_timeout=startup_timeout).__enter__()
        except (RuntimeError, TimeoutError) as e:
            raise type(e)(f"{e}: {log.read_text(errors='replace')[-2000:]}") from None
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.__exit__(None, None, None)


class HeldReferee:
    """An OpenAI-compatible referee (the ``rule`` verdicts of ``tests.support.fake_servers``) on 127.0.0.1, served from a
    thread of the test's own process, that HOLDS every request until the test releases it (``hold=True``): a
    test then decides when each answer goes out instead of waiting on the clock, and a request it never
    releases is never answered (a client's time-out must fire). ``hold=False`` answers at once.

    ``stats``: requests, in_flight and peak_in_flight (requests the server held at once), connections
    (distinct client addresses), authorization (the header of each request, in arrival order).
    ``wait_until(pred)`` blocks until ``pred(stats)`` holds (the server notifies at every change);
    ``release(n)`` answers the n oldest held requests, or, if fewer are held, the next ones as they come.
    Use :func:`held_referee`, which stops it (and ends the requests still held) whatever happens.
    """

    def __init__(self, hold: bool = True):
        self.hold = hold
        self.stats = {"requests": 0, "in_flight": 0, "peak_in_flight": 0, "connections": 0, "authorization": []}
        self.addr = None
        self._cond = threading.Condition()
        self._peers: set = set()
        self._held: collections.deque = collections.deque()  # futures of held requests, oldest first (server loop only)
        self._permits = 0  # releases given before their request came (server loop only)
        self._loop = None

    def _changed(self, **delta) -> None:
        with self._cond:
            for k, v in delta.items():
                self.stats[k] += v
            self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], self.stats["in_flight"])
            self._cond.notify_all()

    async def _chat(self, request):
        from aiohttp import web

        from tests.support.fake_servers import chat_completion, user_text, rule_verdict

        body = await request.json()
        with self._cond:
            self._peers.add(request.transport.get_extra_info("peername") if request.transport else None)
            self.stats["connections"] = len(self._peers)
            self.stats["authorization"].append(request.headers.get("Authorization"))
        self._changed(requests=1, in_flight=1)
        try:
            if self.hold:
                if self._permits:
                    self._permits -= 1
                else:
                    fut = asyncio.get_running_loop().create_future()
                    self._held.append(fut)
                    if not await fut:  # the server stops
                        return web.json_response({"error": "server stopped"}, status=503)
            verdict = rule_verdict(user_text(body.get("messages", [])))
            return web.json_response(chat_completion(verdict, body.get("model", "held")))
        finally:
            self._changed(in_flight=-1)

    def _release(self, n: int, answer: bool = True) -> None:
        for _ in range(n):
            while self._held and self._held[0].done():  # a request whose handler is gone
                self._held.popleft()
            if self._held:
                self._held.popleft().set_result(answer)
            elif answer:
                self._permits += 1

    def release(self, n: int = 1) -> None:
        self._loop.call_soon_threadsafe(self._release, n)

    def wait_until(self, pred, timeout: float = 120.0) -> None:
        """Block until ``pred(stats)``; the time-out only stops a test that would otherwise hang (it is a failure)."""
        with self._cond:
            if not self._cond.wait_for(lambda: pred(self.stats), timeout):
                raise AssertionError(f"the referee never reached the expected state: {self.stats}")


@contextlib.contextmanager
def chat_server_in_thread(handler, *, setup=None, before_stop=None, timeout: float = 60.0):
    """An aiohttp app answering ``POST /v1/chat/completions`` with ``handler`` on 127.0.0.1 (a free port), on its own
    event loop in a daemon thread of the test's process; yields ``(loop, port)``. ``setup``: an async function run
    in that loop first; ``before_stop``: a function called in the loop before the server is cleaned up. On exit
    the server, its loop and its thread are stopped."""
    from aiohttp import web

    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def start():
        if setup is not None:
            await setup()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner = web.AppRunner(app)  # keep-alive 3630 s: idle connections are never closed during a test
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = site._server.sockets[0].getsockname()[1]

    def run():
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        finally:
            started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(timeout)
    try:
        if "port" not in holder:
            raise RuntimeError("the test server did not start")
        yield loop, holder["port"]
    finally:
        if "runner" in holder:
            if before_stop is not None:
                loop.call_soon_threadsafe(before_stop)
            asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()


@contextlib.contextmanager
def held_referee(hold: bool = True):
    """Start a :class:`HeldReferee` on 127.0.0.1 (a free port) in a background thread; yields it (``.addr`` =
    ``127.0.0.1:P``); on exit ends the requests still held (HTTP 503) and stops its loop and thread."""
    srv = HeldReferee(hold)

    async def setup():
        srv._loop = asyncio.get_running_loop()

    with chat_server_in_thread(srv._chat, setup=setup,
                               before_stop=lambda: srv._release(len(srv._held), answer=False)) as (_, port):  # fmt: skip
        srv.addr = f"127.0.0.1:{port}"
        yield srv
