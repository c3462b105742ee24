"""Applying a step's effects: one table maps each effect to the function that queues its writes.

`Commit` runs in two phases on one Redis pipeline: `prepare` WATCHes the keys an effect
depends on and re-reads them (an appointment still in the status the flow saw) and takes what
must be taken before the transaction (a booking's seat, by script on the session's slot:
`gateway.slots`); then every write of the step goes into one MULTI/EXEC, through
`slots.Writes`, which defers writes to keys outside the transaction's slot on a cluster. A
concurrent change aborts the EXEC: what `prepare` took is given back (`undo`) and the
orchestrator runs the step again on fresh data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from redis.exceptions import WatchError

from flows import base
from flows.domain import Appointment, Beneficiary, Gender, Status
from flows.ids import format_ref
from flows.text import clip, day_label, initials

from . import codes, keys, metrics, outbox, slots, store

DUE_TTL = 60 * 60 * 24 * 400  # appointments, certificates: kept well past the booking year
FAILURE_WINDOW = 2 * 3600
SMS_CENTRE_WIDTH = 40  # keeps the English slip in one segment with any imported name


class SeatLost(Exception):
    """The slot filled between the flow's look and the commit."""


class Stale(Exception):
    """Data the flow decided on changed before the commit; run the step again."""


@dataclass
class Commit:
    """Everything one step writes, applied atomically by `gateway.conversation`."""

    services: object
    now: datetime
    known: dict[str, Appointment] = field(default_factory=dict)  # ref -> as the flow saw it
    citizen: object = None
    messages: list[tuple[str, str]] = field(default_factory=list)  # (id, priority), once committed
    alerts: list = field(default_factory=list)  # AlertOperator effects written
    catalog: object = None  # the step's StoreCatalog: centre names without a round trip
    codes: dict = field(default_factory=dict)  # ref -> code of live appointments, as read
    _prepared: dict = field(default_factory=dict)
    _undo: list = field(default_factory=list)  # what prepare took, given back if no commit

    @property
    def r(self):
        return self.services.redis

    # -- phase 1: watch and re-check (pipeline in immediate mode) --
    def prepare(self, pipe, effects) -> None:
        for effect in effects:
            fn = PREPARE.get(type(effect))
            if fn:
                fn(self, pipe, effect)

    # -- phase 2: queue writes (`slots.Writes` after .multi()) --
    def write(self, pipe, effects) -> None:
        for effect in effects:
            APPLY[type(effect)](self, pipe, effect)

    def undo(self) -> None:
        """The step did not commit: give back what `prepare` took (a held seat)."""
        while self._undo:
            self._undo.pop()()

    def audit(self, pipe, ref: str, status: str, actor: str, channel: str, **extra) -> None:
        fields = {"ref": ref, "status": status, "actor": actor, "channel": channel,
                  "at": self.now.astimezone(timezone.utc).isoformat(timespec="seconds")}
        fields.update({k: str(v) for k, v in extra.items() if v != ""})
        pipe.xadd(keys.audit(), fields)
        metrics.count_appointment(pipe, status)  # same MULTI: no extra round trip

    def sms(self, pipe, to: str, template: str, params: dict, *, purpose: str,
            priority: str = "high", lang: str = "en", code_of: str = "") -> str:
        """Render and store one outbound message; it is enqueued after the commit."""
        params = dict(params)
        if code_of:
            params["code"] = codes.CODE_MASK
        body, _encoding, segments = self.services.templates.sms(template, lang, params)
        code_at = body.find(codes.CODE_MASK) if code_of else -1
        return outbox.record(
            pipe, to=to, body=body, template=template, lang=lang, purpose=purpose,
            priority=priority, segments=segments, code_of=code_of, code_at=code_at,
        )

    def live_codes(self, phone: str) -> dict[str, str]:
        """ref -> code of the number's live appointments; from the step's reads when they
        cover every one of them (the citizen's keys are WATCHed), else read now."""
        appointments = self.citizen.appointments
        if {a.ref for a in appointments if a.live} <= self.codes.keys():
            return dict(self.codes)
        return store.codes_for(self.services, phone, appointments)

    def centre_name(self, centre_id: str) -> str:
        names = (self.catalog.centre_names([centre_id]) if self.catalog is not None
                 else store.centre_names(self.r, [centre_id]))
        return names.get(centre_id, centre_id)

    def watch_appointment(self, pipe, ref: str) -> tuple[str, dict]:
        """WATCH an appointment and check it is still as the flow saw it."""
        seen = self.known.get(ref)
        phone = seen.phone if seen else store.owner_of(self.r, ref)
        if not phone:
            raise Stale(f"ref {ref} has no owner")
        key = keys.appointment(phone, ref)
        pipe.watch(key)
        current = pipe.hgetall(key)
        # The flow may have read it before the WATCH: a wrong code counted in between would
        # otherwise go unnoticed, and the 5th would not lock (a 6th try).
        if not current or (seen and (current.get("s") != str(seen.status)
                                     or int(current.get("w", 0)) != seen.wrong_tries)):
            raise Stale(f"appointment {ref} changed")
        return phone, current


