"""A dict-backed Catalog for the flow tests, and a few builders of domain records."""
from __future__ import annotations

from datetime import date, datetime
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

from flows.domain import Centre, Session, Slot

KOLKATA = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=KOLKATA)  # a Thursday, mid-morning
TODAY = NOW.date()


class DictCatalog:
    """Centres and sessions held in memory, answering the flows' Catalog protocol."""

    def __init__(self, centres: Iterable[Centre] = (), sessions: Iterable[Session] = ()):
        self._centres = {c.centre_id: c for c in centres}
        self._sessions = list(sessions)

    def centres_in_area(self, area_code: str) -> Sequence[Centre]:
        return [c for c in self._centres.values() if c.area_code == area_code]

    def centre(self, centre_id: str) -> Centre | None:
        return self._centres.get(centre_id)

    def sessions(self, centre_ids: Sequence[str], days: Sequence[date]) -> Sequence[Session]:
        return [s for s in self._sessions if s.centre_id in centre_ids and s.day in days]


def session(centre_id: str, day: date, *slots: Slot, vaccine: str = "Covishield",
            min_age: int = 18, doses: Iterable[int] = (1, 2)) -> Session:
    return Session(f"{centre_id}:{day.isoformat()}:{vaccine}", centre_id, day, vaccine, min_age,
                   frozenset(doses), tuple(slots))


def slot(name: str, capacity: int = 10, taken: int = 0) -> Slot:
    return Slot(name, capacity, taken)
