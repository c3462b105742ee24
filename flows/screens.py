"""The shape of every USSD screen: which hints can top it, whether it lists items, whether it
shows navigation. Template budget checks render each screen at its worst from this table."""
from __future__ import annotations

from dataclasses import dataclass

from .booking import (HINT_AREA, HINT_FULL, HINT_FULLY_VACCINATED, HINT_HAS_APPOINTMENT,
                      HINT_NAME, HINT_PEOPLE_LIMIT, HINT_SLOT_FILLED, HINT_YEAR)
from .menu import HINT_INVALID


@dataclass(frozen=True)
class Shape:
    hints: tuple[str, ...] = ()  # hint templates that can appear above the screen
    items: bool = False  # numbered, paged data items (centres, people, dates, ...)
    nav: bool = True  # "0 Back  00 Main menu"
    end: bool = False  # the session ends here (END)


_ONLY_INVALID = (HINT_INVALID,)

SHAPES = {
    "ussd/welcome": Shape(_ONLY_INVALID, items=True, nav=False),
    "ussd/language": Shape(_ONLY_INVALID, items=True),
    "ussd/main_menu": Shape(_ONLY_INVALID, nav=False),
    "ussd/resume": Shape(_ONLY_INVALID, nav=False),
    "ussd/person": Shape((HINT_INVALID, HINT_HAS_APPOINTMENT, HINT_FULLY_VACCINATED,
                          HINT_PEOPLE_LIMIT), items=True),
    "ussd/name": Shape((HINT_NAME, HINT_INVALID)),
    "ussd/birth_year": Shape((HINT_YEAR,)),
    "ussd/gender": Shape(_ONLY_INVALID),
    "ussd/area": Shape((HINT_AREA,)),
    "ussd/no_centres": Shape(),
    "ussd/centres": Shape((HINT_INVALID, HINT_FULL), items=True),
    "ussd/dates": Shape((HINT_INVALID, HINT_FULL), items=True),
    "ussd/slots": Shape((HINT_INVALID, HINT_SLOT_FILLED, HINT_FULL), items=True),
    "ussd/confirm": Shape(_ONLY_INVALID),
    "ussd/booked": Shape(nav=False, end=True),
    "ussd/no_appointments": Shape(_ONLY_INVALID),
    "ussd/appointments": Shape(_ONLY_INVALID, items=True),
    "ussd/code_which": Shape(_ONLY_INVALID, items=True),
    "ussd/cancel_which": Shape(_ONLY_INVALID, items=True),
    "ussd/appointment": Shape(nav=False, end=True),
    "ussd/code_sent": Shape(nav=False, end=True),
    "ussd/cancel_confirm": Shape(_ONLY_INVALID),
    "ussd/cancelled": Shape(nav=False, end=True),
}

# Templates used as item labels inside a list, not as screens of their own.
ITEM_TEMPLATES = ("ussd/add_person",)