def transact(services, pipe, commit: Commit, home: str, *writers, prepare=None) -> slots.Writes:
    """Run `prepare`, then the writers into one MULTI/EXEC on `home`'s slot, then apply the
    follow-ups. A transaction that does not commit gives back what `prepare` took."""
    try:
        if prepare is not None:
            prepare()
        pipe.multi()
        writes = slots.Writes(pipe, home, slots.is_cluster(services.redis))
        for writer in writers:
            writer(writes)
        writes.seal()
        pipe.execute()
    except (WatchError, Stale, SeatLost):
        commit.undo()
        raise
    slots.drain(services.redis, writes)
    commit.messages = list(writes.created)  # queued by `_enqueue`, after the follow-ups
    return writes


# ---------------------------------------------------------------- booking
def prepare_book(c: Commit, pipe, e: base.Book) -> None:
    state, session = slots.hold_seat(c.r, e.phone, e.ref, e.session_id, e.slot)
    store.seats_changed(e.session_id)
    if state == "taken":
        raise Stale("reference already taken")
    if state == "full":
        raise SeatLost(e.slot)
    c._undo.append(lambda: (slots.abandon(c.r, e.phone, e.ref, e.session_id),
                            store.seats_changed(e.session_id)))
    c._prepared[id(e)] = session


def apply_book(c: Commit, pipe, e: base.Book) -> None:
    session = c._prepared[id(e)]
    citizen = c.citizen
    persons = list(citizen.beneficiaries)
    if e.person is not None:
        person = Beneficiary(len(persons) + 1, e.person.name, e.person.birth_year,
                             Gender(e.person.gender))
        persons.append(person)
        pipe.hset(keys.citizen(e.phone), "p", store.persons_json(persons))
    else:
        person = persons[e.beneficiary_id - 1]
    taken_codes = set(c.live_codes(e.phone).values())
    nonce = codes.new_nonce()
    while codes.derive(c.services.config.code_secret, e.ref, nonce) in taken_codes:
        nonce = codes.new_nonce()
    day, centre_id = session["d"], session["ce"]
    pipe.hdel(keys.booking_intents(e.phone), e.ref)  # the seat is the booking's now
    pipe.hset(keys.appointment(e.phone, e.ref), mapping={
        "b": person.beneficiary_id, "n": person.name, "y": person.birth_year, "c": centre_id,
        "d": day, "sl": e.slot, "v": session["v"], "o": e.dose, "s": str(Status.BOOKED),
        "se": e.session_id, "k": nonce,
    })
    pipe.sadd(keys.citizen_appointments(e.phone), e.ref)
    pipe.sadd(keys.centre_day_appointments(centre_id, day), e.ref)
    pipe.zadd(keys.due_appointments(), {e.ref: datetime.fromisoformat(day).toordinal()})
    c.audit(pipe, e.ref, Status.BOOKED, e.phone, e.channel)
    centre = c.centre_name(centre_id)
    c.sms(pipe, e.phone, "sms/booking", {
        "initials": initials(person.name), "centre": clip(centre, SMS_CENTRE_WIDTH),
        "date": day_label(datetime.fromisoformat(day).date()), "slot": e.slot,
        "ref": format_ref(e.ref),
    }, purpose="booking", lang=e.lang, code_of=e.ref)


def prepare_appointment(c: Commit, pipe, e) -> None:
    c._prepared[id(e)] = c.watch_appointment(pipe, e.ref)


def apply_cancel(c: Commit, pipe, e: base.Cancel) -> None:
    phone, current = c._prepared[id(e)]
    if current["s"] not in (Status.BOOKED, Status.VERIFIED):
        return
    pipe.hset(keys.appointment(phone, e.ref), "s", str(Status.CANCELLED))
    pipe.release_seat(current["se"], e.ref)
    store.seats_changed(current["se"])
    pipe.zrem(keys.due_appointments(), e.ref)
    c.audit(pipe, e.ref, Status.CANCELLED, e.actor, e.channel)


# ---------------------------------------------------------------- verification
def apply_verification(c: Commit, pipe, e: base.RecordVerification) -> None:
    phone, _ = c._prepared[id(e)]
    pipe.hset(keys.appointment(phone, e.ref), mapping={"s": str(Status.VERIFIED),
                                                       "vb": e.vaccinator})
    c.audit(pipe, e.ref, Status.VERIFIED, e.vaccinator, base.Channel.SMS)


