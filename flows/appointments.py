"""Main menu 2, 3 and 4: My appointments, Send my code again, Cancel an appointment.

Two live appointments on the number, so they are numbered first:

    CON Teeka
        1 Book vaccination
        2 My appointments
        3 Send my code again by SMS
        4 Cancel an appointment
        5 Change language
    > 2
    CON Your appointments:
        1 A.K. 27 Nov PHC Connaught Place
        2 R.K. 28 Nov Civil Hospital Dwarka
        0 Back  00 Main menu
    > 2
    END R.K. dose 2 Covishield
        Civil Hospital Dwarka
        28 Nov 10:00-12:00
        Ref 27003 19457
        Code 0917

The network authenticates the SIM, so the code itself may be shown. With a single
appointment the list is skipped. Send my code ends with SendSms("sms/code_resend");
Cancel asks "1 Yes, cancel  2 No" and ends with Cancel(ref).
"""
from __future__ import annotations

from enum import StrEnum

from .base import Cancel, Channel, Context, Outcome, Reply, SendSms
from .domain import Appointment
from .ids import format_ref
from .menu import (BACK, HINT_INVALID, MAIN, VACCINE_WIDTH, Screen, centre_width, choice,
                   clamp_page, main_menu, page_size, short_initials, turn_page)
from .text import clip, day_label, initials

SCREENS = frozenset({Screen.NO_APPOINTMENTS, Screen.APPOINTMENTS, Screen.CANCEL})


class Task(StrEnum):
    """What the chosen appointment is for; stored in the state under "m"."""

    VIEW = "v"
    CODE = "k"
    CANCEL = "x"


_LIST_TEMPLATES = {Task.VIEW: "ussd/appointments", Task.CODE: "ussd/code_which",
                   Task.CANCEL: "ussd/cancel_which"}


def live(ctx: Context) -> list[Appointment]:
    """The number's live appointments in a stable order: by day, slot, then ref."""
    return sorted(ctx.citizen.live_appointments(), key=lambda a: (a.day, a.slot, a.ref))


def begin(ctx: Context, lang: str, task: Task) -> Outcome:
    """Straight to the appointment when there is one, a numbered list when there are more."""
    found = live(ctx)
    if not found:
        return Outcome({"s": Screen.NO_APPOINTMENTS, "l": lang}, Reply("ussd/no_appointments"))
    if len(found) == 1:
        return _act(found[0], task, ctx, lang)
    return show({"s": Screen.APPOINTMENTS, "l": lang, "m": task}, ctx)


def show(state: dict, ctx: Context, hint: str = "") -> Outcome:
    """The screen `state` stands on, worked out afresh from the live appointments."""
    screen, lang = Screen(state["s"]), state["l"]
    if screen is Screen.NO_APPOINTMENTS:
        return Outcome(state, Reply("ussd/no_appointments", hint=hint))
    if screen is Screen.CANCEL:
        found = _find(ctx, state["q"])
        if found is None:  # cancelled or used meanwhile
            return begin(ctx, lang, Task.CANCEL)
        return Outcome(state, Reply("ussd/cancel_confirm", _params(found, ctx, lang), hint=hint))
    found = live(ctx)
    if len(found) < 2:
        return begin(ctx, lang, Task(state["m"]))
    state = clamp_page(state, len(found), page_size(ctx, lang))
    reply = Reply(_LIST_TEMPLATES[Task(state["m"])], items=[_label(a) for a in found],
                  page=state.get("g", 0), hint=hint)
    return Outcome(state, reply)


def step(state: dict, text: str, ctx: Context) -> Outcome:
    """One answer on one of these screens (`text` trimmed, digits folded to ASCII)."""
    screen, lang = Screen(state["s"]), state["l"]
    if text == MAIN:
        return main_menu(lang)
    if screen is Screen.NO_APPOINTMENTS:
        return main_menu(lang) if text == BACK else show(state, ctx, HINT_INVALID)
    if screen is Screen.CANCEL:
        return _cancel_answer(state, text, ctx)
    found = live(ctx)
    turned = turn_page(state, text, len(found), page_size(ctx, lang))
    if turned is not None:
        return show(turned, ctx)
    if text == BACK:
        return main_menu(lang)
    number = choice(text, len(found))
    if number is None:
        return show(state, ctx, HINT_INVALID)
    return _act(found[number - 1], Task(state["m"]), ctx, lang)


def _act(appointment: Appointment, task: Task, ctx: Context, lang: str) -> Outcome:
    ref = format_ref(appointment.ref)
    if task is Task.CANCEL:
        return show({"s": Screen.CANCEL, "l": lang, "q": appointment.ref}, ctx)
    if task is Task.CODE:
        sms = SendSms(to=ctx.citizen.phone, template="sms/code_resend", params={"ref": ref},
                      purpose="code", lang=lang, code_of=appointment.ref)
        return Outcome(None, Reply("ussd/code_sent", {"ref": ref}, end=True, nav=False), (sms,))
    # The network authenticates the SIM, so the code itself may be shown here (DESIGN 4.2).
    params = {**_params(appointment, ctx, lang), "code": ctx.codes.get(appointment.ref, "")}
    return Outcome(None, Reply("ussd/appointment", params, end=True, nav=False))


def _cancel_answer(state: dict, text: str, ctx: Context) -> Outcome:
    lang = state["l"]
    found = _find(ctx, state["q"])
    if found is None:
        return begin(ctx, lang, Task.CANCEL)
    if text == "1":
        effect = Cancel(ref=found.ref, actor=ctx.citizen.phone, channel=Channel.USSD)
        reply = Reply("ussd/cancelled", {"ref": format_ref(found.ref)}, end=True, nav=False)
        return Outcome(None, reply, (effect,))
    if text == "2":
        return main_menu(lang)
    if text == BACK:
        if len(live(ctx)) > 1:
            return show({"s": Screen.APPOINTMENTS, "l": lang, "m": Task.CANCEL}, ctx)
        return main_menu(lang)
    return show(state, ctx, HINT_INVALID)


def _find(ctx: Context, ref: str) -> Appointment | None:
    return next((a for a in live(ctx) if a.ref == ref), None)


def _label(a: Appointment) -> str:
    return f"{initials(a.name)} {day_label(a.day)} {a.centre_name}"


def _params(a: Appointment, ctx: Context, lang: str) -> dict:
    return {"initials": short_initials(a.name), "day": day_label(a.day), "slot": a.slot,
            "centre": clip(a.centre_name, centre_width(ctx, lang)), "ref": format_ref(a.ref),
            "dose": a.dose, "vaccine": clip(a.vaccine, VACCINE_WIDTH)}
