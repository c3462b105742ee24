"""Reading and writing the domain in Redis: citizens, appointments, catalogue, vaccinators.

Writes that belong to one conversation step are queued on a pipeline by `gateway.effects`;
this module only knows the record layouts (short field names keep memory per record small).
"""
from __future__ import annotations

import json
import time
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
                 catalog: "StoreCatalog | None" = None,
                 hashes: dict[str, dict] | None = None) -> tuple[Citizen, dict[str, str]]:
    """The citizen from its hash and set of refs, already read; also ref -> nonce.

    The appointments' hashes (read here unless given, ref -> hash) carry their nonces, so the
    codes need no further round trip; centre names come through `catalog` when given, which
    keeps them for the rest of the hop.
    """
    refs = sorted(refs)
    if hashes is None:
        found = _hashes(r, [keys.appointment(phone, ref) for ref in refs])
    else:
        found = [hashes.get(ref) or {} for ref in refs]
    ids = {h["c"] for h in found if h}
    names = catalog.centre_names(ids) if catalog is not None else centre_names(r, ids)
    citizen = Citizen(
        phone=phone,
        lang=record.get("lang", ""),
        beneficiaries=_persons(record.get("p")),
        appointments=tuple(appointment_from(phone, ref, h, names)
                           for ref, h in zip(refs, found) if h),
        reminders=record.get("rem", "1") == "1",
    )
    return citizen, {ref: h.get("k", "") for ref, h in zip(refs, found) if h}


def ussd_hop_reads(r: Redis, session_key: str, resume_key: str, phone: str
                   ) -> tuple[str | None, str | None, dict, dict[str, dict], str | None]:
    """What every USSD hop reads first: the session's record, the number's resume pointer, the
    citizen's hash, the catalogue's version and its appointments' hashes by ref.

    One round trip, and a second for the appointments when the number has any (about a third
    of hops). A Lua script could read them all in one, but on Redis each call of it cost
    more than the second trip saves: about 55 us against 4 us for the plain commands.
    """
    pipe = r.pipeline(transaction=False)
    pipe.get(session_key)
    pipe.get(resume_key)
    pipe.hgetall(keys.citizen(phone))
    pipe.smembers(keys.citizen_appointments(phone))
    pipe.get(keys.catalog_version())
    raw, resume_to, citizen, refs, version = pipe.execute()
    refs = sorted(refs)
    hashes = _hashes(r, [keys.appointment(phone, ref) for ref in refs])
    return raw, resume_to, citizen, dict(zip(refs, hashes)), version


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
    rules = _rules(h)
    return _session(session_id, rules, [h.get("t:" + name) for name, _ in rules[5]])


def _rules(h: dict) -> tuple:
    """What a session's hash says that only the importer changes: all but the seats taken."""
    return (
        h["ce"], date.fromisoformat(h["d"]), h["v"], int(h.get("a", 0)),
        frozenset(int(x) for x in h.get("o", "1").split("|") if x),
        tuple((name[2:], int(value)) for name, value in sorted(h.items())
              if name.startswith("c:")),
    )


def _session(session_id: str, rules: tuple, taken: Sequence) -> Session:
    centre_id, day, vaccine, min_age, doses, slots = rules
    return Session(
        session_id=session_id, centre_id=centre_id, day=day, vaccine=vaccine, min_age=min_age,
        doses=doses, slots=tuple(Slot(name, capacity, int(t or 0))
                                 for (name, capacity), t in zip(slots, taken)),
    )


SEAT_VIEW_SECONDS = 1.0  # how long a list screen may show seats taken as read by another hop


class _Kept:
    """What is known of the catalogue at one version: centres, areas, which sessions a centre
    has on which days, each session's rules, and the seats taken as last read for a list.

    Seats shown on a list may be up to SEAT_VIEW_SECONDS old (a seat is taken by script at
    confirm, which alone decides, and a lost race shows fresh seats); this process forgets a
    session's seats as soon as it takes or gives back one of them itself.
    """

    LIMIT = 50_000  # entries kept before starting over, so a process's copy stays bounded

    def __init__(self, version: str | None):
        self.version = version
        self.areas: dict[str, list[str]] = {}  # area code -> centre ids
        self.centres: dict[str, dict] = {}  # centre id -> hash ({} when missing)
        self.spans: dict[tuple, list[tuple[str, int]]] = {}  # (centre, lo, hi) -> (sid, day)
        self.rules: dict[str, tuple] = {}  # session id -> `_rules`
        self.seats: dict[str, tuple[float, list]] = {}  # session id -> (read at, seats taken)


_kept = _Kept(None)  # this process's copy, shared by its threads


def _kept_at(version: str | None) -> _Kept:
    """The process's copy for this catalogue version; a private one when there is none.

    The importer replaces the version in the same transaction as its writes, and everything
    put in the copy is read after the version was, so the copy is never older than its tag.
    """
    global _kept
    if version is None:
        return _Kept(None)
    kept = _kept
    if kept.version != version or len(kept.rules) + len(kept.spans) + len(kept.seats) > _Kept.LIMIT:
        kept = _kept = _Kept(version)
    return kept


