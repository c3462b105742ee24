"""Reading and writing the domain in Redis: citizens, appointments, catalogue, vaccinators.

Writes that belong to one conversation step are queued on a pipeline by `gateway.effects`;
this module only knows the record layouts (short field names keep memory per record small).
"""
from __future__ import annotations

import json
from datetime import date
from typing import Iterable, Sequence

from redis import Redis

from flows.domain import (
    Appointment,
    Beneficiary,
    Centre,
    Certificate,
    Citizen,
    Gender,
    Session,
    Slot,
    Status,
    Vaccinator,
)

from . import codes, keys

# appointment hash fields
A_FIELDS = {
    "b": "beneficiary_id", "n": "name", "y": "birth_year", "c": "centre_id", "d": "day",
    "sl": "slot", "v": "vaccine", "o": "dose", "s": "status", "se": "session_id",
    "w": "wrong_tries", "vb": "verified_by", "ce": "cert_id",
}


# ---- citizens ----
def _persons(raw: str | None) -> tuple[Beneficiary, ...]:
    rows = json.loads(raw) if raw else []
    return tuple(
        Beneficiary(i + 1, name, int(year), Gender(gender), int(done))
        for i, (name, year, gender, done) in enumerate(rows)
    )


def persons_json(persons: Iterable[Beneficiary]) -> str:
    return json.dumps(
        [[p.name, p.birth_year, str(p.gender), p.doses_done] for p in persons],
        ensure_ascii=False, separators=(",", ":"),
    )


def load_citizen(r: Redis, phone: str) -> Citizen:
    """The citizen, their people and every appointment on the number (two round trips)."""
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(keys.citizen(phone))
    pipe.smembers(keys.citizen_appointments(phone))
    record, refs = pipe.execute()
    appointments = load_appointments(r, phone, sorted(refs))
    return Citizen(
        phone=phone,
        lang=record.get("lang", ""),
        beneficiaries=_persons(record.get("p")),
        appointments=tuple(a for a in appointments if a is not None),
        reminders=record.get("rem", "1") == "1",
    )


# ---- appointments ----
def appointment_from(phone: str, ref: str, h: dict, centre_names: dict) -> Appointment:
    return Appointment(
        ref=ref, phone=phone, beneficiary_id=int(h["b"]), name=h["n"], birth_year=int(h["y"]),
        centre_id=h["c"], centre_name=centre_names.get(h["c"], h["c"]),
        day=date.fromisoformat(h["d"]), slot=h["sl"], vaccine=h["v"], dose=int(h["o"]),
        status=Status(h["s"]), session_id=h.get("se", ""), wrong_tries=int(h.get("w", 0)),
        verified_by=h.get("vb", ""), cert_id=h.get("ce", ""),
    )


def load_appointments(r: Redis, phone: str, refs: Sequence[str]) -> list[Appointment | None]:
    if not refs:
        return []
    pipe = r.pipeline(transaction=False)
    for ref in refs:
        pipe.hgetall(keys.appointment(phone, ref))
    hashes = pipe.execute()
    names = centre_names(r, {h["c"] for h in hashes if h})
    return [appointment_from(phone, ref, h, names) if h else None for ref, h in zip(refs, hashes)]


def owner_of(r: Redis, ref: str) -> str | None:
    return r.get(keys.ref_owner(ref))


def load_appointment(r: Redis, ref: str) -> Appointment | None:
    phone = owner_of(r, ref)
    if not phone:
        return None
    return load_appointments(r, phone, [ref])[0]


def appointments_at(r: Redis, centre_id: str, day: date) -> list[Appointment]:
    """Every appointment booked at a centre for a day (TODAY counts, lookups by mobile)."""
    refs = sorted(r.smembers(keys.centre_day_appointments(centre_id, day.isoformat())))
    pipe = r.pipeline(transaction=False)
    for ref in refs:
        pipe.get(keys.ref_owner(ref))
    owners = pipe.execute()
    found = []
    for ref, phone in zip(refs, owners):
        if phone:
            found.extend(a for a in load_appointments(r, phone, [ref]) if a)
    return found


def nonce_of(r: Redis, phone: str, ref: str) -> str:
    return r.hget(keys.appointment(phone, ref), "k") or ""


