"""The citizen's SMS conversation: BOOK by numbered replies, and the one-message commands.

Asha Kumari and Ravi Kumar are registered on the number; it is 10:00 on Thursday 26 Nov:

    > BOOK 110001
    < Book for whom? Reply with a number (0 stops):
      1 Asha Kumari
      2 Ravi Kumar
      3 Add a person
    > 1
    < Choose a centre (0 back):
      1 PHC Connaught Place
      2 Lodhi Road Health Centre
    > 1
    < PHC Connaught Place
      Choose a date (0 back):
      1 26 Nov
      2 27 Nov
    > 1
    < Choose a time on 26 Nov (0 back):
      1 09:00-11:00
      2 14:00-16:00
    > 2
    < A.K. dose 1 Covishield
      PHC Connaught Place
      26 Nov 14:00-16:00
      Reply 1 to book, 2 to stop, 0 back.
    > 1
    < (the appointment slip with Ref and Code: the shell sends it for the Book effect)
    > STOP
    < Reminders stopped. Your codes and vaccination SMS still come. SMS START to restart.

The booking steps are the USSD menu's (flows/booking.py) shown as SMS: the same lists and
rules and the same Book effect, worked out afresh from `ctx.catalog` on every reply. An area
code sent with BOOK answers the area step once it comes. The shell keeps the state of an
open conversation for 30 minutes; a keyword ends it and runs as a command, except on the
name step, where "Tika Ram" is a name.

Replies are in the language of the conversation, else the number's saved one, else that
of the keyword typed; a Hindi or Urdu keyword for BOOK books in that language. A number
that sends more than `ctx.flood_limit` SMS an hour gets one warning, then no answer, so
two auto-responders cannot keep each other busy; registered vaccinators are exempt.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from . import appointments, booking, verify
from .base import Book, Cancel, Channel, Context, Inbound, Outcome, Reply, SendSms, SetLanguage
from .base import SetReminders, T
from .commands import Command, looks_like_ussd, parse
from .domain import Appointment, Status
from .ids import format_cert, format_ref, parse_ref
from .menu import Screen, choice, clamp_page, keyed, page_size, turn_page
from .text import clip, day_label, initials, language_name
from .ussd import SEAT_LOST

CENTRE_WIDTH = 40
VACCINE_WIDTH = 20
HINT_INVALID = "sms/citizen/hint_invalid"

# The USSD booking screens and hints, and their SMS faces.
_FACES = ("person", "name", "birth_year", "gender", "area", "no_centres", "centres", "dates",
          "slots", "confirm", "add_person", "hint_invalid", "hint_name", "hint_year",
          "hint_area", "hint_has_appointment", "hint_fully_vaccinated", "hint_slot_filled",
          "hint_full", "hint_people_limit")
FACES = {f"ussd/{name}": f"sms/citizen/{name}" for name in _FACES}


class Kind(StrEnum):
    """What an open conversation waits for; stored in the state under "k"."""

    BOOK = "b"  # a booking step ("w": the USSD booking state, "a": an area code sent with BOOK)
    PICK = "p"  # a number from a list of appointments ("m": task, "r": their refs)
    CANCEL = "y"  # YES to cancel "q"


class Task(StrEnum):
    STATUS = "s"
    CODE = "k"
    CANCEL = "x"
    CERT = "c"


_CITIZEN = frozenset({"book", "status", "code", "cancel", "cert", "lang", "stop", "start"})
_BY_COMMAND = {"status": Task.STATUS, "code": Task.CODE, "cancel": Task.CANCEL,
               "cert": Task.CERT}
_WHICH = {Task.STATUS: "sms/citizen/status", Task.CODE: "sms/citizen/code_which",
          Task.CANCEL: "sms/citizen/cancel_which", Task.CERT: "sms/citizen/cert_which"}


@dataclass(frozen=True)
class Answer:
    """A step's outcome and the language its reply is written in."""

    outcome: Outcome
    lang: str


