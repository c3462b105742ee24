"""What must hold in a Teeka store after any fault; the fault suite runs these checks at its end.

    found = check(redis_client, sent=fake.requests)
    assert found.violations == [], found.violations
    print(found.figures)

Everything is read through `gateway.keys` and the record layouts of `gateway.store` and
`gateway.outbox`. The checks:

- seats: for every slot, 0 <= taken <= capacity (so taken + free = capacity), and taken equals
  the number of holders in the session's roster; every appointment of that slot that holds a
  seat (every status but `cancelled`: a locked, disputed or no-show appointment used its
  seat) is a holder, and every other holder is a booking in flight (its number's intent,
  given back by `gateway.slots.recover` if it never commits);
- slips: every appointment has its appointment-slip record (purpose `booking`, `code_of` = ref,
  to its number), and no slip exists without its appointment;
- completions: every completion record names a certificate whose appointment had a `verified`
  audit event before its `vaccinated` one, by a vaccinator of the booked centre, on the booked
  day; one completion per certificate, and every recorded dose has its completion record;
- attempts: no record used more provider attempts than its `max_attempts`;
- sends (given the provider's requests): no message reached the provider more often than its
  attempts allow, every request is explained by a record, and a record that says the
  provider accepted it carries a message id the provider really issued.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable
from zoneinfo import ZoneInfo

from gateway import keys

SEAT_FREEING = frozenset({"cancelled"})  # the only status that gives its seat back
CERT_RE = re.compile(r"(?<!\d)(\d{4} \d{4} \d{4})(?!\d)")
REF_RE = re.compile(r"(?<!\d)(\d{5} \d{5})(?!\d)")
MASK = "####"
PAGE = 500


@dataclass
class Checked:
    """The outcome of `check`: what is wrong (empty when all holds) and what was looked at."""

    violations: list[str]
    figures: dict[str, int]


@dataclass
class SendGroup:
    """Records that read the same to one number, and the provider requests that carried them."""

    to: str
    message_ids: list[str]
    attempts: int
    requests: list = field(default_factory=list)

    @property
    def accepted(self) -> list:
        return [req for req in self.requests if provider_ids(req)]

    @property
    def duplicates(self) -> int:
        """Accepted sends beyond one per record."""
        return max(0, len(self.accepted) - len(self.message_ids))


@dataclass
class Snapshot:
    """The store, read once."""

    sessions: dict[str, dict]  # session id -> hash
    appointments: dict[str, tuple[str, dict]]  # ref -> (phone, hash)
    messages: dict[str, dict]  # message id -> record
    audit: dict[str, list[dict]]  # ref -> its events, oldest first
    vaccinators: dict[str, dict]  # phone -> hash
    certificates: dict[str, dict]  # cert id -> hash (those named by appointments or messages)
    rosters: dict[str, dict] = field(default_factory=dict)  # session id -> ref -> phone|slot|time
    intents: dict[str, dict] = field(default_factory=dict)  # phone -> ref -> session|slot|time

    @classmethod
    def read(cls, r) -> "Snapshot":
        sessions = {_inner(key, keys.session): h for key, h in _scan_hashes(r, keys.session)}
        appointments = {}
        for key, h in _scan_hashes(r, keys.appointment):
            phone, ref = _inner(key, keys.appointment)
            appointments[ref] = (phone, h)
        ids = r.zrange(keys.messages_index(), 0, -1)
        messages = {mid: rec for mid, rec in zip(ids, _hashes(r, [keys.message(m) for m in ids])) if rec}
        audit: dict[str, list[dict]] = defaultdict(list)
        last, ops = "-", set()
        while True:
            page = r.xrange(keys.audit(), min=last, count=PAGE)
            page = [entry for entry in page if entry[0] != last]
            if not page:
                break
            for entry_id, event in page:
                op = event.pop("op", None)  # a line a recovered follow-up wrote again
                if op is None or op not in ops:
                    ops.add(op)
                    audit[event.get("ref", "")].append({**event, "id": entry_id})
            last = page[-1][0]
        vaccinators = {_inner(key, keys.vaccinator): h for key, h in _scan_hashes(r, keys.vaccinator)}
        cert_ids = {h["ce"] for _, h in appointments.values() if h.get("ce")}
        for rec in messages.values():
            if rec.get("purpose") == "completion":
                cert_ids.update(_compact(c) for c in CERT_RE.findall(rec.get("body", "")))
        cert_ids = sorted(cert_ids)
        certificates = {cid: h for cid, h in zip(cert_ids, _hashes(r, [keys.certificate(c) for c in cert_ids])) if h}
        rosters = {_inner(key, keys.session_roster): h for key, h in _scan_hashes(r, keys.session_roster)}
        intents = {_inner(key, keys.booking_intents): h for key, h in _scan_hashes(r, keys.booking_intents)}
        return cls(sessions, appointments, messages, dict(audit), vaccinators, certificates, rosters, intents)


# ---------------------------------------------------------------- the checks
def check(r, sent: Iterable | None = None, timezone: str = "Asia/Kolkata") -> Checked:
    """Run every check on the store behind `r` (a decoded client); `sent`: the provider's requests."""
    snap = Snapshot.read(r)
    violations = (seat_violations(snap) + slip_violations(snap) + completion_violations(snap, timezone)
                  + attempt_violations(snap))
    figures = {
        "slots": sum(1 for h in snap.sessions.values() for name in h if name.startswith("c:")),
        "seats taken": sum(int(v) for h in snap.sessions.values() for n, v in h.items() if n.startswith("t:")),
        "appointments": len(snap.appointments),
        "seats held for bookings in flight": sum(len(i) for i in snap.intents.values()),
        "messages checked": len(snap.messages),
        "completions": sum(1 for m in snap.messages.values() if m.get("purpose") == "completion"),
        "audit events": sum(len(v) for v in snap.audit.values()),
    }
    if sent is not None:
        sent = list(sent)
        groups, unexplained = send_groups(snap, sent)
        violations += send_violations(snap, groups, unexplained)
        figures["provider requests"] = len(sent)
        figures["provider accepted"] = sum(len(g.accepted) for g in groups)
        figures["duplicate sends"] = sum(g.duplicates for g in groups)
    figures["violations"] = len(violations)
    return Checked(violations, figures)


