"""Prometheus metrics at `/metrics`: counters live in Redis hashes, so every web and worker
process adds to the same totals and any process can answer a scrape.

Each counter is a field of one hash (`keys.metrics(<family>)`). Webhook requests are counted
in the process and added by a background thread once a second (no round trip on the hop);
appointment changes, message status changes and session-end notices add a command to the
transaction that makes the change. Queue depths are read at scrape time.
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time

from flask import Blueprint, Response, current_app

from . import keys
from .services import QUEUE_NAMES

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds; a USSD hop should sit in the first buckets, the gateways give up after 10-15 s
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INF = "+Inf"
SESSION_STATUSES = frozenset({"Success", "Incomplete", "Failed"})
_NETWORK = re.compile(r"^\d{1,8}$")  # MCC+MNC; anything else is folded into "other"

WEB, MESSAGES, APPOINTMENTS, SESSIONS = "web", "messages", "appointments", "ussd_end"
SHED = "ussd_shed"


# ---- recording (each adds to a pipeline the caller executes, except `observe_webhook`) ----
def count_message(pipe, purpose: str, status: str) -> None:
    """A message entered `status` (queued, sending, sent, retrying, delivered, failed, denied)."""
    pipe.hincrby(keys.metrics(MESSAGES), f"{purpose or '-'}|{status}", 1)


def count_appointment(pipe, event: str) -> None:
    """An audited appointment change: booked, verified, vaccinated, locked, disputed, ..."""
    pipe.hincrby(keys.metrics(APPOINTMENTS), str(event), 1)


def count_session_end(pipe, status: str, network: str) -> None:
    """A USSD session-end notice, by its status and the subscriber's network."""
    status = status if status in SESSION_STATUSES else "other"
    network = network if _NETWORK.match(network or "") else ("unknown" if not network else "other")
    pipe.hincrby(keys.metrics(SESSIONS), f"{status}|{network}", 1)


def count_shed(redis) -> None:
    """A new USSD session answered "busy, try again" by load shedding (`gateway.shedding`)."""
    redis.hincrby(keys.metrics(SHED), "shed", 1)


def bucket_of(seconds: float) -> str:
    """The histogram bucket (upper bound, as its label) a latency falls in."""
    for bound in BUCKETS:
        if seconds <= bound:
            return _num(bound)
    return INF


class WebCounters:
    """This process's webhook counts, added to Redis by a background thread once a second.

    A webhook then costs no Redis round trip of its own, and every process's counts reach
    the shared hash within about a second, whichever process is scraped. A process killed
    outright loses at most its last second of samples.
    """

    def __init__(self, every: float = 1.0):
        self.every = every
        self._lock = threading.Lock()  # the pending counts
        self._flushing = threading.Lock()  # one flush at a time
        self._pending: dict[str, int] = {}
        self._redis = None
        self._pid = 0  # the process whose flusher thread runs (a fork needs its own)

    def add(self, redis, endpoint: str, status: int, seconds: float) -> None:
        fields = {f"req|{endpoint}|{status}": 1, f"le|{endpoint}|{bucket_of(seconds)}": 1,
                  f"us|{endpoint}": int(seconds * 1_000_000)}
        with self._lock:
            for name, amount in fields.items():
                self._pending[name] = self._pending.get(name, 0) + amount
            self._redis = redis
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._keep_flushing, name="metrics-flush",
                                 daemon=True).start()

    def _keep_flushing(self) -> None:
        while True:
            time.sleep(self.every)
            self.flush()

    def flush(self, redis=None, keep_unwritten: bool = True) -> None:
        """Write the pending counts; returns once they are written, including those a flush
        running in another thread had taken (requests only wait for the short `_lock`)."""
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, {}
                redis = redis or self._redis
            if not pending or redis is None:
                return
            try:
                pipe = redis.pipeline(transaction=False)
                for name, amount in pending.items():
                    pipe.hincrby(keys.metrics(WEB), name, amount)
                pipe.execute()
            # Kept for the next flush; a request never fails for it, and the flushing thread
            # never dies of it (a client closed under it raises more than Redis errors).
            except Exception as exc:  # noqa: BLE001
                if keep_unwritten:
                    with self._lock:
                        for name, amount in pending.items():
                            self._pending[name] = self._pending.get(name, 0) + amount
                log.warning("webhook metrics not flushed: %s", type(exc).__name__)


_webhooks = WebCounters()
atexit.register(_webhooks.flush)


def flush_webhook_counts(drop_unwritten: bool = False) -> None:
    """Write this process's pending webhook counts now, not within the next second;
    `drop_unwritten` forgets those that could not be written (their store is gone)."""
    _webhooks.flush(keep_unwritten=not drop_unwritten)


def observe_webhook(redis, endpoint: str, status: int, seconds: float) -> None:
    """One webhook request, written at once (tests, one-off tools)."""
    _webhooks.add(redis, endpoint, status, seconds)
    _webhooks.flush(redis)


