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
    return citizen_from(r, phone, record, refs)[0]


def citizen_from(r: Redis, phone: str, record: dict, refs: Iterable[str],
                 catalog: "StoreCatalog | None" = None) -> tuple[Citizen, dict[str, str]]:
    """The citizen from its hash and set of refs, already read; also ref -> nonce.

    The appointments' hashes carry their nonces, so the codes need no further round trip;
    centre names come through `catalog` when given, which keeps them for the rest of the hop.
    """
    refs = sorted(refs)
    hashes = _hashes(r, [keys.appointment(phone, ref) for ref in refs])
    ids = {h["c"] for h in hashes if h}
    names = catalog.centre_names(ids) if catalog is not None else centre_names(r, ids)
    citizen = Citizen(
        phone=phone,
        lang=record.get("lang", ""),
        beneficiaries=_persons(record.get("p")),
        appointments=tuple(appointment_from(phone, ref, h, names)
                           for ref, h in zip(refs, hashes) if h),
        reminders=record.get("rem", "1") == "1",
    )
    return citizen, {ref: h.get("k", "") for ref, h in zip(refs, hashes) if h}


def ussd_hop_reads(r: Redis, session_key: str, resume_key: str,
                   phone: str) -> tuple[str | None, str | None, dict, set]:
    """What every USSD hop reads first, in one round trip: the session's record, the number's
    resume pointer, the citizen's hash and set of refs."""
    pipe = r.pipeline(transaction=False)
    pipe.get(session_key)
    pipe.get(resume_key)
    pipe.hgetall(keys.citizen(phone))
    pipe.smembers(keys.citizen_appointments(phone))
    raw, resume, record, refs = pipe.execute()
    return raw, resume, record, refs


def _hashes(r: Redis, names: Sequence[str]) -> list[dict]:
    if not names:
        return []
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    return pipe.execute()


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


def codes_from(secret: str, appointments: Iterable[Appointment],
               nonces: dict[str, str]) -> dict[str, str]:
    """ref -> code for the live appointments, from nonces already read (`citizen_from`)."""
    return {a.ref: codes.derive(secret, a.ref, nonces[a.ref]) for a in appointments
            if a.live and nonces.get(a.ref)}


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
    """The flows' read-only Catalog, backed by Redis, for one hop.

    What it reads it keeps, so a step that works out a list and then the next screen's list
    asks Redis once; lookups are batched per call. With `window` (the days a citizen can
    book), looking up an area also fetches its centres' sessions of those days in the same
    round trip, since the centres list is built from them.
    """

    def __init__(self, r: Redis, window: Sequence[date] = ()):
        self.r = r
        self.window = tuple(d.isoformat() for d in window)
        self._areas: dict[str, list[str]] = {}
        self._centres: dict[str, dict] = {}  # centre id -> hash ({} when missing)
        self._days: dict[tuple[str, str], set] = {}  # (centre id, day) -> session ids
        self._sessions: dict[str, dict] = {}  # session id -> hash

    def centres_in_area(self, area_code: str) -> list[Centre]:
        if area_code not in self._areas:
            self._areas[area_code] = sorted(self.r.smembers(keys.area(area_code)))
        ids = self._areas[area_code]
        self._fetch(ids, [(cid, day) for cid in ids for day in self.window])
        return [centre_from(cid, self._centres[cid]) for cid in ids if self._centres[cid]]

    def centre(self, centre_id: str) -> Centre | None:
        self._fetch([centre_id], ())
        h = self._centres[centre_id]
        return centre_from(centre_id, h) if h else None

    def centre_names(self, centre_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(centre_ids)
        self._fetch(ids, ())
        return {cid: self._centres[cid]["name"] for cid in ids
                if self._centres[cid].get("name")}

    def sessions(self, centre_ids: Sequence[str], days: Sequence[date]) -> list[Session]:
        pairs = [(cid, d.isoformat()) for cid in centre_ids for d in days]
        if not pairs:
            return []
        self._fetch(centre_ids, pairs)
        session_ids = sorted(set().union(*(self._days[pair] for pair in pairs)))
        missing = [sid for sid in session_ids if sid not in self._sessions]
        for sid, h in zip(missing, _hashes(self.r, [keys.session(sid) for sid in missing])):
            self._sessions[sid] = h
        return [session_from(sid, self._sessions[sid]) for sid in session_ids
                if self._sessions[sid]]

    def _fetch(self, centre_ids: Iterable[str], pairs: Iterable[tuple[str, str]]) -> None:
        """Read the centres and (centre, day) session sets not read yet, in one round trip."""
        centres = [cid for cid in dict.fromkeys(centre_ids) if cid not in self._centres]
        pairs = [pair for pair in dict.fromkeys(pairs) if pair not in self._days]
        if not centres and not pairs:
            return
        pipe = self.r.pipeline(transaction=False)
        for cid in centres:
            pipe.hgetall(keys.centre(cid))
        for cid, day in pairs:
            pipe.smembers(keys.centre_day_sessions(cid, day))
        found = pipe.execute()
        self._centres.update(zip(centres, found))
        self._days.update(zip(pairs, found[len(centres):]))


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
