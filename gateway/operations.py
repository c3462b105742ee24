"""Operator actions and scheduled sweeps that change appointments outside a conversation."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Iterator, TextIO

from redis.exceptions import WatchError

from flows.domain import Status
from flows.text import day_label

from . import keys, store
from .effects import Commit
from .conversation import now_in, _enqueue

OPERATOR = "operator"


def _audit(pipe, ref: str, status: str, actor: str, channel: str, now: datetime) -> None:
    pipe.xadd(keys.audit(), {"ref": ref, "status": status, "actor": actor, "channel": channel,
                             "at": now.astimezone(timezone.utc).isoformat(timespec="seconds")})


def sweep_no_shows(services, today: date | None = None) -> int:
    """Appointments of past days never recorded become no_show; the citizen is told how to
    book again (a low-priority SMS, not sent when they asked STOP). Returns how many."""
    r = services.redis
    now = now_in(services)
    today = today or now.date()
    refs = r.zrangebyscore(keys.due_appointments(), "-inf", today.toordinal() - 1)
    marked = 0
    for ref in refs:
        phone = store.owner_of(r, ref)
        if not phone:
            r.zrem(keys.due_appointments(), ref)
            continue
        marked += _mark_no_show(services, phone, ref, now)
    return marked


def _mark_no_show(services, phone: str, ref: str, now: datetime) -> int:
    r = services.redis
    key = keys.appointment(phone, ref)
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                current = pipe.hgetall(key)
                citizen = store.load_citizen(r, phone)
                commit = Commit(services=services, now=now, citizen=citizen)
                pipe.multi()
                pipe.zrem(keys.due_appointments(), ref)
                if current.get("s") not in (Status.BOOKED, Status.VERIFIED):
                    pipe.execute()
                    return 0
                pipe.hset(key, "s", str(Status.NO_SHOW))
                _audit(pipe, ref, Status.NO_SHOW, "sweep", "system", now)
                if citizen.reminders:
                    lang = citizen.lang or services.config.languages[0]
                    commit.sms(pipe, phone, "sms/no_show", {
                        "date": day_label(date.fromisoformat(current["d"])),
                        "ussd_code": services.config.ussd_code,
                    }, purpose="no_show", priority="low", lang=lang)
                pipe.execute()
                _enqueue(services, commit)
                return 1
            except WatchError:
                continue


def unlock(services, ref: str) -> str:
    """A locked appointment (too many wrong codes) goes back to booked with fresh tries."""
    r = services.redis
    phone = store.owner_of(r, ref)
    if not phone:
        return f"No appointment has ref {ref}."
    key = keys.appointment(phone, ref)
    with r.pipeline() as pipe:
        pipe.watch(key)
        status = pipe.hget(key, "s")
        if status != Status.LOCKED:
            return f"Appointment {ref} is {status}, not locked: nothing changed."
        pipe.multi()
        pipe.hset(key, mapping={"s": str(Status.BOOKED), "w": 0})
        _audit(pipe, ref, Status.BOOKED, OPERATOR, "cli", now_in(services))
        pipe.execute()
    return f"Unlocked {ref}: booked again, 5 tries."


def disputes(services) -> list[dict]:
    """Disputed appointments with their certificate, newest last."""
    r = services.redis
    rows = []
    for ref in sorted(r.smembers(keys.disputes())):
        appointment = store.load_appointment(r, ref)
        if appointment:
            rows.append({"ref": ref, "phone": appointment.phone, "name": appointment.name,
                         "centre": appointment.centre_name, "date": appointment.day.isoformat(),
                         "cert_id": appointment.cert_id, "status": str(appointment.status)})
    return rows


def audit_events(services, batch: int = 1000) -> Iterator[dict]:
    """Every audit event in order, read in batches."""
    r = services.redis
    start = "-"
    while True:
        entries = r.xrange(keys.audit(), min=start, count=batch)
        if not entries:
            return
        for event_id, fields in entries:
            yield {"id": event_id, **fields}
        start = "(" + entries[-1][0]  # exclusive: continue after the last one read


def export_audit(services, out: TextIO) -> int:
    """Write the audit stream as JSON lines; returns how many events."""
    count = 0
    for event in audit_events(services):
        out.write(json.dumps(event, ensure_ascii=False) + "\n")
        count += 1
    return count
