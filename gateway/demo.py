"""A small, realistic demo data set, loaded through the same CSV import as real data."""
from __future__ import annotations

import csv
import io
from datetime import date, timedelta

from . import importer, keys

CENTRES = [
    ("101", "Connaught Place UPHC", "New Delhi", "110001", "Block A, Connaught Place"),
    ("102", "Gole Market Dispensary", "New Delhi", "110001", "Gole Market"),
    ("103", "Lady Hardinge Hospital", "New Delhi", "110001", "Shaheed Bhagat Singh Marg"),
    ("201", "Karol Bagh PHC", "Central Delhi", "110005", "Ajmal Khan Road"),
    ("301", "Colaba Municipal Dispensary", "Mumbai", "400005", "Colaba Causeway"),
    ("401", "Charminar UPHC", "Hyderabad", "500002", "Near Charminar"),
]
SLOTS = ("09:00-11:00", "11:00-13:00", "14:00-16:00")
VACCINATORS = [
    ("+919810000101", "Sunita Rao", "101"),
    ("+919810000102", "Imran Qureshi", "102"),
    ("+919810000201", "Meena Iyer", "201"),
    ("+919810000301", "Rahul Patil", "301"),
    ("+919810000401", "Farah Ali", "401"),
]
DAYS = 8  # today and the next 7 days


def _csv(header: tuple[str, ...], rows) -> io.StringIO:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    out.seek(0)
    return out


def session_rows(today: date):
    for offset in range(DAYS):
        day = (today + timedelta(days=offset)).isoformat()
        for centre_id, *_ in CENTRES:
            vaccine = "Covishield" if int(centre_id) % 2 else "Covaxin"
            for i, slot in enumerate(SLOTS):
                yield (centre_id, day, vaccine, 18, "1|2", slot, 10 + 5 * i)


def load(services, today: date) -> dict[str, importer.Report]:
    """Import the demo centres, sessions (today + 7 days) and vaccinators."""
    r, region = services.redis, services.config.default_region
    reports = {}
    for kind, rows in (("centres", CENTRES), ("sessions", list(session_rows(today))),
                       ("vaccinators", VACCINATORS)):
        report = importer.import_csv(r, kind, _csv(importer.COLUMNS[kind], rows), region=region)
        if not report.ok:
            raise RuntimeError(f"demo {kind} did not import: {report.bad}")
        reports[kind] = report
    return reports


def load_if_empty(services) -> bool:
    """Load the demo data when no centre exists yet; True when it was loaded."""
    if services.redis.scard(keys.centres()):
        return False
    from .conversation import now_in

    load(services, now_in(services).date())
    return True


def describe(services) -> str:
    """What a newcomer can dial and type with the demo data."""
    lines = [
        f"Demo data: {len(CENTRES)} centres, sessions for today and the next {DAYS - 1} days.",
        f"Dial {services.config.ussd_code} from any number and enter area code 110001 "
        "(also 110005, 400005, 500002).",
        "Vaccinators (send V <ref> <code>, then DONE <ref>):",
    ]
    lines += [f"  {phone}  {name}, centre {cid}" for phone, name, cid in VACCINATORS]
    return "\n".join(lines)