def step(state: dict | None, inbound: Inbound, command: Command, ctx: Context) -> Answer:
    """One SMS from a citizen or vaccinator; `state` is the open conversation, if any."""
    if state and (state.get("k") not in tuple(Kind) or state.get("l") not in ctx.languages):
        state = None  # saved by another version, or in a language no longer configured
    if _flooded(ctx):
        warn = ctx.sms_this_hour == ctx.flood_limit + 1
        return Answer(_end("sms/flood_warning") if warn else Outcome(None), _lang(ctx))
    lang = _lang(ctx, inbound, command)
    if looks_like_ussd(inbound.text):
        return Answer(_end("sms/please_dial", ussd_code=ctx.ussd_code), lang)
    if state and (inbound.event == SEAT_LOST or _answers(state, command)):
        return Answer(_continue(state, inbound, command, ctx), state["l"])
    if command.name == "book":
        return _book(inbound, command, ctx)
    if command.name in verify.COMMANDS or (verify.is_vaccinator(ctx) and
                                           command.name not in _CITIZEN):
        return Answer(verify.step(command, inbound, ctx), lang)
    if command.name in _BY_COMMAND:
        return Answer(_with_ref(_BY_COMMAND[command.name], command, ctx, lang), lang)
    if command.name == "lang":
        return _language(command, ctx, lang)
    if command.name in ("stop", "start"):
        on = command.name == "start"
        outcome = _end("sms/citizen/started" if on else "sms/citizen/stopped")
        return Answer(replace(outcome, effects=(SetReminders(ctx.citizen.phone, on),)), lang)
    return Answer(_end("sms/help_citizen", ussd_code=ctx.ussd_code), lang)


def keyword_lang(text: str, command: Command, ctx: Context) -> str:
    """The language of the keyword typed: the saved language when it knows the word (English
    keywords always work), else the first configured language whose keywords include it."""
    if not command.name:
        return ""
    saved = ctx.citizen.lang
    order = ([saved] if saved in ctx.languages else []) + [l for l in ctx.languages if l != saved]
    for lang in order:
        if parse(text, ctx.keywords.get(lang, {})).name == command.name:
            return lang
    return ""


# ---- which language, and whether to answer at all ----


def _flooded(ctx: Context) -> bool:
    return (ctx.flood_limit > 0 and ctx.sms_this_hour > ctx.flood_limit
            and not verify.is_vaccinator(ctx))


def _lang(ctx: Context, inbound: Inbound | None = None, command: Command | None = None) -> str:
    """The saved language, else the keyword's, else the first configured one."""
    if ctx.citizen.lang in ctx.languages:
        return ctx.citizen.lang
    typed = keyword_lang(inbound.text, command, ctx) if inbound and command else ""
    return typed or ctx.languages[0]


def _own_keyword(text: str, command: Command) -> bool:
    """True when the keyword is a language's own word, not one of the English commands."""
    return parse(text, {}).name != command.name


def _answers(state: dict, command: Command) -> bool:
    """True when the text answers the open conversation rather than naming a command."""
    if not command.name or command.name == "yes":
        return True
    on_name = state.get("k") == Kind.BOOK and (state.get("w") or {}).get("s") == Screen.NAME
    return on_name and bool(command.args)


def _continue(state: dict, inbound: Inbound, command: Command, ctx: Context) -> Outcome:
    kind = Kind(state["k"])
    if kind is Kind.BOOK:
        return _booking_step(state, inbound, command, ctx)
    if kind is Kind.PICK:
        return _pick_step(state, keyed(inbound.text), ctx)
    return _cancel_answer(state, command, ctx)


# ---- BOOK [area code]: the USSD booking steps as SMS ----