def seats_changed(session_id: str) -> None:
    """This process took or gave back a seat of the session: its lists read them again."""
    _kept.seats.pop(session_id, None)


class StoreCatalog:
    """The flows' read-only Catalog, backed by Redis, for one hop.

    With `version` (the catalogue version read at the start of the hop) it uses and fills the
    process's copy of what only imports change, so most hops read nothing but seats; without,
    it keeps what it reads for this hop only. Seats taken are read at most once per hop.
    With `window` (the days a citizen can book), looking up an area also fetches its centres'
    sessions of those days in the same round trip, since the centres list is built from them.
    Seats taken come from the process's copy when read less than SEAT_VIEW_SECONDS ago, unless
    `fresh` (after a lost race, the citizen sees what is left now).
    """

    def __init__(self, r: Redis, window: Sequence[date] = (), version: str | None = None,
                 fresh: bool = False):
        self.r = r
        ords = [d.toordinal() for d in window]
        self.span = (min(ords), max(ords)) if ords else None
        self._kept = _kept_at(version)
        self._fresh = fresh
        self._sessions: dict[str, Session | None] = {}  # session id -> with seats, this hop

    def centres_in_area(self, area_code: str) -> list[Centre]:
        areas = self._kept.areas
        if area_code not in areas:
            areas[area_code] = sorted(self.r.smembers(keys.area(area_code)))
        ids = areas[area_code]
        self._fetch(ids, self.span)
        centres = self._kept.centres
        return [centre_from(cid, centres[cid]) for cid in ids if centres[cid]]

    def centre(self, centre_id: str) -> Centre | None:
        self._fetch([centre_id], None)
        h = self._kept.centres[centre_id]
        return centre_from(centre_id, h) if h else None

    def centre_names(self, centre_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(centre_ids)
        self._fetch(ids, None)
        centres = self._kept.centres
        return {cid: centres[cid]["name"] for cid in ids if centres[cid].get("name")}

    def sessions(self, centre_ids: Sequence[str], days: Sequence[date]) -> list[Session]:
        ords = {d.toordinal() for d in days}
        if not centre_ids or not ords:
            return []
        span = self.span
        if span is None or not span[0] <= min(ords) <= max(ords) <= span[1]:
            span = (min(ords), max(ords))
        self._fetch(centre_ids, span)
        spans = self._kept.spans
        session_ids = sorted({sid for cid in dict.fromkeys(centre_ids)
                              for sid, day in spans[(cid, *span)] if day in ords})
        self._read_seats([sid for sid in session_ids if sid not in self._sessions])
        return [self._sessions[sid] for sid in session_ids if self._sessions[sid] is not None]

    def _fetch(self, centre_ids: Iterable[str], span: tuple[int, int] | None) -> None:
        """Read the centres, and their sessions in `span`, not known yet, in one round trip."""
        kept = self._kept
        ids = list(dict.fromkeys(centre_ids))
        centres = [cid for cid in ids if cid not in kept.centres]
        spans = [] if span is None else [key for key in ((cid, *span) for cid in ids)
                                          if key not in kept.spans]
        if not centres and not spans:
            return
        pipe = self.r.pipeline(transaction=False)
        for cid in centres:
            pipe.hgetall(keys.centre(cid))
        for cid, low, high in spans:
            pipe.zrangebyscore(keys.centre_sessions(cid), low, high, withscores=True)
        found = pipe.execute()
        kept.centres.update(zip(centres, found))
        for key, rows in zip(spans, found[len(centres):]):
            kept.spans[key] = [(sid, int(day)) for sid, day in rows]

    def _read_seats(self, session_ids: Sequence[str]) -> None:
        """Seats taken of these sessions, in one round trip (none when all were read lately);
        whole hashes of those whose rules are not known yet."""
        if not session_ids:
            return
        rules, seen = self._kept.rules, self._kept.seats
        now = time.monotonic()
        unread = []
        for sid in session_ids:
            known, held = rules.get(sid), seen.get(sid)
            if known is not None and held is not None and not self._fresh \
                    and now - held[0] < SEAT_VIEW_SECONDS:
                self._sessions[sid] = _session(sid, known, held[1])
            else:
                unread.append((sid, known))
        if not unread:
            return
        pipe = self.r.pipeline(transaction=False)
        for sid, known in unread:
            if known is None:
                pipe.hgetall(keys.session(sid))
            else:  # "ce" is always there, so a missing session and one without slots both show
                pipe.hmget(keys.session(sid), [f"t:{name}" for name, _ in known[5]] + ["ce"])
        for (sid, known), found in zip(unread, pipe.execute()):
            if known is not None:
                session = _session(sid, known, found) if found[-1] is not None else None
            elif found:
                known = rules[sid] = _rules(found)
                found = [found.get(f"t:{name}") for name, _ in known[5]]
                session = _session(sid, known, found)
            else:
                session = None
            if session is not None:
                seen[sid] = (now, found)
            self._sessions[sid] = session


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
