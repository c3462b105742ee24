"""Domain records as plain, immutable data: what the flows decide on."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum


class Status(StrEnum):
    BOOKED = "booked"
    VERIFIED = "verified"
    VACCINATED = "vaccinated"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    LOCKED = "locked"
    DISPUTED = "disputed"


LIVE_STATUSES = frozenset({Status.BOOKED, Status.VERIFIED})


class Gender(StrEnum):
    FEMALE = "f"
    MALE = "m"
    OTHER = "o"


@dataclass(frozen=True)
class Centre:
    centre_id: str
    name: str
    district: str = ""
    area_code: str = ""
    address: str = ""


@dataclass(frozen=True)
class Slot:
    name: str  # "09:00-11:00"
    capacity: int
    taken: int = 0

    @property
    def free(self) -> int:
        return max(self.capacity - self.taken, 0)

    @property
    def ends(self) -> str:
        """End time "HH:MM" of the slot."""
        return self.name.rpartition("-")[2]


@dataclass(frozen=True)
class Session:
    session_id: str  # "<centre_id>:<YYYY-MM-DD>:<vaccine>"
    centre_id: str
    day: date
    vaccine: str
    min_age: int
    doses: frozenset[int]
    slots: tuple[Slot, ...] = ()


@dataclass(frozen=True)
class Beneficiary:
    beneficiary_id: int  # 1-based position under the mobile number
    name: str
    birth_year: int
    gender: Gender
    doses_done: int = 0

    @property
    def next_dose(self) -> int:
        return 1 if self.doses_done == 0 else 2


@dataclass(frozen=True)
class Appointment:
    ref: str  # 10 digits, no spaces
    phone: str
    beneficiary_id: int
    name: str
    birth_year: int
    centre_id: str
    centre_name: str
    day: date
    slot: str
    vaccine: str
    dose: int
    status: Status
    session_id: str = ""
    wrong_tries: int = 0
    verified_by: str = ""
    cert_id: str = ""

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


@dataclass(frozen=True)
class Vaccinator:
    phone: str
    name: str
    centre_id: str
    active: bool = True


@dataclass(frozen=True)
class Certificate:
    cert_id: str
    ref: str
    name: str
    vaccine: str
    dose: int
    day: date
    centre_id: str
    centre_name: str
    vaccinator: str
    frozen: bool = False


@dataclass(frozen=True)
class Citizen:
    """Everything stored under one mobile number."""

    phone: str
    lang: str = ""
    beneficiaries: tuple[Beneficiary, ...] = ()
    appointments: tuple[Appointment, ...] = field(default=())  # live ones
    reminders: bool = True

    def live_appointments(self) -> tuple[Appointment, ...]:
        return tuple(a for a in self.appointments if a.live)
