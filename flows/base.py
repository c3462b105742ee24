"""What every flow speaks: inbound events, replies, effects, the context and the outcome."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Mapping, Protocol, Sequence

from .domain import Appointment, Centre, Citizen, Session, Vaccinator, Certificate


class Channel(StrEnum):
    USSD = "ussd"
    SMS = "sms"


@dataclass(frozen=True)
class Inbound:
    """One input: a USSD hop (the last answer only), an SMS text, or a shell event."""

    phone: str
    text: str
    channel: Channel
    session_id: str = ""
    event: str = ""  # set by the shell, e.g. "seat_lost" after a lost race for the last seat


@dataclass(frozen=True)
class T:
    """A translated text: a template id and its parameters, rendered by the shell."""

    template: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """A screen or SMS reply: template, numbered items (data or T), paging, and the end flag."""

    template: str
    params: Mapping[str, Any] = field(default_factory=dict)
    items: Sequence[str | T] = ()
    page: int = 0
    hint: str = ""  # template id of a one-line hint above the screen (a wrong choice)
    end: bool = False
    nav: bool = True  # show "0 Back 00 Main menu" (and "98 More" when paged)


# ---- effects: imperative descriptions the shell applies in one transaction ----


@dataclass(frozen=True)
class SendSms:
    to: str
    template: str
    params: Mapping[str, Any] = field(default_factory=dict)
    purpose: str = "reply"
    priority: str = "high"  # "high" or "low" (low waits out the quiet hours)
    lang: str = "en"
    code_of: str = ""  # ref whose security code is filled in as {code} at send time


@dataclass(frozen=True)
class SetLanguage:
    phone: str
    lang: str


@dataclass(frozen=True)
class SetReminders:
    phone: str
    on: bool


@dataclass(frozen=True)
class NewPerson:
    name: str
    birth_year: int
    gender: str


@dataclass(frozen=True)
class Book:
    """Take a seat atomically and create the appointment; the shell sends the slip SMS."""

    phone: str
    ref: str
    session_id: str
    slot: str
    dose: int
    channel: Channel
    lang: str
    beneficiary_id: int = 0  # existing person, or 0 with `person` set
    person: NewPerson | None = None


@dataclass(frozen=True)
class Cancel:
    ref: str
    actor: str
    channel: Channel


@dataclass(frozen=True)
class RecordVerification:
    ref: str
    vaccinator: str


@dataclass(frozen=True)
class RecordWrongCode:
    """Counts toward the appointment's 5 tries; `lock` when this was the last one."""

    ref: str
    vaccinator: str
    lock: bool = False


@dataclass(frozen=True)
class RecordFailedAttempt:
    """Counts toward the vaccinator's hourly limit of failed V commands."""

    vaccinator: str
    reason: str


@dataclass(frozen=True)
class RecordDose:
    ref: str
    vaccinator: str
    cert_id: str
    batch: str = ""


@dataclass(frozen=True)
class Dispute:
    ref: str
    phone: str


@dataclass(frozen=True)
class AlertOperator:
    kind: str  # "locked", "dispute", ...
    ref: str
    detail: str = ""


# ---- context: what the shell lends a step ----


class Catalog(Protocol):
    """Read-only lookups of centres and seats (a dict-backed one serves the flow tests)."""

    def centres_in_area(self, area_code: str) -> Sequence[Centre]: ...

    def centre(self, centre_id: str) -> Centre | None: ...

    def sessions(self, centre_ids: Sequence[str], days: Sequence[date]) -> Sequence[Session]: ...


@dataclass(frozen=True)
class Context:
    now: datetime  # aware, in the configured time zone
    citizen: Citizen
    catalog: Catalog | None = None
    languages: tuple[str, ...] = ("en", "hi", "ur")
    max_per_mobile: int = 4
    page_size: Mapping[str, int] = field(default_factory=lambda: {"en": 5})
    new_ref: str = ""  # a fresh, unused reference, in case this step books
    new_cert: str = ""  # a fresh certificate id, in case this step records a dose
    vaccinator: Vaccinator | None = None
    appointment: Appointment | None = None  # looked up by the shell from the command's ref
    certificate: Certificate | None = None
    code_matches: bool | None = None  # the shell's HMAC check of the code the command carried
    target_kind: str = ""  # how the shell read a V target: "ref", "mobile" or "invalid"
    codes: Mapping[str, str] = field(default_factory=dict)  # ref -> code, live appointments only
    today_counts: Mapping[str, int] = field(default_factory=dict)  # status -> count (TODAY)
    owner_lang: str = ""  # language of the number that booked ctx.appointment
    failed_attempts_last_hour: int = 0
    ussd_code: str = "*384*123#"
    keywords: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # lang -> aliases
    sms_this_hour: int = 0  # SMS received from this number in the current hour, this one too
    flood_limit: int = 30  # citizens' SMS an hour that get an answer (0: no limit)

    @property
    def today(self) -> date:
        return self.now.date()


@dataclass(frozen=True)
class Outcome:
    state: dict | None  # None: the conversation is over
    reply: Reply | None = None
    effects: tuple = ()
