"""The fixed world the USSD flow tests run in: one phone, its people, centres and seats.

Now is Thursday 2026-11-26 10:00 in Asia/Kolkata. Area 110001 has five centres:
101 PHC Connaught Place   today: 07:00-09:00 (over), 09:00-11:00, 11:00-13:00 (full),
                          14:00-16:00; tomorrow 09:00-11:00; in 7 days (outside the window)
102 Civil Hospital Dwarka in 2 days, dose 2 only (Covaxin)
103 Old Fort Dispensary   in 3 days, 45 and over only
104 Kalkaji Clinic        tomorrow, full
105 Lodhi Road Health Centre  in 4 days
Area 560001 has seven centres (206..212 "Centre 1".."Centre 7"), each with seats tomorrow.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, timedelta

from flows.base import Channel, Context, Inbound
from flows.domain import Appointment, Beneficiary, Centre, Citizen, Gender, Status
from flows.screens import SHAPES

from .catalog import NOW, TODAY, DictCatalog, session, slot

PHONE = "+919876543210"
NEW_REF = "4821390575"  # shown "48213 90575"
ASHA = Beneficiary(1, "Asha Kumari", 1990, Gender.FEMALE)
RAVI = Beneficiary(2, "Ravi Kumar", 1958, Gender.MALE, doses_done=1)  # next dose: 2, age 68
PAGE_SIZES = {"en": 5, "hi": 3, "ur": 3}


def day(n: int) -> date:
    return TODAY + timedelta(days=n)


CENTRES = [
    Centre("101", "PHC Connaught Place", "New Delhi", "110001"),
    Centre("102", "Civil Hospital Dwarka", "New Delhi", "110001"),
    Centre("103", "Old Fort Dispensary", "New Delhi", "110001"),
    Centre("104", "Kalkaji Clinic", "New Delhi", "110001"),
    Centre("105", "Lodhi Road Health Centre", "New Delhi", "110001"),
    *[Centre(str(205 + n), f"Centre {n}", "Bengaluru", "560001") for n in range(1, 8)],
]
SESSIONS = [
    session("101", day(0), slot("07:00-09:00"), slot("09:00-11:00"),
            slot("11:00-13:00", capacity=10, taken=10), slot("14:00-16:00")),
    session("101", day(1), slot("09:00-11:00")),
    session("101", day(7), slot("09:00-11:00")),
    session("102", day(2), slot("10:00-12:00"), vaccine="Covaxin", doses=(2,)),
    session("103", day(3), slot("10:00-12:00"), min_age=45),
    session("104", day(1), slot("10:00-12:00", capacity=5, taken=5)),
    session("105", day(4), slot("10:00-12:00")),
    *[session(str(205 + n), day(1), slot("10:00-12:00")) for n in range(1, 8)],
]
CATALOG = DictCatalog(CENTRES, SESSIONS)


def appointment(ref: str, person: Beneficiary, centre: Centre, n_day: int, slot_name: str,
                dose: int = 1, status: Status = Status.BOOKED) -> Appointment:
    return Appointment(ref, PHONE, person.beneficiary_id, person.name, person.birth_year,
                       centre.centre_id, centre.name, day(n_day), slot_name, "Covishield", dose,
                       status, session_id=f"{centre.centre_id}:{day(n_day)}:Covishield")


def make_ctx(lang: str = "en", people=(ASHA, RAVI), appointments=(), codes=None,
             **changes) -> Context:
    citizen = Citizen(PHONE, lang, tuple(people), tuple(appointments))
    ctx = Context(now=NOW, citizen=citizen, catalog=CATALOG, page_size=PAGE_SIZES,
                  new_ref=NEW_REF, codes=codes or {})
    return replace(ctx, **changes)


CTX = make_ctx()


def hop(text: str, event: str = "") -> Inbound:
    return Inbound(PHONE, text, Channel.USSD, session_id="ATUid_1", event=event)


def transcript(doc: str) -> list[tuple[str | None, str]]:
    """(input, expected screen) pairs from a module docstring's transcript; the first input
    is None (the session's first hop)."""
    steps: list[tuple[str | None, list[str]]] = []
    typed, screen = None, None
    for line in doc.splitlines():
        text = line.strip()
        if text.startswith("> "):
            typed, screen = text[2:], None
        elif text.startswith(("CON ", "END ")):
            screen = [text]
            steps.append((typed, screen))
        elif screen is not None and line.startswith(" " * 8):
            screen.append(text)
        else:
            screen = None
    return [(typed, "\n".join(lines)) for typed, lines in steps]


def shown(templates, outcome, state_before: dict | None) -> str:
    """The screen as the subscriber sees it, with its CON/END prefix."""
    lang = (outcome.state or state_before)["l"]
    return ("END " if outcome.reply.end else "CON ") + templates.screen(outcome.reply, lang)


_ANY = object()


@dataclass(frozen=True)
class Then:
    """What a hop should give; fields left at _ANY are not checked."""

    template: str
    state: object = _ANY  # the whole new state (None when the session ends)
    hint: str = ""
    items: object = _ANY
    page: int = 0
    params: object = _ANY  # a subset of the reply's params
    effects: tuple = ()
    end: bool = False


def conforms(reply) -> None:
    """The reply is a screen of flows.screens.SHAPES, with a hint that screen may show."""
    shape = SHAPES[reply.template]
    assert reply.hint in ("", *shape.hints), f"{reply.hint} on {reply.template}"
    assert (reply.nav, reply.end, bool(reply.items)) == (shape.nav, shape.end, shape.items)


def check(outcome, then: Then) -> None:
    reply = outcome.reply
    conforms(reply)
    assert (outcome.state is None) == reply.end
    assert json.loads(json.dumps(outcome.state)) == outcome.state  # what the shell stores
    assert (reply.template, reply.hint, reply.end) == (then.template, then.hint, then.end)
    assert reply.page == then.page
    assert outcome.effects == then.effects
    if then.state is not _ANY:
        assert outcome.state == then.state
    if then.items is not _ANY:
        assert list(reply.items) == list(then.items)
    if then.params is not _ANY:
        assert {k: reply.params.get(k) for k in then.params} == dict(then.params)
