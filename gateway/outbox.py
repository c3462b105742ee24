"""Message records -> RQ jobs, delivery reports, and the send-rate budget shared by all workers.

Every outbound SMS is a Redis hash (`keys.message(id)`) before it is a job, and the job only
sends what the record says. A record's `status` is one of:

    queued     recorded; a job will send it (now, or when the quiet hours end)
    sending    an attempt is claimed and its request is (or was) with the provider
    sent       the provider accepted it (`provider_id` set); waiting for a delivery report
    delivered  the handset has it (delivery report `Success`)
    failed     given up: a final provider answer, attempts used up, or a failed delivery
    denied     the recipient does not take our messages (blacklist, do-not-disturb)
    retrying   a later attempt is scheduled (`due`)

Times are Unix seconds (UTC). `attempts` counts provider attempts; attempt n runs as the RQ
job `sms-<id>-<n>` and may send only after moving the record from queued/retrying with
`attempts == n-1` to sending with `attempts == n` (atomically), so a job that runs twice
never sends twice for one attempt.
"""
from __future__ import annotations

import logging
import secrets
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from redis.exceptions import WatchError
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from . import gsm, keys, metrics, slots
from .phones import mask
from .services import QUEUE_HIGH, QUEUE_LOW

log = logging.getLogger(__name__)

QUEUED, SENDING, SENT, DELIVERED = "queued", "sending", "sent", "delivered"
FAILED, DENIED, RETRYING = "failed", "denied", "retrying"
FINAL = frozenset({DELIVERED, FAILED, DENIED})
CLAIMABLE = frozenset({QUEUED, RETRYING})

MAX_ATTEMPTS = 5  # provider attempts per message, resends included
RESEND_PURPOSES = frozenset({"code", "booking", "completion"})
RESEND_DELAYS = (60, 600)  # one entry per resend after a failed delivery report
OUTBOX_KEEP = 100  # message ids kept per recipient
PROVIDER_ID_TTL = 7 * 24 * 3600  # how long a delivery report can still find its message
JOB_FUNC = "gateway.jobs.send_sms"
JOB_TIMEOUT = 600  # how long RQ lets a send run before it counts as abandoned (senders may wait for SMS_RATE)
JOB_RESULT_TTL = 60
JOB_FAILURE_TTL = 7 * 24 * 3600
# A send holds `sending` for at most the adapter's timeouts (3 s connect + 10 s read) and two
# Redis calls; twice that with no answer written means its worker died. The same bound tells a
# job that was started but never claimed its record (its worker died in between) from a live one.
STALE_SENDING = 30.0
QUEUE_SKEW = 60.0  # seconds of enqueue-clock difference between machines tolerated below

# Delivery-report status -> our status. Sent/Submitted/Buffered are on their way.
DLR_STATUS = {
    "Sent": SENT,
    "Submitted": SENT,
    "Buffered": SENT,
    "Success": DELIVERED,
    "Rejected": FAILED,
    "Failed": FAILED,
    "Expired": FAILED,
    "AbsentSubscriber": FAILED,
}
DLR_RESEND = frozenset({"Failed", "Rejected", "Expired"})  # worth another attempt for RESEND_PURPOSES
# failureReason values (DLR spelling `UserInBlackList`; the send answer says `UserInBlacklist`)
FAILURE_REASONS = frozenset({
    "InsufficientCredit", "InvalidLinkId", "UserIsInactive", "UserInBlackList", "UserInBlacklist",
    "UserAccountSuspended", "NotNetworkSubscriber", "NotNetworkSubcriber", "UserNotSubscribedToProduct",
    "UserDoesNotExist", "DeliveryFailure", "DoNotDisturbRejection",
})
DENIED_REASONS = frozenset({"UserInBlackList", "UserInBlacklist", "DoNotDisturbRejection"})
_RANK = {QUEUED: 0, RETRYING: 0, SENDING: 1, SENT: 2, DELIVERED: 3, FAILED: 3, DENIED: 3}