def apply_wrong_code(c: Commit, pipe, e: base.RecordWrongCode) -> None:
    phone, current = c._prepared[id(e)]
    key = keys.appointment(phone, e.ref)
    pipe.hincrby(key, "w", 1)
    c.audit(pipe, e.ref, "wrong_code", e.vaccinator, base.Channel.SMS)
    if e.lock:
        pipe.hset(key, "s", str(Status.LOCKED))
        c.audit(pipe, e.ref, Status.LOCKED, e.vaccinator, base.Channel.SMS)


def apply_failed_attempt(c: Commit, pipe, e: base.RecordFailedAttempt) -> None:
    key = keys.vaccinator_failures(e.vaccinator, hour_of(c.now))
    pipe.incr(key)
    pipe.expire(key, FAILURE_WINDOW)


def apply_dose(c: Commit, pipe, e: base.RecordDose) -> None:
    phone, current = c._prepared[id(e)]
    if current["s"] != Status.VERIFIED:
        return
    pipe.hset(keys.appointment(phone, e.ref), mapping={"s": str(Status.VACCINATED),
                                                       "ce": e.cert_id})
    pipe.zrem(keys.due_appointments(), e.ref)
    centre = store.centre_names(c.r, [current["c"]]).get(current["c"], current["c"])
    pipe.hset(keys.certificate(e.cert_id), mapping={
        "ref": e.ref, "n": current["n"], "v": current["v"], "o": current["o"],
        "d": c.now.date().isoformat(), "c": current["c"], "cn": centre, "vb": e.vaccinator,
        "batch": e.batch,
    })
    persons = list(c.citizen.beneficiaries) if c.citizen and c.citizen.phone == phone else None
    if persons is None:
        persons = list(store.load_citizen(c.r, phone).beneficiaries)
    index = int(current["b"]) - 1
    if 0 <= index < len(persons):
        p = persons[index]
        persons[index] = Beneficiary(p.beneficiary_id, p.name, p.birth_year, p.gender,
                                     max(p.doses_done, int(current["o"])))
        pipe.hset(keys.citizen(phone), "p", store.persons_json(persons))
    c.audit(pipe, e.ref, Status.VACCINATED, e.vaccinator, base.Channel.SMS, cert=e.cert_id)


def apply_dispute(c: Commit, pipe, e: base.Dispute) -> None:
    phone, current = c._prepared[id(e)]
    pipe.hset(keys.appointment(phone, e.ref), "s", str(Status.DISPUTED))
    if current.get("ce"):
        pipe.hset(keys.certificate(current["ce"]), "frozen", "1")
    pipe.sadd(keys.disputes(), e.ref)
    c.audit(pipe, e.ref, Status.DISPUTED, e.phone, base.Channel.SMS)


def apply_alert(c: Commit, pipe, e: base.AlertOperator) -> None:
    pipe.xadd(keys.alerts(), {"kind": e.kind, "ref": e.ref, "detail": e.detail,
                              "at": c.now.astimezone(timezone.utc).isoformat(timespec="seconds")})
    c.alerts.append(e)  # logged as a warning once the transaction is in


# ---------------------------------------------------------------- citizens and messages
def apply_language(c: Commit, pipe, e: base.SetLanguage) -> None:
    pipe.hset(keys.citizen(e.phone), "lang", e.lang)


def apply_reminders(c: Commit, pipe, e: base.SetReminders) -> None:
    pipe.hset(keys.citizen(e.phone), "rem", "1" if e.on else "0")


def apply_send(c: Commit, pipe, e: base.SendSms) -> None:
    c.sms(pipe, e.to, e.template, dict(e.params), purpose=e.purpose, priority=e.priority,
          lang=e.lang, code_of=e.code_of)


def hour_of(now: datetime) -> int:
    return int(now.timestamp()) // 3600


PREPARE = {
    base.Book: prepare_book,
    base.Cancel: prepare_appointment,
    base.RecordVerification: prepare_appointment,
    base.RecordWrongCode: prepare_appointment,
    base.RecordDose: prepare_appointment,
    base.Dispute: prepare_appointment,
}

APPLY = {
    base.Book: apply_book,
    base.Cancel: apply_cancel,
    base.RecordVerification: apply_verification,
    base.RecordWrongCode: apply_wrong_code,
    base.RecordFailedAttempt: apply_failed_attempt,
    base.RecordDose: apply_dose,
    base.Dispute: apply_dispute,
    base.AlertOperator: apply_alert,
    base.SetLanguage: apply_language,
    base.SetReminders: apply_reminders,
    base.SendSms: apply_send,
}


def json_compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
