"""RQ job functions; every provider answer is classified here, once, in one table.

    accepted  100 Processed, 101 Sent, 102 Queued: wait for the delivery report
    retry     500 InternalServerError, 501 GatewayError, HTTP 5xx and other non-2xx answers,
              timeouts, refused connections, an unreadable answer (short backoff);
              405 InsufficientBalance (long backoff: someone must top up);
              409 DoNotDisturbRejection (the sending window opens later: hourly);
              407 CouldNotRoute (a route may come back: two tries over ~40 minutes, then final)
    final     401 RiskHold, 402 InvalidSenderId, 403 InvalidPhoneNumber,
              404 UnsupportedNumberType, 502 RejectedByGateway, HTTP 401 (bad username/key),
              a 2xx without recipient rows (InvalidSenderId and other account errors)
    denied    406 UserInBlacklist (delivery reports add UserInBlackList, DoNotDisturbRejection)

Retries are new attempts, bounded by the record's `max_attempts`; a timeout may mean the
provider did send, and the next attempt can then duplicate it: for a security code a late
duplicate is better than none.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from . import africastalking as at
from . import outbox, slots

log = logging.getLogger(__name__)

ACCEPTED, RETRY, FINAL, DENIED = "accepted", "retry", "final", "denied"

SHORT = (15, 60, 300, 900)  # seconds before attempt 2, 3, 4, 5
LONG = (900, 1800, 3600, 3600)
HOURLY = (3600, 3600, 3600, 3600)
ROUTE = (600, 1800)


@dataclass(frozen=True)
class Verdict:
    """What a provider answer means for the message."""

    kind: str
    reason: str
    backoff: tuple[int, ...] = ()  # delays before the next attempts; exhausted = give up
    config: bool = False  # our account or settings are at fault: the operator must act


BY_STATUS_CODE = {
    100: Verdict(ACCEPTED, "Processed"),
    101: Verdict(ACCEPTED, "Sent"),
    102: Verdict(ACCEPTED, "Queued"),
    401: Verdict(FINAL, "401 RiskHold (held by the provider's risk checks)", config=True),
    402: Verdict(FINAL, "402 InvalidSenderId (configuration)", config=True),
    403: Verdict(FINAL, "403 InvalidPhoneNumber"),
    404: Verdict(FINAL, "404 UnsupportedNumberType"),
    405: Verdict(RETRY, "405 InsufficientBalance", LONG),
    406: Verdict(DENIED, "406 UserInBlacklist"),
    407: Verdict(RETRY, "407 CouldNotRoute", ROUTE),
    409: Verdict(RETRY, "409 DoNotDisturbRejection", HOURLY),
    500: Verdict(RETRY, "500 InternalServerError", SHORT),
    501: Verdict(RETRY, "501 GatewayError", SHORT),
    502: Verdict(FINAL, "502 RejectedByGateway"),
}
BY_ERROR = {
    at.TIMEOUT: Verdict(RETRY, "timeout", SHORT),
    at.CONNECT: Verdict(RETRY, "connection failed", SHORT),
    at.HTTP: Verdict(RETRY, "HTTP error", SHORT),
    at.MALFORMED: Verdict(RETRY, "unreadable answer", SHORT),
    at.AUTH: Verdict(FINAL, "HTTP 401: username or API key refused (configuration)", config=True),
    at.NO_RECIPIENTS: Verdict(FINAL, "no recipients in the answer (configuration)", config=True),
    at.INVALID_NUMBER: Verdict(FINAL, "invalid phone number"),
}


def classify(result: at.SendResult, to: str) -> Verdict:
    """The one place a provider answer becomes accepted / retry / final / denied."""
    if result.error:
        verdict = BY_ERROR[result.error]
        detail = f": {result.detail}" if result.detail and result.error in (at.HTTP, at.NO_RECIPIENTS) else ""
        return Verdict(verdict.kind, verdict.reason + detail, verdict.backoff, verdict.config)
    row = result.recipient(to)
    if row is None:
        return BY_ERROR[at.MALFORMED]
    if row.status_code in BY_STATUS_CODE:
        return BY_STATUS_CODE[row.status_code]
    reason = f"{row.status_code} {row.status}"
    if 100 <= row.status_code < 200 and row.message_id.startswith("ATXid_"):
        return Verdict(ACCEPTED, reason)
    if 500 <= row.status_code < 600:
        return Verdict(RETRY, reason, SHORT)
    return Verdict(FINAL, reason + " (unknown status code)")


# ---- the process's services, built once per worker process ----
@dataclass
class Runtime:
    services: object
    provider: at.AfricasTalking | None


_runtime: Runtime | None = None


def install(services, provider: at.AfricasTalking | None = None) -> Runtime:
    """Set the services (and provider adapter) the jobs of this process use."""
    global _runtime
    if provider is None and services.config.effective_sms_backend == "africastalking":
        provider = at.AfricasTalking.from_config(services.config)
    _runtime = Runtime(services, provider)
    return _runtime


def runtime() -> Runtime:
    """This process's runtime; a plain `rq worker` builds it from the environment."""
    if _runtime is None:
        from .services import build

        return install(build())
    return _runtime