def new_id(now: float | None = None) -> str:
    """A message id that sorts by creation time: 12 hex digits of milliseconds + 8 random."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{secrets.token_hex(4)}"


def job_id(message_id: str, attempt: int) -> str:
    return f"sms-{message_id}-{attempt}"


# ---- records ----
def record(pipe, *, to: str, body: str, template: str, lang: str, purpose: str, priority: str,
           segments: int, code_of: str = "", code_at: int = -1, encoding: str = "",
           now: float | None = None) -> str:
    """Write a new message record into `pipe` (a pipeline, a client, or a transaction's
    `slots.Writes`); returns its id.

    The body must carry the security code masked; `code_of`/`code_at` say where it goes.
    Call `enqueue` after the pipeline has been executed.
    """
    now = time.time() if now is None else now
    message_id = new_id(now)
    fields = {
        "id": message_id, "to": to, "template": template, "lang": lang, "body": body,
        "segments": segments, "encoding": encoding or gsm.encoding(body),
        "purpose": purpose, "priority": priority, "status": QUEUED, "provider_id": "",
        "attempts": 0, "max_attempts": MAX_ATTEMPTS, "resends": 0, "errors": "",
        "created": _ts(now), "updated": _ts(now), "due": _ts(now), "sent_at": "", "delivered_at": "",
        "code_of": code_of, "code_at": code_at, "network": "", "failure_reason": "", "dlr_status": "",
        "cost": "",
    }
    w = pipe if isinstance(pipe, slots.Writes) else slots.Writes(pipe, keys.message(message_id), cluster=False)
    w.created.append((message_id, priority))
    w.hset_new(keys.message(message_id), fields)
    w.zadd(keys.messages_index(), {message_id: now})
    w.push_bounded(keys.outbox(to), message_id, OUTBOX_KEEP)
    metrics.count_message(w, purpose, QUEUED)
    return message_id


def get(services, message_id: str) -> dict:
    """The record as a dict of strings ({} when there is none)."""
    return services.redis.hgetall(keys.message(message_id))


def list_for(services, phone: str) -> list[dict]:
    """The recipient's most recent messages, oldest first."""
    ids = services.redis.lrange(keys.outbox(phone), 0, -1)
    pipe = services.redis.pipeline(transaction=False)
    for message_id in ids:
        pipe.hgetall(keys.message(message_id))
    return [rec for rec in pipe.execute() if rec]


# ---- jobs ----
def not_before(config, priority: str, now: datetime | None = None) -> datetime | None:
    """When a message may go out: low priority waits out the quiet hours; None means now."""
    if priority != "low":
        return None
    now = now or datetime.now(timezone.utc)
    start, end = config.quiet_hours
    local = now.astimezone(ZoneInfo(config.timezone))
    hour = local.hour
    quiet = (hour >= start or hour < end) if start > end else (start <= hour < end)
    if start == end or not quiet:
        return None
    opens = local.replace(hour=end, minute=0, second=0, microsecond=0)
    if opens <= local:
        opens += timedelta(days=1)
    return opens.astimezone(timezone.utc)


def enqueue(services, message_id: str, priority: str, *, now: datetime | None = None) -> str | None:
    """Give a freshly committed record its first job; returns the job id (None: it had one)."""
    at = not_before(services.config, priority, now)
    return _schedule(services, message_id, 1, priority, at)


def _schedule(services, message_id: str, attempt: int, priority: str, at: datetime | None) -> str | None:
    """Create the job of one attempt, now or at `at`; a job that already exists is kept."""
    queue = services.queue(QUEUE_LOW if priority == "low" else QUEUE_HIGH)
    jid = job_id(message_id, attempt)
    options = dict(job_id=jid, unique=True, job_timeout=JOB_TIMEOUT, result_ttl=JOB_RESULT_TTL,
                   failure_ttl=JOB_FAILURE_TTL)
    try:
        if at is not None and at > datetime.now(timezone.utc):
            services.redis.hset(keys.message(message_id), "due", _ts(at.timestamp()))
            queue.enqueue_at(at, JOB_FUNC, message_id, attempt, **options)
        else:
            queue.enqueue(JOB_FUNC, message_id, attempt, **options)
    except DuplicateJobError:
        return None
    return jid