def violations(r, sent: Iterable | None = None, timezone: str = "Asia/Kolkata") -> list[str]:
    """Only the list of what is wrong."""
    return check(r, sent, timezone).violations


def seat_violations(snap: Snapshot) -> list[str]:
    holding: Counter = Counter()
    found = []
    for ref, (phone, h) in snap.appointments.items():
        if h.get("s") in SEAT_FREEING:
            continue
        session = snap.sessions.get(h.get("se", ""))
        if session is None or "c:" + h.get("sl", "") not in session:
            found.append(f"appointment {ref} holds a seat in a slot that does not exist: {h.get('se')} {h.get('sl')}")
            continue
        holder = snap.rosters.get(h["se"], {}).get(ref, "")
        if holder.split("|")[:2] != [phone, h["sl"]]:
            found.append(f"appointment {ref} holds a seat of {h['se']} {h['sl']} but the roster has {holder!r}")
    for sid, roster in snap.rosters.items():
        for ref, holder in roster.items():
            phone, slot, _ = holder.split("|")
            holding[(sid, slot)] += 1
            booked = snap.appointments.get(ref)
            if booked is not None and booked[1].get("s") not in SEAT_FREEING:
                continue
            if ref not in snap.intents.get(phone, {}):
                found.append(f"slot {sid} {slot}: seat held for {ref} of {phone}, which has no "
                             "appointment holding it and no booking in flight")
    for sid, h in snap.sessions.items():
        for name, value in h.items():
            if not name.startswith("c:"):
                continue
            slot = name[2:]
            capacity, taken = int(value), int(h.get("t:" + slot, 0))
            free = capacity - taken
            if taken < 0 or free < 0:
                found.append(f"slot {sid} {slot}: taken {taken}, free {free}, capacity {capacity}")
            if taken != holding[(sid, slot)]:
                found.append(f"slot {sid} {slot}: taken {taken} but the roster has {holding[(sid, slot)]} holders")
    return found


