"""The USSD menu: language on first dial, main menu, resume offer, change language.

A first dial from a number with no language saved, then a change of mind:

    CON Teeka vaccination. Choose language:
        1 English
        2 हिन्दी
        3 اردو
    > 2
    CON 1 टीका बुक करें
        2 मेरी बुकिंग
        3 कोड भेजें
        4 बुकिंग रद्द
        5 भाषा बदलें
    > 5
    CON भाषा चुनें:
        1 English
        2 हिन्दी
        3 اردو
        0 वापस  00 मेनू
    > 1
    CON Teeka
        1 Book vaccination
        2 My appointments
        3 Send my code again by SMS
        4 Cancel an appointment
        5 Change language

Each language choice returns SetLanguage. The branches live in booking.py and
appointments.py; screens shared by all are in menu.py.
"""
from __future__ import annotations

from . import appointments, booking
from .appointments import Task
from .base import Context, Inbound, Outcome, Reply, SetLanguage
from .menu import (BACK, HINT_INVALID, MAIN, Screen, choice, clamp_page, keyed, main_menu,
                   page_size, turn_page)
from .text import language_name

SEAT_LOST = "seat_lost"  # Inbound.event after the shell's Book lost the race for a seat

_TASKS = {"2": Task.VIEW, "3": Task.CODE, "4": Task.CANCEL}  # main menu numbers


def start(ctx: Context, resume: dict | None = None) -> Outcome:
    """The first hop of a session: language (first dial), resume offer, or main menu.

    `resume` is a state the shell saved when an earlier session dropped inside the booking
    branch (see `resumable`), offered while it is less than 10 minutes old.
    """
    if not ctx.citizen.lang:
        return _languages({"s": Screen.LANGUAGE, "l": ctx.languages[0], "f": 1}, ctx)
    lang = ctx.citizen.lang
    if resume and resumable(resume):
        saved = resume["r"] if resume["s"] == Screen.RESUME else resume
        return Outcome({"s": Screen.RESUME, "l": lang, "r": saved},
                       Reply("ussd/resume", nav=False))
    return main_menu(lang)


def step(state: dict, inbound: Inbound, ctx: Context) -> Outcome:
    """Every later hop: `inbound.text` is the last answer only.

    The reply is in the language `outcome.state["l"]`, or, when the outcome's state is None
    (the session ends), in the language of the state passed in.
    """
    if inbound.event == SEAT_LOST:
        return booking.seat_lost(state, ctx)
    state = state or {}
    text = keyed(inbound.text)
    lang = state.get("l") or ctx.citizen.lang or ctx.languages[0]
    try:
        screen = Screen(state.get("s"))
    except ValueError:
        return main_menu(lang)
    if screen in booking.SCREENS:
        return booking.step(state, text, ctx)
    if screen in appointments.SCREENS:
        return appointments.step(state, text, ctx)
    if screen is Screen.LANGUAGE:
        return _language_answer(state, text, ctx)
    if screen is Screen.RESUME:
        return _resume_answer(state, text, ctx)
    return _menu_answer(lang, text, ctx)


def resumable(state: dict | None) -> bool:
    """True inside the booking branch before the booking is made (worth saving on a drop)."""
    return bool(state) and state.get("s") in (*booking.SCREENS, Screen.RESUME)


def _menu_answer(lang: str, text: str, ctx: Context) -> Outcome:
    if text == "1":
        return booking.begin(ctx, lang)
    if text in _TASKS:
        return appointments.begin(ctx, lang, _TASKS[text])
    if text == "5":
        return _languages({"s": Screen.LANGUAGE, "l": lang}, ctx)
    return main_menu(lang, "" if text == MAIN else HINT_INVALID)


def _languages(state: dict, ctx: Context, hint: str = "") -> Outcome:
    """The configured languages, each named in its own script."""
    first = "f" in state
    state = clamp_page(state, len(ctx.languages), page_size(ctx, state["l"]))
    reply = Reply("ussd/welcome" if first else "ussd/language",
                  items=[language_name(code) for code in ctx.languages],
                  page=state.get("g", 0), hint=hint, nav=not first)
    return Outcome(state, reply)


def _language_answer(state: dict, text: str, ctx: Context) -> Outcome:
    turned = turn_page(state, text, len(ctx.languages), page_size(ctx, state["l"]))
    if turned is not None:
        return _languages(turned, ctx)
    if "f" not in state and text in (BACK, MAIN):
        return main_menu(state["l"])
    number = choice(text, len(ctx.languages))
    if number is None:
        return _languages(state, ctx, HINT_INVALID)
    lang = ctx.languages[number - 1]
    menu = main_menu(lang)
    return Outcome(menu.state, menu.reply, (SetLanguage(ctx.citizen.phone, lang),))


def _resume_answer(state: dict, text: str, ctx: Context) -> Outcome:
    lang = state["l"]
    if text == "1":
        return booking.show({**state["r"], "l": lang}, ctx)
    if text in ("2", MAIN):
        return main_menu(lang)
    return Outcome(state, Reply("ussd/resume", hint=HINT_INVALID, nav=False))
