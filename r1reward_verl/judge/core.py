"""A trained R1-Reward model as a pairwise judge: compare two answers, rank n candidates.

One comparison of answers A and B to a question (with images) asks the judge the Table 1 prompt
(``r1reward_verl.prompt.build_table1_prompt``, the same text as training and evaluation) in BOTH
orders, A as Response 1 then B as Response 1, so a position bias cancels. Each order's reply is read
with the strict parser (``r1reward_verl.reward.parse.parse_output``); with ``k > 1`` samples per
order the order's verdict is the majority of the parsable samples. An order's verdict counts 1 when
A wins, 0 when B wins, 1/2 for a tie of the votes, an unparsable reply or a judge call that failed
after its retries. The comparison's result is P(A wins) = the mean over the orders asked.

Schedulers over n candidates of one question (a "group"):

* ``round_robin``: every unordered pair once, in both orders: n(n-1) judge calls (n(n-1)/2
  without swap). Score of a candidate = the share of its comparisons won (its mean P(win)), in
  [0, 1]; ranking = scores descending, input order among equals.
* ``knockout``: a single-elimination bracket over the candidates in input order as seeds 1..n,
  standard seeding (1 meets the last seed, ...) in a bracket of the next power of two P; the P - n
  byes go to the top seeds in the first round only, so every later round is full. n - 1 matches:
  2(n-1) judge calls with swap. A match's winner has P(win) > 1/2; at exactly 1/2 (the judge could not
  separate them) the better seed goes on. Score = (round reached - 1) / R with R = log2 P rounds:
  the champion 1, a first-round loser 0. Ranking: round reached descending, then the P(win) of the
  match lost descending (a close loss ranks above a clear one), then input order.

Judge calls: one call = one order of one comparison = one request to the judge asking for ``k``
samples (OpenAI ``n = k``: the server processes the prompt once; the transformers/vLLM backends
likewise). ``JudgeStats.calls`` counts them, ``attempts`` the HTTP requests including retries,
``samples`` the outputs asked for (calls x k). A call that still fails after the shared client's
retries (``openai_client.chat_with_retries``) gives k unparsable outputs: counted in ``failed_calls``,
``unparsable`` and ``errors``, worth 1/2; nothing raises (a reward in training goes on). With
``fail_fast=True`` (``python -m r1reward_verl.judge.rank``: a failed call is never a result) the schedulers
raise :class:`JudgeFailed` after the first batch that had a failed call instead: a knockout bracket
stops at that round.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Protocol, Sequence

from r1reward_verl.openai_client import (chat_url, chat_with_retries, n_choice_payload, n_choice_texts, required_api_key,
                                         table1_messages)
from r1reward_verl.reward.parse import parse_output

MODES = ("round_robin", "knockout")


@dataclass(frozen=True)
class PairPrompt:
    """What one judge call shows: the question, its images (encoded bytes) and two responses in order."""

    question: str
    images: tuple[bytes, ...]
    response_1: str
    response_2: str


@dataclass
class JudgeReply:
    outputs: list[Optional[str]]  # k outputs; None: the call failed
    attempts: int = 1  # requests sent for this call (retries included)
    error: Optional[str] = None  # kind of the last failure of a failed call


class Judge(Protocol):
    async def judge(self, prompts: Sequence[PairPrompt], k: int) -> list[JudgeReply]: ...


def openai_messages(p: PairPrompt) -> list[dict]:
    """The Table 1 prompt as an OpenAI chat message (:func:`r1reward_verl.openai_client.table1_messages`, as the
    annotator sends it)."""
    return table1_messages(p.question, p.response_1, p.response_2, list(p.images))


class OpenAIJudge:
    """A judge behind any OpenAI-compatible ``/v1/chat/completions`` endpoint (``vllm serve`` of the trained
    model, verl's reward router, a hosted API), through the project's shared client: one HTTP session per
    event loop, a per-request time-out, retries with backoff on transport faults, never raising.

    ``temperature``: default 0 (greedy) for k = 1 and 1.0 for k > 1 (voting needs samples).
    ``concurrency`` caps this judge's requests in flight per event loop.
    """

    def __init__(self, base_url: str, model: Optional[str] = None, *, api_key: Optional[str] = None,
                 api_key_env: Optional[str] = None, temperature: Optional[float] = None, top_p: float = 1.0,
                 max_tokens: int = 1024, timeout: float = 300.0, max_retries: int = 3, backoff: float = 0.5,
                 concurrency: int = 16):  # fmt: skip
        self.url = chat_url(base_url)
        self.model = model
        self.api_key = required_api_key(api_key_env, api_key)
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.concurrency = concurrency
        self._sems: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = weakref.WeakKeyDictionary()

    def _sem(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._sems.get(loop)
        if sem is None:
            sem = self._sems[loop] = asyncio.Semaphore(self.concurrency)
        return sem

    async def _one(self, p: PairPrompt, k: int) -> JudgeReply:
        temperature = self.temperature if self.temperature is not None else (0.0 if k == 1 else 1.0)
        payload = n_choice_payload(openai_messages(p), k, temperature, self.top_p, self.max_tokens, self.model)

        def extract(body):
            return n_choice_texts(body, k)

        try:
            async with self._sem():
                texts, attempts, error = await chat_with_retries(
                    self.url, payload, api_key=self.api_key, timeout=self.timeout, max_retries=self.max_retries,
                    backoff=self.backoff, extract=extract, role="judge")  # fmt: skip
        except Exception as e:  # noqa: BLE001 - a judge fault must never fail the caller
            return JudgeReply([None] * k, 1, f"exception:{type(e).__name__}")
        if texts is None:
            return JudgeReply([None] * k, attempts, error)
        return JudgeReply(list(texts), attempts, None)

    async def judge(self, prompts: Sequence[PairPrompt], k: int) -> list[JudgeReply]:
        return list(await asyncio.gather(*[self._one(p, k) for p in prompts]))


class BackendJudge:
    """A judge run by an evaluation backend (``r1reward_verl.eval.backends``: transformers, vLLM): the same
    chat layout as the evaluator (``eval.runner.table1_request``: images, then the Table 1 text). One batch per scheduler step
    goes to ``backend.run`` in a worker thread, one at a time. k = 1: the greedy output; k > 1: k samples from
    one request (the prompt is processed once). A backend error fails the calls of that batch (1/2 each)."""

    def __init__(self, backend: Any):
        self.backend = backend
        self._lock: Optional[asyncio.Lock] = None

    def _request(self, p: PairPrompt, k: int):
        from r1reward_verl.eval.runner import table1_request

        return table1_request(p.question, p.response_1, p.response_2, list(p.images), greedy=k == 1, n=0 if k == 1 else k)

    async def judge(self, prompts: Sequence[PairPrompt], k: int) -> list[JudgeReply]:
        if not prompts:
            return []
        if self._lock is None:
            self._lock = asyncio.Lock()
        try:
            requests = [self._request(p, k) for p in prompts]
            async with self._lock:
                results = await asyncio.to_thread(self.backend.run, requests, False)
        except Exception as e:  # noqa: BLE001
            return [JudgeReply([None] * k, 1, f"exception:{type(e).__name__}") for _ in prompts]
        return [JudgeReply([r.greedy] if k == 1 else list(r.samples)) for r in results]


# ---------------------------------------------------------------------------------------------- comparisons


class JudgeFailed(Exception):
    """A group's judging stopped (``fail_fast``): a judge call failed after its retries. ``stats``: the counters of
    the calls made so far; ``error``: the most frequent error kind."""

    def __init__(self, stats: "JudgeStats"):
        self.stats = stats
        self.error = max(sorted(stats.errors), key=stats.errors.get) if stats.errors else "failed"
        super().__init__(f"{stats.failed_calls} of {stats.calls} judge calls failed ({self.error})")


@dataclass
class JudgeStats:
    calls: int = 0  # judge calls: one order of one comparison, k samples each
    attempts: int = 0  # requests sent, retries included
    samples: int = 0  # outputs asked for (calls x k)
    unparsable: int = 0  # outputs without a strict answer, failed calls' outputs included
    failed_calls: int = 0  # calls that failed after their retries
    comparisons: int = 0
    position_agreement: int = 0  # comparisons asked in both orders whose two verdicts pick the same answer
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, other: "JudgeStats") -> None:
        for f in ("calls", "attempts", "samples", "unparsable", "failed_calls", "comparisons", "position_agreement"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Comparison:
    a: int
    b: int
    p_a: float  # P(a wins): mean over the orders asked of 1 (a won), 0 (b won), 1/2 (tie or unparsable)
    verdicts: list[Optional[int]]  # per order asked (a first, then b first): the winner's index or None


def order_verdict(outputs: Sequence[Optional[str]]) -> tuple[Optional[int], int]:
    """(position 1 or 2 that won the vote, or None for a tie / nothing parsable; number of unparsable outputs)."""
    votes = {1: 0, 2: 0}
    bad = 0
    for o in outputs:
        pred = parse_output(o).pred if isinstance(o, str) else None
        if pred is None:
            bad += 1
        else:
            votes[pred] += 1
    if votes[1] == votes[2]:
        return None, bad
    return (1 if votes[1] > votes[2] else 2), bad


async def compare_pairs(judge: Judge, question: str, images: Sequence[bytes], candidates: Sequence[str],
                        pairs: Sequence[tuple[int, int]], *, k: int = 1, swap: bool = True,
                        stats: Optional[JudgeStats] = None) -> list[Comparison]:  # fmt: skip
    """Compare each (a, b) of ``pairs``: one batch of judge calls, both orders when ``swap``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    stats = stats if stats is not None else JudgeStats()
    imgs = tuple(images)
    from r1reward_verl.judge.scalar import is_scalar_judge

    if is_scalar_judge(judge):
        return await scalar_comparisons(judge, question, imgs, candidates, pairs, swap=swap, stats=stats)
    prompts, where = [], []
    for i, (a, b) in enumerate(pairs):
        prompts.append(PairPrompt(question, imgs, candidates[a], candidates[b]))
        where.append((i, a, b))
        if swap:
            prompts.append(PairPrompt(question, imgs, candidates[b], candidates[a]))
            where.append((i, b, a))
    replies = await judge.judge(prompts, k)
    per_pair: list[list[Optional[int]]] = [[] for _ in pairs]
    for (i, first, second), reply in zip(where, replies):
        stats.calls += 1
        stats.samples += k
        stats.attempts += reply.attempts
        if reply.error is not None or all(o is None for o in reply.outputs):
            stats.failed_calls += 1
            kind = reply.error or "no_output"
            stats.errors[kind] = stats.errors.get(kind, 0) + 1
        pos, bad = order_verdict(reply.outputs)
        stats.unparsable += bad + max(0, k - len(reply.outputs))
        per_pair[i].append(None if pos is None else (first if pos == 1 else second))
    out = []
    for (a, b), verdicts in zip(pairs, per_pair):
        p_a = sum(0.5 if v is None else float(v == a) for v in verdicts) / len(verdicts)
        stats.comparisons += 1
        if len(verdicts) == 2 and verdicts[0] is not None and verdicts[0] == verdicts[1]:
            stats.position_agreement += 1
        out.append(Comparison(a, b, p_a, verdicts))
    return out


def bt_probability(r_a: float, r_b: float) -> float:
    """P(a beats b) = σ(r_a − r_b) under the Bradley-Terry model a scalar reward model is trained for."""
    return 1.0 / (1.0 + math.exp(-(r_a - r_b)))


async def scalar_comparisons(judge, question: str, images: tuple, candidates: Sequence[str],
                             pairs: Sequence[tuple[int, int]], *, swap: bool, stats: JudgeStats) -> list[Comparison]:  # fmt: skip
    """:func:`compare_pairs` for a scalar judge (``judge.scalar``): each candidate of ``pairs`` scored once (one
    call each), P(a wins) = :func:`bt_probability`; the verdict is the higher reward, the same in both orders."""
    involved = sorted({i for pair in pairs for i in pair})
    rewards, error = await judge.rewards(question, images, [candidates[i] for i in involved])
    stats.calls += len(involved)
    stats.samples += len(involved)
    stats.attempts += len(involved)
    if rewards is None:
        stats.failed_calls += len(involved)
        stats.errors[error] = stats.errors.get(error, 0) + len(involved)
    r = dict(zip(involved, rewards or []))
    out = []
    for a, b in pairs:
        stats.comparisons += 1
        if rewards is None:
            out.append(Comparison(a, b, 0.5, [None] * (2 if swap else 1)))
            continue
        winner = a if r[a] > r[b] else b if r[b] > r[a] else None
        if swap and winner is not None:
            stats.position_agreement += 1
        out.append(Comparison(a, b, bt_probability(r[a], r[b]), [winner] * (2 if swap else 1)))
    return out


async def compare(judge: Judge, question: str, images: Sequence[bytes], answer_a: str, answer_b: str, *, k: int = 1,
                  swap: bool = True) -> tuple[float, JudgeStats]:  # fmt: skip
    """P(answer_a wins) against answer_b, and the counters of its judge calls."""
    stats = JudgeStats()
    (c,) = await compare_pairs(judge, question, images, [answer_a, answer_b], [(0, 1)], k=k, swap=swap, stats=stats)
    return c.p_a, stats


# ---------------------------------------------------------------------------------------------- schedulers


@dataclass
class GroupResult:
    ranking: list[int]  # candidate indices, best first
    scores: list[float]  # per candidate, in [0, 1]
    stats: JudgeStats
    comparisons: list[Comparison]
    rounds_reached: Optional[list[int]] = None  # knockout only


async def round_robin(judge: Judge, question: str, images: Sequence[bytes], candidates: Sequence[str], *, k: int = 1,
                      swap: bool = True, fail_fast: bool = False) -> GroupResult:  # fmt: skip
    n = len(candidates)
    stats = JudgeStats()
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    comps = await compare_pairs(judge, question, images, candidates, pairs, k=k, swap=swap, stats=stats)
    if fail_fast and stats.failed_calls:
        raise JudgeFailed(stats)
    won = [0.0] * n
    for c in comps:
        won[c.a] += c.p_a
        won[c.b] += 1.0 - c.p_a
    scores = [w / (n - 1) for w in won] if n > 1 else [1.0] * n
    ranking = sorted(range(n), key=lambda i: (-scores[i], i))
    return GroupResult(ranking, scores, stats, comps)


def seed_order(size: int) -> list[int]:
    """Standard bracket seeding (1-based) for ``size`` (a power of two) slots: 1, size, size/2+... e.g. 8 ->
    [1, 8, 4, 5, 2, 7, 3, 6]: seed 1 meets 8, 4 meets 5, and 1 and 2 can only meet in the final."""
    order = [1]
    while len(order) < size:
        m = 2 * len(order) + 1
        order = [x for s in order for x in (s, m - s)]
    return order


async def knockout(judge: Judge, question: str, images: Sequence[bytes], candidates: Sequence[str], *, k: int = 1,
                   swap: bool = True, fail_fast: bool = False) -> GroupResult:  # fmt: skip
    n = len(candidates)
    stats = JudgeStats()
    size = 1 << max(0, math.ceil(math.log2(n))) if n > 1 else 1
    rounds = int(math.log2(size))
    # slots in bracket order; a seed above n is a bye (None)
    slots: list[Optional[int]] = [s - 1 if s <= n else None for s in seed_order(size)]
    reached = [rounds + 1] * n  # round in which each lost; the champion keeps rounds + 1
    lost_p = [1.0] * n  # P(win) in the match each lost
    comps: list[Comparison] = []
    for rnd in range(1, rounds + 1):
        matches = [(slots[i], slots[i + 1]) for i in range(0, len(slots), 2)]
        real = [(a, b) for a, b in matches if a is not None and b is not None]
        results = await compare_pairs(judge, question, images, candidates, real, k=k, swap=swap, stats=stats)
        if fail_fast and stats.failed_calls:
            raise JudgeFailed(stats)
        comps += results
        by_pair = {(c.a, c.b): c for c in results}
        nxt: list[Optional[int]] = []
        for a, b in matches:
            if a is None or b is None:  # a bye (first round only: the top seeds)
                nxt.append(a if b is None else b)
                continue
            c = by_pair[(a, b)]
            # at exactly 1/2 the better seed (lower index) goes on
            a_wins = c.p_a > 0.5 or (c.p_a == 0.5 and a < b)
            winner, loser = (a, b) if a_wins else (b, a)
            reached[loser] = rnd
            lost_p[loser] = c.p_a if loser == a else 1.0 - c.p_a
            nxt.append(winner)
        slots = nxt
    scores = [(r - 1) / rounds for r in reached] if rounds else [1.0] * n
    ranking = sorted(range(n), key=lambda i: (-reached[i], -lost_p[i], i))
    return GroupResult(ranking, scores, stats, comps, rounds_reached=reached)


async def rank_group(judge: Judge, question: str, images: Sequence[bytes], candidates: Sequence[str], *,
                     mode: str = "round_robin", k: int = 1, swap: bool = True,
                     fail_fast: bool = False) -> GroupResult:  # fmt: skip
    """Rank ``candidates`` by ``mode``; ``fail_fast``: raise :class:`JudgeFailed` at the first failed call's batch
    (default: a failed call counts 1/2 and the group is ranked anyway, as a reward in training needs)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if len(candidates) < 1:
        raise ValueError("no candidates")
    fn = round_robin if mode == "round_robin" else knockout
    return await fn(judge, question, images, candidates, k=k, swap=swap, fail_fast=fail_fast)


def expected_calls(n: int, mode: str, *, swap: bool = True) -> int:
    """Judge calls of one group of n candidates (each call asks k samples): round robin n(n-1)/2 comparisons,
    knockout n-1 matches; times 2 with swap."""
    comparisons = n * (n - 1) // 2 if mode == "round_robin" else max(0, n - 1)
    return comparisons * (2 if swap else 1)