def slip_violations(snap: Snapshot) -> list[str]:
    slips = defaultdict(list)
    for mid, rec in snap.messages.items():
        if rec.get("purpose") == "booking":
            slips[rec.get("code_of", "")].append(rec)
    found = []
    for ref, (phone, _) in snap.appointments.items():
        if not any(rec.get("to") == phone for rec in slips.get(ref, [])):
            found.append(f"appointment {ref} has no appointment-slip message record")
    for ref in slips:
        if ref not in snap.appointments:
            found.append(f"an appointment slip for ref {ref!r}, which is not booked")
    return found


def completion_violations(snap: Snapshot, timezone: str) -> list[str]:
    zone = ZoneInfo(timezone)
    found = []
    per_cert: Counter = Counter()
    for mid, rec in snap.messages.items():
        if rec.get("purpose") != "completion":
            continue
        cert_id = _completion_cert(snap, rec)
        if cert_id is None:
            found.append(f"completion message {mid} names no certificate of the store")
            continue
        per_cert[cert_id] += 1
        ref = snap.certificates[cert_id].get("ref", "")
        owner = snap.appointments.get(ref)
        if owner is None or owner[0] != rec.get("to"):
            found.append(f"completion message {mid} went to another number than appointment {ref}'s")
            continue
        found += _verified_first(snap, ref, owner[1], zone, f"completion message {mid}")
    for ref, (_, h) in snap.appointments.items():
        if h.get("s") == "vaccinated":
            found += _verified_first(snap, ref, h, zone, f"dose recorded for {ref}")
        cert_id = h.get("ce")
        if cert_id and per_cert[cert_id] != 1:
            found.append(f"appointment {ref} (certificate {cert_id}) has {per_cert[cert_id]} completion messages")
    return found


def attempt_violations(snap: Snapshot) -> list[str]:
    found = []
    for mid, rec in snap.messages.items():
        attempts, most = int(rec.get("attempts") or 0), int(rec.get("max_attempts") or 0)
        if attempts > most:
            found.append(f"message {mid}: {attempts} attempts, at most {most} allowed")
    return found


def send_groups(snap: Snapshot, sent: Iterable) -> tuple[list[SendGroup], list]:
    """The provider's requests matched to records; also the requests no record explains."""
    by_to: dict[str, dict[str, SendGroup]] = defaultdict(dict)
    bodies: dict[str, tuple[str, int]] = {}
    for mid, rec in sorted(snap.messages.items()):
        to, body = rec.get("to", ""), rec.get("body", "")
        group = by_to[to].get(body)
        if group is None:
            group = by_to[to][body] = SendGroup(to, [], 0)
            bodies[id(group)] = (body, int(rec.get("code_at", -1) or -1) if rec.get("code_of") else -1)
        group.message_ids.append(mid)
        group.attempts += int(rec.get("attempts") or 0)
    unexplained = []
    for req in sent:
        for number in req.to:
            match = next((g for g in by_to.get(number, {}).values() if _carries(req.message, *bodies[id(g)])), None)
            if match is None:
                unexplained.append(req)
            else:
                match.requests.append(req)
    return [g for groups in by_to.values() for g in groups.values()], unexplained


def send_violations(snap: Snapshot, groups: list[SendGroup], unexplained: list) -> list[str]:
    found = [f"the provider got a message to {req.to} that no record explains" for req in unexplained]
    issued = set()
    for group in groups:
        if len(group.requests) > group.attempts:
            found.append(f"message {', '.join(group.message_ids)}: {len(group.requests)} provider requests, "
                         f"{group.attempts} attempts recorded")
        for req in group.requests:
            issued.update(provider_ids(req))
    for mid, rec in snap.messages.items():
        if rec.get("provider_id") and rec["provider_id"] not in issued:
            found.append(f"message {mid} says the provider accepted it as {rec['provider_id']}, "
                         "which the provider never issued")
    return found


