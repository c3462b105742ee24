"""Which seats a person can book: sessions that serve their dose and age, with free slots
in the next 7 days (today included), slots already over today left out."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Sequence

from .base import Catalog
from .domain import Centre, Session, Slot

WINDOW_DAYS = 7


def window(today: date) -> tuple[date, ...]:
    return tuple(today + timedelta(days=n) for n in range(WINDOW_DAYS))


def serves(session: Session, dose: int, birth_year: int, today: date) -> bool:
    """The session gives this dose and the person is old enough (age by birth year)."""
    return dose in session.doses and session.min_age <= today.year - birth_year


def open_slots(session: Session, now: datetime) -> tuple[Slot, ...]:
    """Slots with a free seat, except those that have already ended today."""
    return _open(session, now.date(), now.strftime("%H:%M"))


def _open(session: Session, today: date, clock: str) -> tuple[Slot, ...]:
    if session.day < today:
        return ()
    # zero-padded "HH:MM" compares as text
    return tuple(s for s in session.slots
                 if s.free > 0 and (session.day > today or s.ends > clock))


def offers(catalog: Catalog | None, centre_ids: Sequence[str], now: datetime, dose: int,
           birth_year: int, days: Sequence[date] | None = None) -> list[tuple[Session, Slot]]:
    """Every bookable (session, slot) at these centres on these days (default: the window)."""
    if catalog is None or not centre_ids:
        return []
    today, clock = now.date(), now.strftime("%H:%M")  # once, not once per session
    days = tuple(days) if days is not None else window(today)
    found = []
    for session in catalog.sessions(tuple(centre_ids), days):
        if session.day in days and serves(session, dose, birth_year, today):
            found.extend((session, slot) for slot in _open(session, today, clock))
    return found


def centres(catalog: Catalog | None, area: str, now: datetime, dose: int,
            birth_year: int) -> list[Centre]:
    """Centres of the area with a bookable seat in the window, in the catalogue's order."""
    if catalog is None:
        return []
    listed = catalog.centres_in_area(area)
    if not listed:
        return []
    today, clock = now.date(), now.strftime("%H:%M")
    days = window(today)
    open_ids: set[str] = set()
    for session in catalog.sessions(tuple(c.centre_id for c in listed), days):
        if (session.centre_id not in open_ids and session.day in days
                and serves(session, dose, birth_year, today)
                and _open(session, today, clock)):
            open_ids.add(session.centre_id)
    return [c for c in listed if c.centre_id in open_ids]


def dates(catalog: Catalog | None, centre_id: str, now: datetime, dose: int,
          birth_year: int) -> list[date]:
    return sorted({s.day for s, _ in offers(catalog, [centre_id], now, dose, birth_year)})


def slots(catalog: Catalog | None, centre_id: str, day: date, now: datetime, dose: int,
          birth_year: int) -> list[tuple[Session, Slot]]:
    """Bookable slots of one centre on one day, by start time then vaccine."""
    found = offers(catalog, [centre_id], now, dose, birth_year, days=[day])
    return sorted(found, key=lambda pair: (pair[1].name, pair[0].vaccine))