def _book(inbound: Inbound, command: Command, ctx: Context) -> Answer:
    lang = keyword_lang(inbound.text, command, ctx) or _lang(ctx)
    area = booking.parse_area(command.target) if command.target else None
    outcome = _from_booking(booking.begin(ctx, lang), area or "", ctx)
    if not ctx.citizen.lang and _own_keyword(inbound.text, command):
        outcome = replace(outcome, effects=(SetLanguage(ctx.citizen.phone, lang),
                                            *outcome.effects))
    return Answer(outcome, lang)


def _booking_step(state: dict, inbound: Inbound, command: Command, ctx: Context) -> Outcome:
    screen = state["w"].get("s")
    if inbound.event == SEAT_LOST:
        return _from_booking(booking.seat_lost(state["w"], ctx), "", ctx)
    text = "1" if command.name == "yes" and screen == Screen.CONFIRM else keyed(inbound.text)
    return _from_booking(booking.step(state["w"], text, ctx), state.get("a", ""), ctx)


def _from_booking(outcome: Outcome, area: str, ctx: Context) -> Outcome:
    """A booking outcome as an SMS outcome; `area` answers the area step when it comes."""
    inner = outcome.state
    if inner is None:  # booked: the slip SMS is the reply
        effects = tuple(replace(e, channel=Channel.SMS) if isinstance(e, Book) else e
                        for e in outcome.effects)
        return Outcome(None, None, effects)
    if inner.get("s") == Screen.MENU:  # "00", Back from the first step, or 2 at confirm
        return _end("sms/citizen/book_stopped")
    if area and inner.get("s") == Screen.AREA:
        return _from_booking(booking.step(inner, area, ctx), "", ctx)
    state = {"k": Kind.BOOK, "l": inner["l"], "w": inner, **({"a": area} if area else {})}
    return Outcome(state, face(outcome.reply), outcome.effects)


def face(reply: Reply) -> Reply:
    """The SMS face of a USSD booking screen: SMS wording, no navigation line."""
    items = [T(FACES.get(i.template, i.template), i.params) if isinstance(i, T) else i
             for i in reply.items]
    return Reply(FACES.get(reply.template, reply.template), reply.params, items=items,
                 page=reply.page, hint=FACES.get(reply.hint, reply.hint), nav=False)


# ---- STATUS, CODE [ref], CANCEL <ref>, CERT [ref] ----


def _applicable(task: Task, ctx: Context) -> list[Appointment]:
    """The appointments a task can act on: live ones, or (CERT) those with a certificate."""
    if task is not Task.CERT:
        return appointments.live(ctx)
    done = [a for a in ctx.citizen.appointments
            if a.cert_id and a.status in (Status.VACCINATED, Status.DISPUTED)]
    return sorted(done, key=lambda a: (a.day, a.ref))


def _with_ref(task: Task, command: Command, ctx: Context, lang: str) -> Outcome:
    if task is Task.STATUS or not command.target:
        return _which(task, ctx, lang)
    ref = parse_ref(command.target)
    if ref is None:
        return _end("sms/citizen/check_ref")
    found = next((a for a in _applicable(task, ctx) if a.ref == ref), None)
    if found is not None:
        return _act(task, found, ctx, lang)
    mine = any(a.ref == ref for a in ctx.citizen.appointments)
    if task is Task.CERT and mine:
        return _end("sms/citizen/no_cert")
    return _end("sms/citizen/not_found", ref=format_ref(ref))


def _which(task: Task, ctx: Context, lang: str) -> Outcome:
    """Straight to the one appointment, or a numbered list of several."""
    found = _applicable(task, ctx)
    if not found:
        return _end("sms/citizen/no_cert" if task is Task.CERT else "sms/citizen/no_appointments")
    if len(found) == 1:
        return _act(task, found[0], ctx, lang)
    return _pick({"k": Kind.PICK, "l": lang, "m": task, "r": [a.ref for a in found]}, ctx)