def code_for(services, ref: str) -> str:
    """The plain security code of an appointment, derived on demand (never stored)."""
    phone = owner_of(services.redis, ref)
    nonce = nonce_of(services.redis, phone, ref) if phone else ""
    if not nonce:
        raise LookupError(f"no appointment for ref {ref}")
    return codes.derive(services.config.code_secret, ref, nonce)


def codes_for(services, phone: str, appointments: Iterable[Appointment]) -> dict[str, str]:
    """ref -> code for the given live appointments of one number."""
    live = [a.ref for a in appointments if a.live]
    if not live:
        return {}
    pipe = services.redis.pipeline(transaction=False)
    for ref in live:
        pipe.hget(keys.appointment(phone, ref), "k")
    nonces = pipe.execute()
    secret = services.config.code_secret
    return {ref: codes.derive(secret, ref, n) for ref, n in zip(live, nonces) if n}


# ---- catalogue ----
def centre_names(r: Redis, centre_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(centre_ids)
    if not ids:
        return {}
    pipe = r.pipeline(transaction=False)
    for cid in ids:
        pipe.hget(keys.centre(cid), "name")
    return {cid: name for cid, name in zip(ids, pipe.execute()) if name}


def centre_from(cid: str, h: dict) -> Centre:
    return Centre(cid, h.get("name", cid), h.get("district", ""), h.get("area", ""),
                  h.get("address", ""))


def session_from(session_id: str, h: dict) -> Session:
    slots = tuple(
        Slot(name[2:], int(value), int(h.get("t:" + name[2:], 0)))
        for name, value in sorted(h.items()) if name.startswith("c:")
    )
    return Session(
        session_id=session_id, centre_id=h["ce"], day=date.fromisoformat(h["d"]),
        vaccine=h["v"], min_age=int(h.get("a", 0)),
        doses=frozenset(int(x) for x in h.get("o", "1").split("|") if x), slots=slots,
    )


class StoreCatalog:
    """The flows' read-only Catalog, backed by Redis; lookups are batched per call."""

    def __init__(self, r: Redis):
        self.r = r

    def centres_in_area(self, area_code: str) -> list[Centre]:
        ids = sorted(self.r.smembers(keys.area(area_code)))
        pipe = self.r.pipeline(transaction=False)
        for cid in ids:
            pipe.hgetall(keys.centre(cid))
        return [centre_from(cid, h) for cid, h in zip(ids, pipe.execute()) if h]

    def centre(self, centre_id: str) -> Centre | None:
        h = self.r.hgetall(keys.centre(centre_id))
        return centre_from(centre_id, h) if h else None

    def sessions(self, centre_ids: Sequence[str], days: Sequence[date]) -> list[Session]:
        pairs = [(cid, d.isoformat()) for cid in centre_ids for d in days]
        if not pairs:
            return []
        pipe = self.r.pipeline(transaction=False)
        for cid, day in pairs:
            pipe.smembers(keys.centre_day_sessions(cid, day))
        session_ids = sorted(set().union(*pipe.execute()))
        return load_sessions(self.r, session_ids)


def load_sessions(r: Redis, session_ids: Sequence[str]) -> list[Session]:
    if not session_ids:
        return []
    pipe = r.pipeline(transaction=False)
    for sid in session_ids:
        pipe.hgetall(keys.session(sid))
    return [session_from(sid, h) for sid, h in zip(session_ids, pipe.execute()) if h]


def session_id(centre_id: str, day: str, vaccine: str) -> str:
    return f"{centre_id}:{day}:{vaccine}"


# ---- vaccinators and certificates ----
def load_vaccinator(r: Redis, phone: str) -> Vaccinator | None:
    h = r.hgetall(keys.vaccinator(phone))
    if not h:
        return None
    return Vaccinator(phone, h.get("name", ""), h.get("centre", ""), h.get("active", "1") == "1")


def load_certificate(r: Redis, cert_id: str) -> Certificate | None:
    h = r.hgetall(keys.certificate(cert_id))
    if not h:
        return None
    return Certificate(
        cert_id=cert_id, ref=h["ref"], name=h["n"], vaccine=h["v"], dose=int(h["o"]),
        day=date.fromisoformat(h["d"]), centre_id=h["c"], centre_name=h.get("cn", h["c"]),
        vaccinator=h.get("vb", ""), frozen=h.get("frozen") == "1",
    )
