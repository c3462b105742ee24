"""The booking branch of the USSD menu: who, where, centre, date, slot, confirm.

Asha Kumari and Ravi Kumar are registered on the number; it is 10:00 on Thursday 26 Nov.
The 07:00-09:00 slot is over and 11:00-13:00 is full, so neither is offered:

    CON Teeka
        1 Book vaccination
        2 My appointments
        3 Send my code again by SMS
        4 Cancel an appointment
        5 Change language
    > 1
    CON Book for whom?
        1 Asha Kumari
        2 Ravi Kumar
        3 Add a person
        0 Back  00 Main menu
    > 1
    CON Enter your PIN/area code:
        0 Back  00 Main menu
    > 110001
    CON Choose a centre:
        1 PHC Connaught Place
        2 Lodhi Road Health Centre
        0 Back  00 Main menu
    > 1
    CON PHC Connaught Place
        Choose a date:
        1 26 Nov
        2 27 Nov
        0 Back  00 Main menu
    > 1
    CON Choose a time on 26 Nov:
        1 09:00-11:00
        2 14:00-16:00
        0 Back  00 Main menu
    > 2
    CON A.K. dose 1 Covishield
        PHC Connaught Place
        26 Nov 14:00-16:00
        1 Confirm
        2 Cancel
        0 Back  00 Main menu
    > 1
    END Booked. Ref 48213 90575
        Your security code comes by SMS. Show it at the centre.

The last hop returns Book(...) for the shell to apply; the code comes by SMS from there.
Lists are worked out afresh from `ctx.catalog` on every hop, so a slot that filled up
meanwhile is no longer offered.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from . import availability, people
from .base import Book, Channel, Context, NewPerson, Outcome, Reply, T
from .domain import Beneficiary, Gender, Session, Slot
from .ids import format_ref
from .menu import (BACK, HINT_INVALID, MAIN, VACCINE_WIDTH, Screen, centre_width, choice,
                   clamp_page, main_menu, page_size, short_initials, turn_page)
from .text import clip, day_label

SCREENS = frozenset({Screen.PERSON, Screen.NAME, Screen.YEAR, Screen.GENDER, Screen.AREA,
                     Screen.CENTRES, Screen.DATES, Screen.SLOTS, Screen.CONFIRM})

HINT_NAME = "ussd/hint_name"
HINT_YEAR = "ussd/hint_year"
HINT_AREA = "ussd/hint_area"
HINT_HAS_APPOINTMENT = "ussd/hint_has_appointment"
HINT_FULLY_VACCINATED = "ussd/hint_fully_vaccinated"
HINT_SLOT_FILLED = "ussd/hint_slot_filled"
HINT_FULL = "ussd/hint_full"
HINT_PEOPLE_LIMIT = "ussd/hint_people_limit"  # the number already has its most people
_REFUSAL_HINTS = {people.HAS_APPOINTMENT: HINT_HAS_APPOINTMENT,
                  people.FULLY_VACCINATED: HINT_FULLY_VACCINATED}

TEMPLATES = {
    Screen.PERSON: "ussd/person", Screen.NAME: "ussd/name", Screen.YEAR: "ussd/birth_year",
    Screen.GENDER: "ussd/gender", Screen.AREA: "ussd/area", Screen.CENTRES: "ussd/centres",
    Screen.DATES: "ussd/dates", Screen.SLOTS: "ussd/slots", Screen.CONFIRM: "ussd/confirm",
}
GENDERS = {"1": Gender.FEMALE, "2": Gender.MALE, "3": Gender.OTHER}
ADD_PERSON = 0  # value of the "Add a person" item (beneficiary ids start at 1)
AREA_LENGTH = (3, 10)

# State keys: l language, b beneficiary id, n/y/x new person's name, birth year, gender,
# a area code, c centre id, d date, e session id, t slot, g page of a list.
# A screen keeps exactly the choices made on the screens before it, so Back and resume
# both land on a consistent state.
_WHO = ("l", "b", "n", "y", "x")
_KEEP = {
    Screen.PERSON: ("l",),
    Screen.NAME: ("l",),
    Screen.YEAR: ("l", "n"),
    Screen.GENDER: ("l", "n", "y"),
    Screen.AREA: _WHO,
    Screen.CENTRES: (*_WHO, "a"),
    Screen.DATES: (*_WHO, "a", "c"),
    Screen.SLOTS: (*_WHO, "a", "c", "d"),
    Screen.CONFIRM: (*_WHO, "a", "c", "d", "e", "t"),
}


@dataclass(frozen=True)
class Who:
    """The person being booked: someone on the number (id > 0) or a new person."""

    name: str
    birth_year: int
    dose: int
    beneficiary_id: int = 0


# ---- public ----


def begin(ctx: Context, lang: str) -> Outcome:
    """Main menu 1: choose the person (or, with nobody registered yet, type a name)."""
    return show({"s": Screen.PERSON, "l": lang}, ctx)


def step(state: dict, text: str, ctx: Context) -> Outcome:
    """One answer on a booking screen (`text` already trimmed, digits folded to ASCII)."""
    screen, lang = Screen(state["s"]), state["l"]
    if text == MAIN:
        return main_menu(lang)
    if screen in _LISTS:
        options = _LISTS[screen](state, ctx, who(state, ctx))
        turned = turn_page(state, text, len(options), page_size(ctx, lang))
        if turned is not None:
            return show(turned, ctx)
        if text == BACK:
            return _back(state, ctx)
        number = choice(text, len(options))
        if number is None:
            return show(state, ctx, _limit_hint(screen, text, ctx) or HINT_INVALID)
        return _PICKED[screen](state, options[number - 1][0], ctx)
    if text == BACK:
        return _back(state, ctx)
    return _ANSWERED[screen](state, text, ctx)


def _limit_hint(screen: Screen, text: str, ctx: Context) -> str:
    """Typing the hidden "Add a person" number at the limit says why, not just "invalid"."""
    at_limit = len(ctx.citizen.beneficiaries) >= ctx.max_per_mobile
    if screen is Screen.PERSON and at_limit and text == str(len(ctx.citizen.beneficiaries) + 1):
        return HINT_PEOPLE_LIMIT
    return ""


def seat_lost(state: dict | None, ctx: Context) -> Outcome:
    """The slot filled while confirming (the shell's Book lost the race): slots again."""
    if not state or state.get("s") not in SCREENS or "d" not in state:
        return main_menu((state or {}).get("l") or ctx.citizen.lang or ctx.languages[0])
    return show(_at(state, Screen.SLOTS), ctx, HINT_SLOT_FILLED)


def show(state: dict, ctx: Context, hint: str = "") -> Outcome:
    """The screen `state` stands on, worked out afresh; an emptied list falls back a step."""
    screen = Screen(state["s"])
    person = who(state, ctx)
    if screen in _NEEDS_WHO and person is None:
        return show(_at(state, Screen.PERSON), ctx, HINT_INVALID)
    if screen is Screen.CONFIRM:
        return _confirm_screen(state, ctx, person, hint)
    if screen not in _LISTS:
        return Outcome(state, Reply(TEMPLATES[screen], hint=hint))
    options = _LISTS[screen](state, ctx, person)
    if not options:
        return _EMPTY[screen](state, ctx, hint)
    state = clamp_page(state, len(options), page_size(ctx, state["l"]))
    return Outcome(state, Reply(TEMPLATES[screen], _params(state, ctx),
                                items=[label for _, label in options],
                                page=state.get("g", 0), hint=hint))


def who(state: dict, ctx: Context) -> Who | None:
    """The person chosen or entered so far, or None."""
    if "b" in state:
        person = _beneficiary(ctx, state["b"])
        if person is None:
            return None
        return Who(person.name, person.birth_year, person.next_dose, person.beneficiary_id)
    if "n" in state and "y" in state:
        return Who(state["n"], state["y"], 1)
    return None


def parse_area(text: str) -> str | None:
    """A PIN/area code: 3-10 digits (spaces and dashes inside are ignored)."""
    code = text.replace(" ", "").replace("-", "")
    ok = code.isascii() and code.isdigit() and AREA_LENGTH[0] <= len(code) <= AREA_LENGTH[1]
    return code if ok else None


def blocked(ctx: Context, person: Beneficiary) -> str:
    """The hint that stops this person booking now, or ""."""
    return _REFUSAL_HINTS.get(people.refusal(ctx.citizen, person), "")


# ---- the lists ----


def _people(state: dict, ctx: Context, person: Who | None) -> list:
    registered = ctx.citizen.beneficiaries
    if not registered:  # nobody to choose: the screen is skipped for "full name"
        return []
    options = [(p.beneficiary_id, p.name) for p in registered]
    if len(registered) < ctx.max_per_mobile:
        options.append((ADD_PERSON, T("ussd/add_person")))
    return options


def _centres(state: dict, ctx: Context, person: Who | None) -> list:
    if person is None:
        return []
    found = availability.centres(ctx.catalog, state["a"], ctx.now, person.dose,
                                 person.birth_year)
    return [(c.centre_id, c.name) for c in found]


def _dates(state: dict, ctx: Context, person: Who | None) -> list:
    if person is None:
        return []
    found = availability.dates(ctx.catalog, state["c"], ctx.now, person.dose,
                               person.birth_year)
    return [(d.isoformat(), day_label(d)) for d in found]


def _slots(state: dict, ctx: Context, person: Who | None) -> list:
    found = _open_slots(state, ctx, person)
    # Name the vaccine only when the day offers more than one.
    several = len({session.vaccine for session, _ in found}) > 1
    return [((session.session_id, slot.name),
             f"{slot.name} {session.vaccine}" if several else slot.name)
            for session, slot in found]


def _open_slots(state: dict, ctx: Context, person: Who | None) -> list[tuple[Session, Slot]]:
    if person is None:
        return []
    return availability.slots(ctx.catalog, state["c"], date.fromisoformat(state["d"]),
                              ctx.now, person.dose, person.birth_year)


_LISTS = {Screen.PERSON: _people, Screen.CENTRES: _centres, Screen.DATES: _dates,
          Screen.SLOTS: _slots}
_NEEDS_WHO = frozenset({Screen.AREA, Screen.CENTRES, Screen.DATES, Screen.SLOTS,
                        Screen.CONFIRM})


# ---- choices and answers ----


def _picked_person(state: dict, value: int, ctx: Context) -> Outcome:
    if value == ADD_PERSON:
        return show(_at(state, Screen.NAME), ctx)
    hint = blocked(ctx, _beneficiary(ctx, value))
    if hint:
        return show(state, ctx, hint)
    return show(_at(state, Screen.AREA, b=value), ctx)


def _picked_centre(state: dict, value: str, ctx: Context) -> Outcome:
    return show(_at(state, Screen.DATES, c=value), ctx)


def _picked_date(state: dict, value: str, ctx: Context) -> Outcome:
    return show(_at(state, Screen.SLOTS, d=value), ctx)


def _picked_slot(state: dict, value: tuple[str, str], ctx: Context) -> Outcome:
    session_id, slot = value
    return show(_at(state, Screen.CONFIRM, e=session_id, t=slot), ctx)


def _answered_name(state: dict, text: str, ctx: Context) -> Outcome:
    name = people.parse_name(text)
    if name is None:
        return show(state, ctx, HINT_NAME)
    return show(_at(state, Screen.YEAR, n=name), ctx)


def _answered_year(state: dict, text: str, ctx: Context) -> Outcome:
    year = people.parse_birth_year(text, ctx.today)
    if year is None:
        return show(state, ctx, HINT_YEAR)
    return show(_at(state, Screen.GENDER, y=year), ctx)


def _answered_gender(state: dict, text: str, ctx: Context) -> Outcome:
    if text not in GENDERS:
        return show(state, ctx, HINT_INVALID)
    return show(_at(state, Screen.AREA, x=str(GENDERS[text])), ctx)


def _answered_area(state: dict, text: str, ctx: Context) -> Outcome:
    area = parse_area(text)
    if area is None:
        return show(state, ctx, HINT_AREA)
    return show(_at(state, Screen.CENTRES, a=area), ctx)


def _answered_confirm(state: dict, text: str, ctx: Context) -> Outcome:
    if text == "2":
        return main_menu(state["l"])
    if text != "1":
        return show(state, ctx, HINT_INVALID)
    return _book(state, ctx)


_PICKED = {Screen.PERSON: _picked_person, Screen.CENTRES: _picked_centre,
           Screen.DATES: _picked_date, Screen.SLOTS: _picked_slot}
_ANSWERED = {Screen.NAME: _answered_name, Screen.YEAR: _answered_year,
             Screen.GENDER: _answered_gender, Screen.AREA: _answered_area,
             Screen.CONFIRM: _answered_confirm}


# ---- confirm and book ----


def _confirm_screen(state: dict, ctx: Context, person: Who, hint: str) -> Outcome:
    picked = _chosen_slot(state, ctx, person)
    if picked is None:
        return show(_at(state, Screen.SLOTS), ctx, HINT_SLOT_FILLED)
    session, slot = picked
    params = {**_params(state, ctx), "initials": short_initials(person.name), "slot": slot.name,
              "dose": person.dose, "vaccine": clip(session.vaccine, VACCINE_WIDTH)}
    return Outcome(state, Reply(TEMPLATES[Screen.CONFIRM], params, hint=hint))


def _book(state: dict, ctx: Context) -> Outcome:
    person = who(state, ctx)
    if person is None:
        return show(_at(state, Screen.PERSON), ctx, HINT_INVALID)
    if person.beneficiary_id:
        hint = blocked(ctx, _beneficiary(ctx, person.beneficiary_id))
        if hint:  # booked meanwhile, e.g. by SMS
            return show(_at(state, Screen.PERSON), ctx, hint)
    if _chosen_slot(state, ctx, person) is None:
        return show(_at(state, Screen.SLOTS), ctx, HINT_SLOT_FILLED)
    if not person.beneficiary_id and len(ctx.citizen.beneficiaries) >= ctx.max_per_mobile:
        # someone was added on another handset meanwhile: the number is at its limit now
        return show({"s": Screen.PERSON, "l": state["l"]}, ctx, HINT_PEOPLE_LIMIT)
    newcomer = None if person.beneficiary_id else NewPerson(state["n"], state["y"], state["x"])
    effect = Book(phone=ctx.citizen.phone, ref=ctx.new_ref, session_id=state["e"],
                  slot=state["t"], dose=person.dose, channel=Channel.USSD, lang=state["l"],
                  beneficiary_id=person.beneficiary_id, person=newcomer)
    reply = Reply("ussd/booked", {"ref": format_ref(ctx.new_ref)}, end=True, nav=False)
    return Outcome(None, reply, (effect,))


def _chosen_slot(state: dict, ctx: Context, person: Who) -> tuple[Session, Slot] | None:
    for session, slot in _open_slots(state, ctx, person):
        if session.session_id == state["e"] and slot.name == state["t"]:
            return session, slot
    return None


# ---- moving about ----


def _at(state: dict, screen: Screen, **chosen) -> dict:
    """The state of `screen`, keeping the choices made before it."""
    kept = {k: state[k] for k in _KEEP[screen] if k in state}
    return {"s": screen, **kept, **chosen}


def _back(state: dict, ctx: Context) -> Outcome:
    screen = Screen(state["s"])
    previous = {
        Screen.NAME: Screen.PERSON if ctx.citizen.beneficiaries else None,
        Screen.YEAR: Screen.NAME,
        Screen.GENDER: Screen.YEAR,
        Screen.AREA: Screen.GENDER if "n" in state else Screen.PERSON,
        Screen.CENTRES: Screen.AREA,
        Screen.DATES: Screen.CENTRES,
        Screen.SLOTS: Screen.DATES,
        Screen.CONFIRM: Screen.SLOTS,
    }.get(screen)
    if previous is None:  # the first screen of the branch
        return main_menu(state["l"])
    return show(_at(state, previous), ctx)


def _no_people(state: dict, ctx: Context, hint: str) -> Outcome:
    return show(_at(state, Screen.NAME), ctx, hint)


def _no_centres(state: dict, ctx: Context, hint: str) -> Outcome:
    return Outcome(_at(state, Screen.AREA), Reply("ussd/no_centres"))


def _no_dates(state: dict, ctx: Context, hint: str) -> Outcome:
    return show(_at(state, Screen.CENTRES), ctx, HINT_FULL)


def _no_slots(state: dict, ctx: Context, hint: str) -> Outcome:
    return show(_at(state, Screen.DATES), ctx, HINT_FULL)


_EMPTY = {Screen.PERSON: _no_people, Screen.CENTRES: _no_centres, Screen.DATES: _no_dates,
          Screen.SLOTS: _no_slots}


def _params(state: dict, ctx: Context) -> dict:
    """Screen parameters from the choices so far: the centre's name and the day."""
    params = {}
    if "c" in state:
        centre = ctx.catalog.centre(state["c"]) if ctx.catalog else None
        name = centre.name if centre else state["c"]
        params["centre"] = clip(name, centre_width(ctx, state["l"]))
    if "d" in state:
        params["day"] = day_label(date.fromisoformat(state["d"]))
    return params


def _beneficiary(ctx: Context, beneficiary_id: int) -> Beneficiary | None:
    return next((p for p in ctx.citizen.beneficiaries if p.beneficiary_id == beneficiary_id),
                None)