def requeue_stuck(services, *, older_than: float = 60.0, stale_sending: float = STALE_SENDING,
                  lookback: float | None = 3600.0, now: float | None = None) -> int:
    """Give a job back to records that lost theirs; returns how many were requeued.

    queued/retrying records overdue by `older_than` seconds whose job is gone or dead (a crash
    between the commit and the enqueue, or a worker killed after taking the job off its queue
    and before claiming the record) get a new job. A record left in `sending` for
    `stale_sending` seconds (its worker died mid-request: it may or may not have gone out) is
    treated as a failed attempt and retried while attempts remain. Only records created in
    the last `lookback` seconds are looked at (None: all, for the `requeue` command).
    """
    now = time.time() if now is None else now
    low = "-inf" if lookback is None else now - lookback
    r = services.redis
    count, start, page = 0, 0, 500
    heads: dict = {}  # queue name -> enqueue time of its first job, read once per call
    # a started job waits for a GATEWAY_SMS_RATE slot before it claims its record: give it JOB_TIMEOUT then
    started_before = now - (JOB_TIMEOUT if services.config.sms_rate else stale_sending)
    while True:
        ids = r.zrangebyscore(keys.messages_index(), low, now - older_than, start=start, num=page)
        if not ids:
            return count
        start += len(ids)
        pipe = r.pipeline(transaction=False)
        for message_id in ids:
            pipe.hmget(keys.message(message_id), "status", "attempts", "priority", "due", "updated")
        for message_id, (status, attempts, priority, due, updated) in zip(ids, pipe.execute()):
            if status in CLAIMABLE and float(due or 0) <= now - older_than:
                count += _revive(services, message_id, int(attempts or 0) + 1, priority or "high",
                                 started_before=started_before, heads=heads, now=now)
            elif status == SENDING and float(updated or 0) <= now - stale_sending:
                rec = get(services, message_id)
                if rec.get("status") == SENDING:
                    log.warning("message %s: attempt %s interrupted, retrying", message_id, rec.get("attempts"))
                    retry(services, rec, 0, "interrupted: the worker stopped during the request")
                    count += 1


def _revive(services, message_id: str, attempt: int, priority: str, *, started_before: float,
            heads: dict, now: float) -> int:
    """Re-create the job of `attempt` if it is missing or dead; 1 if it was re-created."""
    try:
        job = Job.fetch(job_id(message_id, attempt), connection=services.queue_redis)
        status = job.get_status()
    except NoSuchJobError:
        job, status = None, None
    if job is not None and _job_alive(services, job, status, started_before, heads, now):
        return 0
    if job is not None:
        job.delete()
    log.warning("message %s: attempt %d had no live job, requeued", message_id, attempt)
    return 1 if _schedule(services, message_id, attempt, priority, None) else 0


def _job_alive(services, job: Job, status, started_before: float, heads: dict, now: float) -> bool:
    """Will this job still run? (Its record is unclaimed and overdue.)

    A job started before `started_before` would have claimed its record long ago: its worker
    died first, and RQ would notice only when the execution expires (JOB_TIMEOUT). A job still
    `queued` that its queue no longer holds was popped by a worker that died before starting
    it, and nothing else would ever run it. A false alarm costs a second job for the attempt,
    which `claim` turns into a no-op.
    """
    if status in (JobStatus.SCHEDULED, JobStatus.DEFERRED):
        return True
    if status == JobStatus.STARTED:
        return job.started_at is None or job.started_at.timestamp() > started_before
    if status == JobStatus.QUEUED:
        return _still_queued(services, job, heads, now)
    return False


def _still_queued(services, job: Job, heads: dict, now: float) -> bool:
    """Is a `queued` job still in its queue? Jobs are appended and popped from the front, so
    one enqueued well before the queue's first job has been popped already (O(1), no scan)."""
    if job.origin not in heads:
        heads[job.origin] = _queue_head(services, job.origin)
    head = heads[job.origin]
    if job.enqueued_at is None:
        return True
    # an empty queue holds nothing that was enqueued before now
    return job.enqueued_at.timestamp() > (now if head is None else head) - QUEUE_SKEW


def _queue_head(services, name: str) -> float | None:
    """When the queue's first job was enqueued; None when the queue is empty."""
    first = services.queue_redis.lindex(services.queue(name).key, 0)
    if first is None:
        return None
    try:
        head = Job.fetch(first.decode(), connection=services.queue_redis)
    except NoSuchJobError:
        return float("-inf")  # a dangling id: no conclusion, every job counts as queued
    return head.enqueued_at.timestamp() if head.enqueued_at else float("-inf")


# ---- attempts (used by the send job) ----
_CLAIM = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {0, 'missing'} end
if st ~= 'queued' and st ~= 'retrying' then return {0, st} end
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') ~= tonumber(ARGV[1]) - 1 then
  return {0, 'attempt'}