def _listed(state: dict, ctx: Context) -> list[Appointment]:
    """The listed appointments the task can still act on, in the order shown."""
    by_ref = {a.ref: a for a in _applicable(Task(state["m"]), ctx)}
    return [by_ref[ref] for ref in state["r"] if ref in by_ref]


def _pick(state: dict, ctx: Context, hint: str = "") -> Outcome:
    found = _listed(state, ctx)
    if len(found) < 2:  # changed meanwhile
        return _which(Task(state["m"]), ctx, state["l"])
    state = clamp_page(state, len(found), page_size(ctx, state["l"]))
    items = [_label(a, Task(state["m"])) for a in found]
    return Outcome(state, Reply(_WHICH[Task(state["m"])], items=items, page=state.get("g", 0),
                                hint=hint, nav=False))


def _pick_step(state: dict, text: str, ctx: Context) -> Outcome:
    found = _listed(state, ctx)
    turned = turn_page(state, text, len(found), page_size(ctx, state["l"]))
    if turned is not None:
        return _pick(turned, ctx)
    number = choice(text, len(found))
    if number is None:
        return _pick(state, ctx, HINT_INVALID)
    return _act(Task(state["m"]), found[number - 1], ctx, state["l"])


def _act(task: Task, a: Appointment, ctx: Context, lang: str) -> Outcome:
    ref = format_ref(a.ref)
    if task is Task.CODE:  # the code SMS itself is the answer
        return Outcome(None, None, (SendSms(to=ctx.citizen.phone, template="sms/code_resend",
                                            params={"ref": ref}, purpose="code", lang=lang,
                                            code_of=a.ref),))
    if task is Task.CANCEL:
        return Outcome({"k": Kind.CANCEL, "l": lang, "q": a.ref},
                       Reply("sms/citizen/cancel_confirm", _params(a), nav=False))
    if task is Task.CERT:
        cert_id = format_cert(a.cert_id)
        if a.status == Status.DISPUTED:
            return _end("sms/citizen/cert_review", cert_id=cert_id)
        return _end("sms/citizen/cert", **_params(a), cert_id=cert_id)
    return _end("sms/citizen/appointment", **_params(a))


def _cancel_answer(state: dict, command: Command, ctx: Context) -> Outcome:
    ref = format_ref(state["q"])
    if command.name != "yes":
        return _end("sms/citizen/cancel_kept", ref=ref)
    if not any(a.ref == state["q"] for a in appointments.live(ctx)):  # used or cancelled
        return _end("sms/citizen/not_found", ref=ref)
    outcome = _end("sms/citizen/cancelled", ref=ref)
    return replace(outcome, effects=(Cancel(state["q"], ctx.citizen.phone, Channel.SMS),))


def _label(a: Appointment, task: Task) -> str:
    what = a.vaccine if task is Task.CERT else a.centre_name
    return f"{initials(a.name)} {day_label(a.day)} {what}"


def _params(a: Appointment) -> dict:
    return {"initials": initials(a.name), "dose": a.dose,
            "vaccine": clip(a.vaccine, VACCINE_WIDTH), "centre": clip(a.centre_name, CENTRE_WIDTH),
            "date": day_label(a.day), "slot": a.slot, "ref": format_ref(a.ref)}


# ---- LANG <code> ----


def _language(command: Command, ctx: Context, lang: str) -> Answer:
    wanted = command.target.casefold()
    chosen = next((code for code in ctx.languages
                   if wanted in (code, language_name(code).casefold())), None)
    if chosen is None:
        return Answer(_end("sms/citizen/lang_usage", codes=", ".join(ctx.languages)), lang)
    outcome = _end("sms/citizen/lang_set")
    return Answer(replace(outcome, effects=(SetLanguage(ctx.citizen.phone, chosen),)), chosen)


def _end(template: str, /, **params) -> Outcome:
    """A reply that closes the conversation."""
    return Outcome(None, Reply(template, params, end=True, nav=False))