# ---- jobs ----
def send_sms(message_id: str, attempt: int) -> str:
    """RQ job: send attempt `attempt` of one message record."""
    rt = runtime()
    return deliver(rt.services, rt.provider, message_id, attempt)


def deliver(services, provider: at.AfricasTalking | None, message_id: str, attempt: int) -> str:
    """Send one attempt exactly as the record says; returns the verdict kind (or "skipped")."""
    live = services.config.effective_sms_backend == "africastalking"
    if live:
        outbox.wait_for_send_slot(services)
    rec = outbox.claim(services, message_id, attempt)
    if rec is None:
        return "skipped"
    if not live:
        outbox.mark_sent(services, rec, provider_id="")  # the outbox backend keeps it for the simulator
        return ACCEPTED
    body = rec["body"]
    if rec.get("code_of"):
        try:
            body = _with_code(services, rec)
        except (LookupError, ValueError) as exc:
            outbox.mark_final(services, rec, outbox.FAILED, f"security code unavailable ({type(exc).__name__})")
            return FINAL
    result = provider.send(rec["to"], body)
    verdict = classify(result, rec["to"])
    _apply(services, rec, verdict, result)
    return verdict.kind


def _with_code(services, rec: dict) -> str:
    """The body with the real security code in place of the mask, computed just now."""
    from . import codes, store

    return codes.fill(rec["body"], int(rec["code_at"]), store.code_for(services, rec["code_of"]))


def _apply(services, rec: dict, verdict: Verdict, result: at.SendResult) -> None:
    if verdict.kind == ACCEPTED:
        row = result.recipient(rec["to"])
        outbox.mark_sent(services, rec, row.message_id, row.cost, row.parts)
        return
    if verdict.kind in (FINAL, DENIED):
        if verdict.config:
            log.error("SMS provider refused our configuration: %s", verdict.reason)
        outbox.mark_final(services, rec, outbox.DENIED if verdict.kind == DENIED else outbox.FAILED, verdict.reason)
        return
    done = int(rec.get("attempts") or 1)
    if done > len(verdict.backoff):
        outbox.mark_final(services, rec, outbox.FAILED, f"gave up after {done} attempts: {verdict.reason}")
        return
    delay = verdict.backoff[done - 1] * random.uniform(0.9, 1.1)  # spread retries of a burst
    outbox.retry(services, rec, delay, verdict.reason)


def requeue_stuck() -> int:
    """Periodic job: give lost message records a job again."""
    return outbox.requeue_stuck(runtime().services)


def recover() -> dict:
    """Periodic job: finish what processes that died between a commit and its follow-ups left
    (`gateway.slots.recover`), and give back seats of bookings that never committed."""
    services = runtime().services
    return slots.recover(services.redis, lambda message_id, priority:
                         outbox.enqueue(services, message_id, priority))
