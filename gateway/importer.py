"""CSV imports of centres, sessions and vaccinators: validate every row, then upsert.

A file with bad rows imports nothing unless `skip_bad` is set; every bad row is reported with
its line number and reason. Re-importing a file is safe: rows are upserts and seats already
taken are kept.
"""
from __future__ import annotations

import csv
import re
import secrets
from dataclasses import dataclass, field
from datetime import date
from typing import Callable, TextIO

from redis import Redis

from . import keys, phones, slots, store

COLUMNS = {
    "centres": ("centre_id", "name", "district", "area_code", "address"),
    "sessions": ("centre_id", "date", "vaccine", "min_age", "dose", "slot", "capacity"),
    "vaccinators": ("phone", "name", "centre_id"),
}
BATCH = 500
SLOT_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
VACCINE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .+-]{0,19}$")


class BadRow(ValueError):
    """A row that cannot be imported; the message is the reason."""


@dataclass
class Report:
    kind: str
    rows: int = 0
    imported: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    missing_columns: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.bad and not self.missing_columns


def _text(row: dict, name: str, limit: int, required: bool = True) -> str:
    value = (row.get(name) or "").strip()
    if required and not value:
        raise BadRow(f"{name} is empty")
    if len(value) > limit:
        raise BadRow(f"{name} is longer than {limit} characters")
    return value


def _digits(row: dict, name: str, low: int, high: int) -> str:
    value = _text(row, name, high)
    if not value.isdigit() or not (low <= len(value) <= high):
        raise BadRow(f"{name} must be {low}-{high} digits, got {value!r}")
    return value


