"""Live health of the OpenAI-compatible endpoints as Ray metrics (``ray.util.metrics``), per ``role``: the
consistency referee (``referee``) and the pairwise judge (``judge``), recorded by
``openai_client.chat_with_retries`` for every request of a call that names its role.

Ray exports them with the prefix ``ray_`` (and counters with the suffix ``_total``) on each node's
metrics port, for the Ray dashboard's Metrics tab, Prometheus and Grafana:

* ``ray_r1reward_requests_total{role}``: HTTP requests sent, retries included;
* ``ray_r1reward_request_failures_total{role,kind}``: requests that failed, by the client's error kind
  (``http_5xx``, ``http_408``, ``http_429``, ``http_<4xx>``, ``timeout``, ``connection``, ``bad_body``,
  the caller's refusal: ``not_a_verdict`` for the referee; ``exception``/``cancelled`` for a request
  ended by an unexpected exception or a cancellation);
* ``ray_r1reward_retries_total{role}``: requests that were retries of a failed one;
* ``ray_r1reward_calls_failed_total{role,kind}``: calls (one referee question, one order of a judge
  comparison) that still failed after their retries, by the last failure's kind: what the step's
  metrics later count as referee failures or the judge's ``failed_calls``;
* ``ray_r1reward_request_seconds{role}``: a histogram of each request's latency (``_bucket``,
  ``_count`` = the requests, ``_sum``; Ray 2.60 sums bucket midpoints, so ``_sum`` is approximate).

Only inside Ray (``ray.is_initialized()``, e.g. verl's reward-loop workers): the metrics are made at the
first request of the process, once. Without Ray (the eval, rank and annotate CLIs) nothing is made and
Ray is never imported. A metrics fault never fails a request: it is logged once at warning and the
metrics of the process are switched off.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Optional

# seconds: a referee answers one word in well under a second; a judge writes a reasoning (time-out 300 s)
LATENCY_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_metrics: Optional[dict[str, Any]] = None  # made once per process, inside Ray
_off = False  # a metrics fault switched them off for this process


def _made() -> Optional[dict[str, Any]]:
    global _metrics
    if _metrics is not None or _off:
        return _metrics
    ray = sys.modules.get("ray")  # not imported: not inside Ray, and no import cost here
    if ray is None or not ray.is_initialized():
        return None
    with _lock:
        if _metrics is None and not _off:
            try:
                from ray.util.metrics import Counter, Histogram

                _metrics = {
                    "requests": Counter("r1reward_requests", "HTTP requests to the endpoint, retries included",
                                        tag_keys=("role",)),
                    "failures": Counter("r1reward_request_failures", "HTTP requests that failed, by error kind",
                                        tag_keys=("role", "kind")),
                    "retries": Counter("r1reward_retries", "HTTP requests that retried a failed one",
                                       tag_keys=("role",)),
                    "calls_failed": Counter("r1reward_calls_failed", "calls that still failed after their retries, "
                                            "by the last failure's kind", tag_keys=("role", "kind")),
                    "seconds": Histogram("r1reward_request_seconds", "latency of each HTTP request (seconds)",
                                         boundaries=LATENCY_BOUNDARIES, tag_keys=("role",)),
                }  # fmt: skip
            except Exception as e:  # noqa: BLE001 - metrics never break a request
                _switch_off(e)
    return _metrics


def _switch_off(e: BaseException) -> None:
    global _metrics, _off
    if not _off:
        _off, _metrics = True, None
        log.warning("endpoint health metrics are off for this process: %s: %s", type(e).__name__, e)


def request_done(role: Optional[str], seconds: float, retry: bool, error: Optional[str]) -> None:
    """One HTTP request of ``role`` ended after ``seconds``; ``retry``: it retried a failed one; ``error``: its
    failure kind, None if it succeeded. Nothing without a role or outside Ray."""
    if role is None or (m := _made()) is None:
        return
    try:
        tags = {"role": role}
        m["requests"].inc(1, tags)
        m["seconds"].observe(seconds, tags)
        if retry:
            m["retries"].inc(1, tags)
        if error is not None:
            m["failures"].inc(1, {"role": role, "kind": error})
    except Exception as e:  # noqa: BLE001
        _switch_off(e)


def call_failed(role: Optional[str], error: str) -> None:
    """A call of ``role`` gave up: its last request failed with ``error``."""
    if role is None or (m := _made()) is None:
        return
    try:
        m["calls_failed"].inc(1, {"role": role, "kind": error})
    except Exception as e:  # noqa: BLE001
        _switch_off(e)