def provider_ids(req) -> list[str]:
    """The message ids the provider issued in its answer to one request (none: not accepted)."""
    if getattr(req, "status", 0) != 201 or not getattr(req, "answer", ""):
        return []
    try:
        rows = json.loads(req.answer)["SMSMessageData"]["Recipients"]
    except (ValueError, KeyError, TypeError):
        return []
    return [row["messageId"] for row in rows if str(row.get("messageId", "")).startswith("ATXid_")]


# ---------------------------------------------------------------- helpers
def _verified_first(snap: Snapshot, ref: str, appt: dict, zone: ZoneInfo, what: str) -> list[str]:
    """A `verified` event before the first `vaccinated` one, at the booked centre, on the booked day."""
    verified = None
    for event in snap.audit.get(ref, []):
        if event.get("status") == "verified":
            verified = event
        elif event.get("status") == "vaccinated":
            break
    if verified is None:
        return [f"{what}: appointment {ref} has no verified code before its dose"]
    found = []
    centre = snap.vaccinators.get(verified.get("actor", ""), {}).get("centre")
    if centre != appt.get("c"):
        found.append(f"{what}: {ref} was verified by a vaccinator of centre {centre}, booked at {appt.get('c')}")
    day = datetime.fromisoformat(verified["at"]).astimezone(zone).date().isoformat()
    if day != appt.get("d"):
        found.append(f"{what}: {ref} was verified on {day}, booked for {appt.get('d')}")
    return found


def _completion_cert(snap: Snapshot, rec: dict) -> str | None:
    for shown in CERT_RE.findall(rec.get("body", "")):
        if _compact(shown) in snap.certificates:
            return _compact(shown)
    return None


def _carries(message: str, body: str, code_at: int) -> bool:
    """Does the provider's text carry the record's body (its masked code filled in)?"""
    if code_at < 0 or body[code_at:code_at + len(MASK)] != MASK:
        return message == body
    end = code_at + len(MASK)
    return (len(message) == len(body) and message[:code_at] == body[:code_at]
            and message[end:] == body[end:] and message[code_at:end].isdigit())


def _compact(shown: str) -> str:
    return shown.replace(" ", "")


def _scan_hashes(r, builder) -> list[tuple[str, dict]]:
    """Every hash whose key `builder` makes, with its contents."""
    names = sorted(r.scan_iter(match=_pattern(builder), count=1000))
    return [(name, h) for name, h in zip(names, _hashes(r, names)) if h]


def _hashes(r, names: list[str]) -> list[dict]:
    found = []
    for start in range(0, len(names), PAGE):
        pipe = r.pipeline(transaction=False)
        for name in names[start:start + PAGE]:
            pipe.hgetall(name)
        found += pipe.execute()
    return found


def _markers(builder) -> tuple[str, ...]:
    count = builder.__code__.co_argcount
    return tuple(f"\x00{i}\x00" for i in range(count))


def _pattern(builder) -> str:
    """The SCAN pattern for a key builder of gateway.keys: its arguments as `*`."""
    key = builder(*_markers(builder))
    for marker in _markers(builder):
        key = key.replace(marker, "*")
    return key


def _inner(key: str, builder):
    """The argument(s) a key was built from (a tuple when the builder takes several)."""
    template = builder(*_markers(builder))
    parts = re.split("(\x00\\d\x00)", template)
    regex = "".join("(.+?)" if p.startswith("\x00") else re.escape(p) for p in parts if p)
    match = re.fullmatch(regex, key)
    if match is None:
        raise ValueError(f"{key!r} is not a key of {builder.__name__}")
    return match.group(1) if len(match.groups()) == 1 else match.groups()