def _int(row: dict, name: str, low: int, high: int) -> int:
    value = _text(row, name, 10)
    if not value.isdigit() or not (low <= int(value) <= high):
        raise BadRow(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


# ---- row parsers: row -> a record to write (pure except lookups passed in) ----
def parse_centre(row: dict, _ctx) -> dict:
    return {
        "id": _digits(row, "centre_id", 1, 12),
        "name": _text(row, "name", 80),
        "district": _text(row, "district", 60),
        "area": _digits(row, "area_code", 3, 10),
        "address": _text(row, "address", 200, required=False),
    }


def parse_session(row: dict, ctx) -> dict:
    centre_id = _digits(row, "centre_id", 1, 12)
    if centre_id not in ctx["centres"]:
        raise BadRow(f"centre {centre_id} is not imported yet (import centres first)")
    raw_day = _text(row, "date", 10)
    try:
        day = date.fromisoformat(raw_day)
    except ValueError:
        raise BadRow(f"date must be YYYY-MM-DD, got {raw_day!r}") from None
    vaccine = _text(row, "vaccine", 20)
    if not VACCINE_RE.match(vaccine):
        raise BadRow(f"vaccine must be letters, digits, spaces, '.', '+' or '-', got {vaccine!r}")
    dose = _text(row, "dose", 3)
    if dose not in ("1", "2", "1|2"):
        raise BadRow(f"dose must be 1, 2 or 1|2, got {dose!r}")
    slot = _text(row, "slot", 11)
    if not SLOT_RE.match(slot) or slot[:5] >= slot[6:]:
        raise BadRow(f"slot must look like 09:00-11:00 (start before end), got {slot!r}")
    return {
        "sid": store.session_id(centre_id, day.isoformat(), vaccine), "centre": centre_id,
        "day": day.isoformat(), "vaccine": vaccine, "min_age": _int(row, "min_age", 0, 120),
        "dose": dose, "slot": slot, "capacity": _int(row, "capacity", 0, 100000),
    }


def parse_vaccinator(row: dict, ctx) -> dict:
    raw = _text(row, "phone", 20)
    try:
        phone = phones.normalise(raw, ctx["region"])
    except phones.InvalidPhone as exc:
        raise BadRow(f"phone {raw!r} is not a valid number ({exc})") from None
    centre_id = _digits(row, "centre_id", 1, 12)
    if centre_id not in ctx["centres"]:
        raise BadRow(f"centre {centre_id} is not imported yet (import centres first)")
    active = (row.get("active") or "1").strip().lower()
    if active not in ("1", "0", "yes", "no", "true", "false"):
        raise BadRow(f"active must be 1 or 0, got {active!r}")
    return {"phone": phone, "name": _text(row, "name", 60), "centre": centre_id,
            "active": "1" if active in ("1", "yes", "true") else "0"}


# ---- writers: queue the upsert of one record on a pipeline ----
def write_centre(r: Redis, pipe, rec: dict) -> None:
    old_area = r.hget(keys.centre(rec["id"]), "area")
    if old_area and old_area != rec["area"]:
        pipe.srem(keys.area(old_area), rec["id"])
    pipe.hset(keys.centre(rec["id"]), mapping={k: rec[k] for k in
                                               ("name", "district", "area", "address")})
    pipe.sadd(keys.centres(), rec["id"])
    pipe.sadd(keys.area(rec["area"]), rec["id"])


def write_session(r: Redis, pipe, rec: dict) -> None:
    key = keys.session(rec["sid"])
    pipe.hset(key, mapping={"ce": rec["centre"], "d": rec["day"], "v": rec["vaccine"],
                            "a": rec["min_age"], "o": rec["dose"],
                            "c:" + rec["slot"]: rec["capacity"]})
    pipe.zadd(keys.centre_sessions(rec["centre"]),
              {rec["sid"]: date.fromisoformat(rec["day"]).toordinal()})


def write_vaccinator(r: Redis, pipe, rec: dict) -> None:
    pipe.hset(keys.vaccinator(rec["phone"]), mapping={"name": rec["name"],
                                                      "centre": rec["centre"],
                                                      "active": rec["active"]})
    pipe.sadd(keys.vaccinators(), rec["phone"])


PARSERS = {"centres": parse_centre, "sessions": parse_session, "vaccinators": parse_vaccinator}
WRITERS = {"centres": write_centre, "sessions": write_session, "vaccinators": write_vaccinator}
CATALOGUE = ("centres", "sessions")  # the kinds that processes keep a copy of


def _check_sessions(records: list[tuple[int, dict]], r: Redis) -> list[tuple[int, str]]:
    """Cross-row checks: one slot once per file, one set of rules per session, seats kept."""
    bad, first_line, rules = [], {}, {}
    for line, rec in records:
        slot_key = (rec["sid"], rec["slot"])
        if slot_key in first_line:
            bad.append((line, f"slot {rec['slot']} of this session is also on line "
                              f"{first_line[slot_key]}"))
            continue
        first_line[slot_key] = line
        rule = (rec["min_age"], rec["dose"])
        if rules.setdefault(rec["sid"], (line, rule))[1] != rule:
            bad.append((line, f"min_age/dose differ from line {rules[rec['sid']][0]} "
                              "for the same centre, date and vaccine"))
    pipe = r.pipeline(transaction=False)
    for _, rec in records:
        pipe.hget(keys.session(rec["sid"]), "t:" + rec["slot"])
    for (line, rec), taken in zip(records, pipe.execute()):
        if taken and int(taken) > rec["capacity"]:
            bad.append((line, f"capacity {rec['capacity']} is below the {taken} seats "
                              "already booked"))
    return bad


# The field that names a record: a file that names one record twice is ambiguous.
UNIQUE = {"centres": ("id", "centre"), "vaccinators": ("phone", "phone")}


def _check_unique(kind: str, records: list[tuple[int, dict]]) -> list[tuple[int, str]]:
    """Rows naming a centre (or vaccinator) already named on an earlier line of the file."""
    name, label = UNIQUE[kind]
    first_line: dict[str, int] = {}
    bad = []
    for line, rec in records:
        first = first_line.setdefault(rec[name], line)
        if first != line:
            bad.append((line, f"{label} {rec[name]} is also on line {first}"))
    return bad


def import_csv(r: Redis, kind: str, stream: TextIO, *, skip_bad: bool = False,
               region: str = "IN", progress: Callable[[int, int], None] | None = None) -> Report:
    """Validate every row of one CSV file, then upsert the good ones in batches.

    `progress(done, total)` is called after each batch of writes, last with done == total.
    """
    report = Report(kind)
    reader = csv.DictReader(stream)
    header = tuple((h or "").strip() for h in (reader.fieldnames or ()))
    reader.fieldnames = list(header)
    report.missing_columns = tuple(c for c in COLUMNS[kind] if c not in header)
    if report.missing_columns:
        return report
    ctx = {"centres": set(r.smembers(keys.centres())), "region": region}
    good: list[tuple[int, dict]] = []
    parse = PARSERS[kind]
    for row in reader:
        report.rows += 1
        line = reader.line_num
        try:
            if None in row:
                raise BadRow("more fields than the header has")
            good.append((line, parse(row, ctx)))
        except BadRow as exc:
            report.bad.append((line, str(exc)))
    if kind in UNIQUE:
        report.bad.extend(_check_unique(kind, good))
    if kind == "sessions":
        report.bad.extend(_check_sessions(good, r))
    if report.bad:
        bad_lines = {line for line, _ in report.bad}
        good = [(line, rec) for line, rec in good if line not in bad_lines]
    report.bad.sort()
    if report.bad and not skip_bad:
        return report
    _write(r, kind, [rec for _, rec in good], progress)
    report.imported = len(good)
    return report


def _write(r: Redis, kind: str, records: list[dict], progress) -> None:
    write = WRITERS[kind]
    cluster = slots.is_cluster(r)
    pipe = r.pipeline(transaction=not cluster)
    done = 0
    for rec in records:
        write(r, pipe, rec)
        done += 1
        if done % BATCH == 0:
            _commit(r, kind, pipe, cluster)
            if progress:
                progress(done, len(records))
    _commit(r, kind, pipe, cluster)
    if progress:
        progress(done, len(records))


def _commit(r: Redis, kind: str, pipe, cluster: bool) -> None:
    """Run one batch; a batch that changes the catalogue also replaces its version token, so
    no process keeps what the batch replaced (`store.StoreCatalog`). On a single Redis the
    batch is one transaction with its token. A cluster cannot run a transaction over many
    slots: the batch's records go first (each written before the indexes naming it), the new
    token only once they are all in, so a process that sees the token reads the new data."""
    if kind in CATALOGUE and not cluster:
        pipe.set(keys.catalog_version(), secrets.token_hex(8))
    pipe.execute()
    if kind in CATALOGUE and cluster:
        r.set(keys.catalog_version(), secrets.token_hex(8))