def after_response(response: Response, redis, endpoint: str, seconds: float) -> None:
    """Count one webhook request; the flusher thread writes it within a second."""
    _webhooks.add(redis, endpoint, response.status_code, seconds)


# ---- reading ----
def queue_depths(services) -> dict[str, dict[str, int]]:
    """queue -> {queued, scheduled, started, failed} job counts, in one round trip."""
    pipe = services.queue_redis.pipeline(transaction=False)
    for name in QUEUE_NAMES:
        q = services.queue(name)
        pipe.llen(q.key)
        for registry in (q.scheduled_job_registry, q.started_job_registry, q.failed_job_registry):
            pipe.zcard(registry.key)
    counts = pipe.execute()
    return {name: dict(zip(("queued", "scheduled", "started", "failed"), counts[i * 4:i * 4 + 4]))
            for i, name in enumerate(QUEUE_NAMES)}


def counters(redis) -> dict[str, dict[str, int]]:
    """Every counter family as stored: family -> {field: value}."""
    pipe = redis.pipeline(transaction=False)
    families = (WEB, MESSAGES, APPOINTMENTS, SESSIONS, SHED)
    for family in families:
        pipe.hgetall(keys.metrics(family))
    return {family: {k: int(v) for k, v in raw.items()} for family, raw in zip(families, pipe.execute())}


def render(services) -> str:
    """The Prometheus text exposition of every metric."""
    _webhooks.flush(services.redis)  # this process's last second, so a scrape sees it
    data = counters(services.redis)
    out: list[str] = []
    _web(out, data[WEB])
    _family(out, "teeka_messages_total", "counter",
            "Outbound messages entering a status, by purpose.",
            [({"purpose": p, "status": s}, v) for (p, s), v in _split(data[MESSAGES], 2)])
    _family(out, "teeka_appointment_events_total", "counter",
            "Appointment changes written to the audit stream "
            "(booked, verified, vaccinated, locked, disputed, cancelled, wrong_code).",
            [({"event": e}, v) for (e,), v in _split(data[APPOINTMENTS], 1)])
    _family(out, "teeka_ussd_sessions_ended_total", "counter",
            "USSD session-end notices, by status and network code.",
            [({"status": s, "network": n}, v) for (s, n), v in _split(data[SESSIONS], 2)])
    _family(out, "teeka_ussd_sessions_shed_total", "counter",
            "New USSD sessions answered 'busy, try again' by load shedding.",
            [({}, data[SHED].get("shed", 0))])
    depths = queue_depths(services)
    _family(out, "teeka_queue_jobs", "gauge", "RQ jobs per queue and state.",
            [({"queue": q, "state": st}, n) for q, by in depths.items() for st, n in by.items()])
    return "\n".join(out) + "\n"


def _web(out: list[str], web: dict[str, int]) -> None:
    requests, buckets, sums = [], {}, {}
    for name, value in sorted(web.items()):
        kind, _, rest = name.partition("|")
        if kind == "req":
            endpoint, _, status = rest.rpartition("|")
            requests.append(({"endpoint": endpoint, "status": status}, value))
        elif kind == "le":
            endpoint, _, le = rest.rpartition("|")
            buckets.setdefault(endpoint, {})[le] = value
        elif kind == "us":
            sums[rest] = value
    _family(out, "teeka_webhook_requests_total", "counter",
            "Webhook requests by endpoint and HTTP status.", requests)
    name = "teeka_webhook_duration_seconds"
    out.append(f"# HELP {name} Time to answer a webhook, from the request to the answer.")
    out.append(f"# TYPE {name} histogram")
    for endpoint in sorted(set(buckets) | set(sums)):
        seen = buckets.get(endpoint, {})
        running = 0
        for bound in [_num(b) for b in BUCKETS] + [INF]:
            running += seen.get(bound, 0)
            out.append(f"{name}_bucket{_labels({'endpoint': endpoint, 'le': bound})} {running}")
        out.append(f"{name}_sum{_labels({'endpoint': endpoint})} {sums.get(endpoint, 0) / 1e6:.6f}")
        out.append(f"{name}_count{_labels({'endpoint': endpoint})} {running}")


def _split(fields: dict[str, int], parts: int):
    for name, value in sorted(fields.items()):
        pieces = tuple(name.split("|", parts - 1))
        if len(pieces) == parts:
            yield pieces, value


def _family(out: list[str], name: str, kind: str, help_text: str, samples) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        out.append(f"{name}{_labels(labels)} {value}")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(bound: float) -> str:
    return repr(float(bound))


@bp.get("/metrics")
def metrics():
    """Scraped by Prometheus; counts only, nothing about any one person."""
    return Response(render(current_app.extensions["teeka"]), mimetype=None,
                    content_type=CONTENT_TYPE)