end
redis.call('HSET', KEYS[1], 'status', 'sending', 'attempts', ARGV[1], 'updated', ARGV[2])
return {1, redis.call('HGETALL', KEYS[1])}
"""


def claim(services, message_id: str, attempt: int) -> dict | None:
    """Mark `attempt` as in flight and return the record, or None if it may not be sent."""
    script = _script(services, _CLAIM)
    ok, data = script(keys=[keys.message(message_id)], args=[attempt, _ts(time.time())])
    if not ok:
        log.info("message %s: attempt %d not sent (%s)", message_id, attempt, data)
        return None
    rec = dict(zip(data[::2], data[1::2]))
    metrics.count_message(services.redis, rec.get("purpose", ""), SENDING)
    return rec


def mark_sent(services, rec: dict, provider_id: str, cost: str = "", parts: int = 0) -> None:
    now = _ts(time.time())
    # a new attempt starts with a clean delivery state: the previous attempt's report is not this one's
    fields = {"status": SENT, "provider_id": provider_id, "sent_at": now, "updated": now, "errors": "",
              "cost": cost, "dlr_status": "", "failure_reason": "", "network": ""}
    if parts:
        fields["segments"] = parts
    pipe = services.redis.pipeline(transaction=False)
    pipe.hset(keys.message(rec["id"]), mapping=fields)
    if provider_id:
        pipe.set(keys.provider_message(provider_id), rec["id"], ex=PROVIDER_ID_TTL)
    metrics.count_message(pipe, rec.get("purpose", ""), SENT)
    pipe.execute()


def mark_final(services, rec: dict, status: str, reason: str) -> None:
    """Give up on a message: `failed` or `denied`, with the reason as its last error."""
    now = time.time()
    services.redis.hset(keys.message(rec["id"]), mapping={"status": status, "errors": reason, "updated": _ts(now)})
    services.redis.zadd(keys.messages_failed(), {rec["id"]: now})
    metrics.count_message(services.redis, rec.get("purpose", ""), status)
    log.warning("message %s to %s %s: %s", rec["id"], mask(rec.get("to", "")), status, reason)


def retry(services, rec: dict, delay: float, reason: str) -> bool:
    """Schedule the next attempt in `delay` seconds, or fail the message if none is left."""
    attempts, most = int(rec.get("attempts") or 0), int(rec.get("max_attempts") or MAX_ATTEMPTS)
    if attempts >= most:
        mark_final(services, rec, FAILED, f"gave up after {attempts} attempts: {reason}")
        return False
    now = datetime.now(timezone.utc)
    at = now + timedelta(seconds=delay)
    later = not_before(services.config, rec.get("priority", "high"), at)
    at = later or at
    services.redis.hset(keys.message(rec["id"]), mapping={
        "status": RETRYING, "errors": reason, "updated": _ts(now.timestamp()), "due": _ts(at.timestamp())})
    metrics.count_message(services.redis, rec.get("purpose", ""), RETRYING)
    _schedule(services, rec["id"], attempts + 1, rec.get("priority", "high"), at)
    return True


# ---- delivery reports ----
def apply_delivery_report(services, provider_id: str, status: str, failure_reason: str = "",
                          phone: str = "", network_code: str = "", retry_count: int | str | None = None) -> str:
    """Apply one delivery report; returns what happened. Never raises for odd provider values.

    Results: "updated" (still on its way), "delivered", "failed", "denied", "resend" (failed,
    and a new attempt is scheduled), "duplicate", "stale" (an older attempt's report, or one
    arriving after a final state), "unknown_id", "unknown_status" (recorded verbatim).
    """
    r = services.redis
    message_id = r.get(keys.provider_message(provider_id))
    if not message_id:
        log.warning("delivery report %s for an unknown message id (status %s)", provider_id[:40], status[:40])
        return "unknown_id"
    if status not in DLR_STATUS:
        log.warning("message %s: unknown delivery status %r recorded", message_id, status[:40])
    if failure_reason and failure_reason not in FAILURE_REASONS:
        log.warning("message %s: unknown failure reason %r recorded", message_id, failure_reason[:40])
    key = keys.message(message_id)
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                rec = pipe.hgetall(key)
                outcome, fields = _dlr_effect(rec, provider_id, status, failure_reason, network_code)
                if fields:
                    pipe.multi()
                    writes = slots.Writes(pipe, key, slots.is_cluster(services.redis))
                    writes.hset(key, mapping=fields)
                    if "status" in fields:
                        metrics.count_message(writes, rec.get("purpose", ""), fields["status"])
                    writes.seal()
                    pipe.execute()
                    slots.drain(r, writes)
                else:
                    pipe.unwatch()
                break
            except WatchError:
                continue
    if outcome in ("failed", "denied"):
        r.zadd(keys.messages_failed(), {message_id: time.time()})
        log.warning("message %s to %s not delivered: %s %s", message_id, mask(rec.get("to", "")), status[:40],
                    failure_reason[:40])
    elif outcome == "resend":
        attempt = int(rec.get("attempts") or 0) + 1
        at = datetime.fromtimestamp(float(fields["due"]), timezone.utc)
        _schedule(services, message_id, attempt, rec.get("priority", "high"), at)
        log.info("message %s: delivery %s, sending again as attempt %d", message_id, status, attempt)
    return outcome


def _dlr_effect(rec: dict, provider_id: str, status: str, reason: str, network: str) -> tuple[str, dict]:
    """Decide what one delivery report does to a record: (outcome, fields to write)."""
    if not rec or rec.get("provider_id") != provider_id:
        return "stale", {}
    if rec.get("dlr_status") == status and rec.get("failure_reason", "") == reason:
        return "duplicate", {}
    now = _ts(time.time())
    seen = {"dlr_status": status, "updated": now}
    if reason:
        seen["failure_reason"] = reason
    if network:
        seen["network"] = network
    current = rec.get("status", "")
    target = DLR_STATUS.get(status)
    if current in FINAL:
        return "stale", {}  # never downgrade, nor flip one final state into another
    if target is None:
        return "unknown_status", seen
    if current != SENT and target != DELIVERED:
        return "stale", {}  # a resend is under way: only a late Success still counts
    if target == DELIVERED:
        return "delivered", {**seen, "status": DELIVERED, "delivered_at": now}
    if target == SENT:
        return ("updated", seen) if _RANK[current] <= _RANK[SENT] else ("stale", {})
    if reason in DENIED_REASONS:
        return "denied", {**seen, "status": DENIED, "errors": f"delivery {status}: {reason}"}
    resends = int(rec.get("resends") or 0)
    if rec.get("purpose") in RESEND_PURPOSES and status in DLR_RESEND and resends < len(RESEND_DELAYS):
        due = time.time() + RESEND_DELAYS[resends]
        return "resend", {**seen, "status": RETRYING, "resends": resends + 1, "due": _ts(due),
                          "errors": f"delivery {status}" + (f": {reason}" if reason else "")}
    return "failed", {**seen, "status": FAILED, "errors": f"delivery {status}" + (f": {reason}" if reason else "")}


# ---- the send-rate budget ----
_TAKE = """
local rate, burst, debt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait
if tokens - 1 >= -debt then
  tokens = tokens - 1
  wait = math.max(0, -tokens / rate)
else
  wait = -((1 - debt - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((burst + debt) / rate) + 60)
return tostring(wait)
"""
MAX_RESERVE = 2.0  # seconds a sender may book ahead; beyond that it waits and asks again


def take_send_slot(services) -> float:
    """Book one send under GATEWAY_SMS_RATE: seconds to wait before sending (0: go now).

    A negative answer means no slot was booked: wait that long (absolute) and ask again.
    """
    rate = services.config.sms_rate
    if not rate:
        return 0.0
    burst = max(1.0, rate)  # one second's worth
    script = _script(services, _TAKE)
    return float(script(keys=[keys.send_rate()], args=[rate, burst, rate * MAX_RESERVE]))


def wait_for_send_slot(services) -> None:
    """Block until this sender may go, shared by every worker through Redis."""
    while True:
        wait = take_send_slot(services)
        if wait >= 0:
            if wait:
                time.sleep(wait)
            return
        time.sleep(-wait)


# ---- helpers ----
def _ts(seconds: float) -> str:
    return f"{seconds:.3f}"


def _script(services, source: str):
    """The Lua script on the data client (EVALSHA, loaded again on NOSCRIPT)."""
    return services.redis.register_script(source)
