"""Operator actions and scheduled sweeps that change appointments outside a conversation."""
from __future__ import annotations

import json
from datetime import date, datetime
from typing import Callable, Iterator, TextIO

from redis.exceptions import WatchError

from flows.domain import Status
from flows.ids import format_ref
from flows.text import clip, day_label
from flows.verify import MAX_WRONG_CODES

from . import keys, store
from .conversation import _enqueue, now_in
from .effects import SMS_CENTRE_WIDTH, Commit, transact

OPERATOR = "operator"  # the audit actor of a change made with the command line
SWEEP = "sweep"  # the audit actor of the end-of-day sweep
SWEEP_PAGE = 500


def sweep_no_shows(services, today: date | None = None) -> int:
    """Appointments of past days never recorded become no_show; the citizen is told how to
    book again (a low-priority SMS, not sent when they asked STOP). Returns how many."""
    r = services.redis
    now = now_in(services)
    last_day = (today or now.date()).toordinal() - 1
    marked = 0
    while True:
        # every ref read here leaves the set (marked or not), so the next page is the next one
        refs = r.zrangebyscore(keys.due_appointments(), "-inf", last_day, start=0, num=SWEEP_PAGE)
        if not refs:
            return marked
        for ref in refs:
            phone = store.owner_of(r, ref)
            if not phone:
                r.zrem(keys.due_appointments(), ref)
                continue
            marked += _mark_no_show(services, phone, ref, now)


def sweep_job() -> int:
    """RQ job (periodic): the end-of-day sweep with the worker's services."""
    from .jobs import runtime

    return sweep_no_shows(runtime().services)


def _mark_no_show(services, phone: str, ref: str, now: datetime) -> int:
    def plan(current: dict, citizen) -> tuple[int, Write]:
        if current.get("s") not in (Status.BOOKED, Status.VERIFIED):
            return 0, lambda pipe, commit: pipe.zrem(keys.due_appointments(), ref)

        def write(pipe, commit: Commit) -> None:
            pipe.zrem(keys.due_appointments(), ref)
            pipe.hset(keys.appointment(phone, ref), "s", str(Status.NO_SHOW))
            commit.audit(pipe, ref, Status.NO_SHOW, SWEEP, "system")
            if citizen.reminders:
                commit.sms(pipe, phone, "sms/no_show", {
                    "date": day_label(date.fromisoformat(current["d"])),
                    "centre": _centre_label(services, current),
                    "ussd_code": services.config.ussd_code,
                }, purpose="no_show", priority="low", lang=_language(services, citizen))

        return 1, write

    return _change(services, phone, ref, now, plan)


Write = Callable[[object, Commit], None]


def _change(services, phone: str, ref: str, now: datetime,
            plan: Callable[[dict, object], tuple[int, Write | None]]) -> int:
    """Apply `plan(current appointment, citizen) -> (count, write)` under WATCH, again on a
    concurrent change; the messages it records are queued after the commit."""
    r = services.redis
    key = keys.appointment(phone, ref)
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key, keys.citizen(phone))
                citizen = store.load_citizen(r, phone)
                count, write = plan(pipe.hgetall(key), citizen)
                if write is None:
                    return count
                commit = Commit(services=services, now=now, citizen=citizen)
                transact(services, pipe, commit, key, lambda w: write(w, commit))
            except WatchError:
                continue
            _enqueue(services, commit)
            return count


def _language(services, citizen) -> str:
    languages = services.config.languages
    return citizen.lang if citizen.lang in languages else languages[0]


def _centre_label(services, current: dict) -> str:
    centre = store.centre_names(services.redis, [current["c"]]).get(current["c"], current["c"])
    return clip(centre, SMS_CENTRE_WIDTH)


def unlock(services, ref: str) -> str:
    """A locked appointment (too many wrong codes) goes back to booked with fresh tries."""
    r = services.redis
    phone = store.owner_of(r, ref)
    if not phone:
        return f"No appointment has ref {format_ref(ref)}."
    key = keys.appointment(phone, ref)
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                status, day = pipe.hmget(key, "s", "d")
                if status != Status.LOCKED:
                    return f"Appointment {format_ref(ref)} is {status}, not locked: nothing changed."
                commit = Commit(services=services, now=now_in(services))

                def write(w):
                    w.hset(key, mapping={"s": str(Status.BOOKED), "w": 0})
                    # back in the sweep's set: the sweep drops locked appointments it passes over
                    w.zadd(keys.due_appointments(), {ref: date.fromisoformat(day).toordinal()})
                    commit.audit(w, ref, "unlocked", OPERATOR, "cli")

                transact(services, pipe, commit, key, write)
                return f"Unlocked {format_ref(ref)}: booked again, {MAX_WRONG_CODES} tries."
            except WatchError:
                continue


def disputes(services) -> list[dict]:
    """Disputed appointments with their certificate, by ref."""
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
    """Every audit event in order, read in batches. An event written again by a recovered
    follow-up (`gateway.slots`: it carries the same `op`) is given once."""
    r = services.redis
    start, ops = "-", set()
    while True:
        entries = r.xrange(keys.audit(), min=start, count=batch)
        if not entries:
            return
        for event_id, fields in entries:
            op = fields.pop("op", None)
            if op is not None:
                if op in ops:
                    continue
                ops.add(op)
            yield {"id": event_id, **fields}
        start = "(" + entries[-1][0]  # exclusive: continue after the last one read


def export_audit(services, out: TextIO) -> int:
    """Write the audit stream as JSON lines; returns how many events."""
    count = 0
    for event in audit_events(services):
        out.write(json.dumps(event, ensure_ascii=False) + "\n")
        count += 1
    return count


# ---------------------------------------------------------------- day-before reminders
REMINDED = "rm"  # appointment hash field: its reminder is recorded


def send_reminders(services, today: date | None = None) -> int:
    """Tomorrow's live appointments each get one low-priority reminder (centre, date, slot,
    code filled in at send time; quiet hours wait), unless the number sent STOP. Safe to run
    any number of times: the reminder is marked on the appointment. Returns how many."""
    r = services.redis
    now = now_in(services)
    tomorrow = (today or now.date()).toordinal() + 1  # the due set is scored by day ordinal
    refs = r.zrangebyscore(keys.due_appointments(), tomorrow, tomorrow)
    return sum(_remind(services, phone, ref, now)
               for ref in refs if (phone := store.owner_of(r, ref)))


def reminders_job() -> int:
    """RQ job (periodic): the day-before reminders with the worker's services."""
    from .jobs import runtime

    return send_reminders(runtime().services)


def _remind(services, phone: str, ref: str, now: datetime) -> int:
    def plan(current: dict, citizen) -> tuple[int, Write | None]:
        if current.get(REMINDED) or current.get("s") not in (Status.BOOKED, Status.VERIFIED):
            return 0, None
        if not citizen.reminders:
            return 0, None  # left unmarked: a START the same day still gets it

        def write(pipe, commit: Commit) -> None:
            pipe.hset(keys.appointment(phone, ref), REMINDED, "1")
            commit.sms(pipe, phone, "sms/reminder", {
                "date": day_label(date.fromisoformat(current["d"])), "slot": current["sl"],
                "centre": _centre_label(services, current),
            }, purpose="reminder", priority="low", lang=_language(services, citizen),
                code_of=ref)

        return 1, write

    return _change(services, phone, ref, now, plan)
