"""The citizen's SMS conversation as tables: (state, SMS text, context) -> reply, state, effects."""
from __future__ import annotations

from dataclasses import replace

import pytest

from flows import booking as ussd_booking
from flows import sms
from flows.base import (Book, Cancel, Channel, Inbound, NewPerson, Reply, SendSms, SetLanguage,
                        SetReminders, T)
from flows.commands import parse
from flows.domain import Status, Vaccinator
from flows.screens import SHAPES
from gateway import gsm
from gateway.conversation import sms_body
from gateway.templates import ROOT, Templates
from tests.gateway.test_templates import SMS_BUDGETS, WORST

from .catalog import DictCatalog
from .ussd_world import ASHA, CENTRES, NEW_REF, PHONE, RAVI, SESSIONS, appointment, make_ctx

LANGS = ("en", "hi", "ur")
TEMPLATES = Templates.load(LANGS)
KEYWORDS = {lang: TEMPLATES.aliases(lang) for lang in LANGS}
ALIASES = TEMPLATES.keywords()


def ctx(**changes):
    return make_ctx(keywords=KEYWORDS, **changes)


CTX = ctx()
NEWCOMER = ctx(lang="", people=())
TODAY_1416 = "101:2026-11-26:Covishield"

ASHA_APPT = appointment("3105527188", ASHA, CENTRES[0], 1, "09:00-11:00")  # "31055 27188"
RAVI_APPT = appointment("2700319457", RAVI, CENTRES[1], 2, "10:00-12:00", dose=2)
ASHA_DONE = replace(appointment("4821390575", ASHA, CENTRES[0], -1, "09:00-11:00"),
                    status=Status.VACCINATED, cert_id="482139057610")
RAVI_DONE = replace(appointment("1234567897", RAVI, CENTRES[0], -20, "09:00-11:00"),
                    status=Status.VACCINATED, cert_id="123412341236")
ONE = ctx(appointments=[ASHA_APPT])
TWO = ctx(appointments=[RAVI_APPT, ASHA_APPT])  # listed by day: Asha first
VAX = Vaccinator("+919800000001", "Meena Shah", "101")

# Booking states: the SMS conversation wraps the USSD booking state ("w").
W_PERSON = {"s": "person", "l": "en"}
W_AREA = {"s": "area", "l": "en", "b": 1}
W_CENTRES = {**W_AREA, "s": "centres", "a": "110001"}
W_SLOTS = {**W_CENTRES, "s": "slots", "c": "101", "d": "2026-11-26"}
W_CONFIRM = {**W_SLOTS, "s": "confirm", "e": TODAY_1416, "t": "14:00-16:00"}


def booking(inner: dict, **extra) -> dict:
    return {"k": "b", "l": inner["l"], "w": inner, **extra}


def send(text: str, state: dict | None = None, context=CTX, event: str = "") -> sms.Answer:
    inbound = Inbound(PHONE, text, Channel.SMS, event=event)
    return sms.step(state, inbound, parse(text, ALIASES), context)


_ANY = object()


def check(answer: sms.Answer, template: str | None, *, lang: str = "en", state=None,
          effects: tuple = (), hint: str = "", items=_ANY, params=_ANY) -> None:
    outcome = answer.outcome
    reply = outcome.reply
    assert (reply.template if reply else None) == template
    assert answer.lang == lang
    assert outcome.state == state
    assert outcome.effects == effects
    if reply is not None:
        assert reply.hint == hint and not reply.nav
        assert reply.end == (state is None)
    if items is not _ANY:
        assert list(reply.items) == list(items)
    if params is not _ANY:
        assert {k: reply.params.get(k) for k in params} == dict(params)


def booked(**changes) -> Book:
    fields = dict(phone=PHONE, ref=NEW_REF, session_id=TODAY_1416, slot="14:00-16:00", dose=1,
                  channel=Channel.SMS, lang="en", beneficiary_id=1)
    return Book(**{**fields, **changes})


# ---- the transcript in the module docstring ----


def transcript(doc: str) -> list[tuple[str, str]]:
    """(SMS sent, reply expected) pairs from the docstring: `> text`, then `< reply` lines."""
    steps: list[tuple[str, list[str]]] = []
    reading = False
    for line in doc.splitlines():
        text = line.strip()
        if text.startswith("> "):
            steps.append((text[2:], []))
            reading = False
        elif text.startswith("< "):
            steps[-1][1].append(text[2:])
            reading = True
        elif reading and text and line.startswith(" " * 6):
            steps[-1][1].append(text)
        else:
            reading = False
    return [(typed, "\n".join(lines)) for typed, lines in steps]


def test_the_transcript_in_the_module_docstring_replays():
    steps = transcript(sms.__doc__)
    assert len(steps) == 7
    state = None
    for typed, expected in steps:
        answer = send(typed, state)
        outcome = answer.outcome
        if expected.startswith("(the appointment slip"):
            assert outcome.reply is None and outcome.effects == (booked(),)
        else:
            assert sms_body(TEMPLATES, outcome.reply, answer.lang) == expected
        state = outcome.state


# ---- BOOK: the USSD booking steps, by SMS ----

BOOK_CASES = [
    pytest.param(None, "BOOK", CTX, dict(
        template="sms/citizen/person", state=booking(W_PERSON),
        items=["Asha Kumari", "Ravi Kumar", T("sms/citizen/add_person")]),
        id="book_lists_the_people_on_the_number"),
    pytest.param(None, "book  110001", CTX, dict(
        template="sms/citizen/person", state=booking(W_PERSON, a="110001")),
        id="an_area_code_waits_for_the_area_step"),
    pytest.param(booking(W_PERSON, a="110001"), "1", CTX, dict(
        template="sms/citizen/centres", state=booking(W_CENTRES),
        items=["PHC Connaught Place", "Lodhi Road Health Centre"]),
        id="the_area_code_answers_the_area_step"),
    pytest.param(booking(W_PERSON), "1", CTX, dict(
        template="sms/citizen/area", state=booking(W_AREA)),
        id="without_an_area_code_the_area_is_asked"),
    pytest.param(None, "BOOK 999999", CTX, dict(
        template="sms/citizen/person", state=booking(W_PERSON, a="999999")),
        id="an_area_without_seats_is_kept_for_later"),
    pytest.param(booking(W_PERSON, a="999999"), "1", CTX, dict(
        template="sms/citizen/no_centres", state=booking(W_AREA)),
        id="an_area_without_seats_asks_for_another"),
    pytest.param(None, "BOOK 110001", NEWCOMER, dict(
        template="sms/citizen/name", state=booking({"s": "name", "l": "en"}, a="110001")),
        id="nobody_registered_starts_with_the_name"),
    pytest.param(booking({"s": "name", "l": "en"}), "Tika Ram", NEWCOMER, dict(
        template="sms/citizen/birth_year",
        state=booking({"s": "year", "l": "en", "n": "Tika Ram"})),
        id="a_name_that_starts_with_a_keyword_is_a_name"),
    pytest.param(booking({"s": "gender", "l": "en", "n": "Tika Ram", "y": 1990}, a="110001"),
                 "2", NEWCOMER, dict(template="sms/citizen/centres", state=booking(
                     {"s": "centres", "l": "en", "n": "Tika Ram", "y": 1990, "x": "m",
                      "a": "110001"})),
        id="a_new_persons_area_code_answers_after_the_gender"),
    pytest.param(booking(W_PERSON), "4", CTX, dict(
        template="sms/citizen/person", state=booking(W_PERSON), hint="sms/citizen/hint_invalid"),
        id="a_wrong_number_repeats_the_list_with_a_hint"),
    pytest.param(booking(W_PERSON), "1", ctx(appointments=[ASHA_APPT]), dict(
        template="sms/citizen/person", state=booking(W_PERSON),
        hint="sms/citizen/hint_has_appointment"),
        id="a_person_with_a_live_appointment_cannot_book_again"),
    pytest.param(booking(W_SLOTS), "2", CTX, dict(
        template="sms/citizen/confirm", state=booking(W_CONFIRM),
        params={"initials": "A.K.", "dose": 1, "vaccine": "Covishield", "day": "26 Nov",
                "slot": "14:00-16:00", "centre": "PHC Connaught Place"}),
        id="the_slot_chosen_is_summarised"),
    pytest.param(booking(W_CONFIRM), "1", CTX, dict(template=None, effects=(booked(),)),
                 id="confirm_books_and_the_slip_is_the_answer"),
    pytest.param(booking(W_CONFIRM), "yes", CTX, dict(template=None, effects=(booked(),)),
                 id="yes_confirms_too"),
    pytest.param(booking(W_CONFIRM), "2", CTX, dict(template="sms/citizen/book_stopped"),
                 id="2_at_confirm_stops_the_booking"),
    pytest.param(booking(W_PERSON), "0", CTX, dict(template="sms/citizen/book_stopped"),
                 id="0_on_the_first_step_stops_the_booking"),
    pytest.param(booking(W_CENTRES), "0", CTX, dict(
        template="sms/citizen/area", state=booking(W_AREA)), id="0_goes_back_a_step"),
    pytest.param(booking(W_CONFIRM), "00", CTX, dict(template="sms/citizen/book_stopped"),
                 id="00_stops_the_booking"),
    pytest.param(booking(W_AREA), "560001", CTX, dict(
        template="sms/citizen/centres", state=booking({**W_AREA, "s": "centres",
                                                        "a": "560001"}),
        items=[f"Centre {n}" for n in range(1, 8)]), id="a_long_list_is_paged"),
    pytest.param(booking({**W_AREA, "s": "centres", "a": "560001"}), "98", CTX, dict(
        template="sms/citizen/centres", state=booking({**W_AREA, "s": "centres",
                                                        "a": "560001", "g": 1})),
        id="98_shows_the_next_page"),
    pytest.param(booking({**W_PERSON, "l": "hi"}), "STATUS", ctx(appointments=[ASHA_APPT]),
                 dict(template="sms/citizen/appointment"),
                 id="a_keyword_ends_the_booking_and_runs"),
    pytest.param(booking(W_PERSON), "BOOK", CTX, dict(
        template="sms/citizen/person", state=booking(W_PERSON)),
        id="book_again_starts_afresh"),
]


@pytest.mark.parametrize("state, text, context, then", BOOK_CASES)
def test_book(state, text, context, then):
    check(send(text, state, context), **then)


def test_a_slot_filled_while_confirming_shows_the_times_again():
    full = [replace(s, slots=tuple(replace(sl, taken=sl.capacity) if
                                   (s.session_id, sl.name) == (TODAY_1416, "14:00-16:00")
                                   else sl for sl in s.slots)) for s in SESSIONS]
    answer = send("1", booking(W_CONFIRM), ctx(catalog=DictCatalog(CENTRES, full)),
                  event=sms.SEAT_LOST)
    check(answer, "sms/citizen/slots", state=booking(W_SLOTS),
          hint="sms/citizen/hint_slot_filled", items=["09:00-11:00"])


def test_a_new_person_is_saved_with_the_booking():
    inner = {**W_CONFIRM, "n": "Meena Devi", "y": 1992, "x": "f"}
    del inner["b"]
    check(send("1", booking(inner), NEWCOMER), None, effects=(
        booked(beneficiary_id=0, person=NewPerson("Meena Devi", 1992, "f")),))


# ---- languages: the keyword's, the saved one, LANG ----

LANGUAGE_CASES = [
    pytest.param("बुक 110001", "", "hi", (SetLanguage(PHONE, "hi"),),
                 id="a_hindi_keyword_books_in_hindi_and_saves_it"),
    pytest.param("बुक", "en", "hi", (), id="a_hindi_keyword_books_in_hindi_whatever_is_saved"),
    pytest.param("بک 110001", "", "ur", (SetLanguage(PHONE, "ur"),),
                 id="an_urdu_keyword_books_in_urdu"),
    pytest.param("بك", "", "ur", (SetLanguage(PHONE, "ur"),),
                 id="an_arabic_keyboard_kaf_is_urdu_too"),
    pytest.param("टीका", "", "hi", (SetLanguage(PHONE, "hi"),), id="tika_in_devanagari"),
    pytest.param("BOOK", "hi", "hi", (), id="the_english_keyword_books_in_the_saved_language"),
    pytest.param("BOOK", "", "en", (), id="the_english_keyword_saves_nothing"),
    pytest.param("buk", "ur", "ur", (), id="a_latin_alias_of_two_languages_keeps_the_saved_one"),
]


@pytest.mark.parametrize("text, saved, lang, effects", LANGUAGE_CASES)
def test_the_language_of_a_booking(text, saved, lang, effects):
    area = {"a": "110001"} if "110001" in text else {}
    check(send(text, context=ctx(lang=saved)), "sms/citizen/person", lang=lang,
          state=booking({**W_PERSON, "l": lang}, **area), effects=effects)


def test_a_booking_in_hindi_books_with_hindi_slip_and_replies():
    state = booking({**W_CONFIRM, "l": "hi"})
    check(send("हाँ", state), None, lang="hi", effects=(booked(lang="hi"),))
    check(send("4", booking({**W_PERSON, "l": "hi"})), "sms/citizen/person", lang="hi",
          state=booking({**W_PERSON, "l": "hi"}), hint="sms/citizen/hint_invalid")


REPLY_LANGUAGE_CASES = [
    pytest.param("HELP", "hi", "hi", id="replies_in_the_saved_language"),
    pytest.param("मदद", "en", "en", id="a_hindi_help_keeps_the_saved_english"),
    pytest.param("मदद", "", "hi", id="with_nothing_saved_the_keywords_language"),
    pytest.param("مدد", "", "ur", id="urdu_help_with_nothing_saved"),
    pytest.param("hello", "", "en", id="unknown_text_with_nothing_saved_the_first_language"),
]


@pytest.mark.parametrize("text, saved, lang", REPLY_LANGUAGE_CASES)
def test_reply_language(text, saved, lang):
    check(send(text, context=ctx(lang=saved)), "sms/help_citizen", lang=lang,
          params={"ussd_code": "*384*123#"})


@pytest.mark.parametrize("text, chosen", [("LANG hi", "hi"), ("lang UR", "ur"),
                                          ("भाषा हिन्दी", "hi"), ("زبان en", "en"),
                                          ("LANG English", "en")])
def test_lang_saves_the_language_and_answers_in_it(text, chosen):
    check(send(text), "sms/citizen/lang_set", lang=chosen,
          effects=(SetLanguage(PHONE, chosen),))


@pytest.mark.parametrize("text", ["LANG", "LANG fr", "LANG 2"])
def test_lang_without_a_configured_language_lists_the_codes(text):
    check(send(text), "sms/citizen/lang_usage", params={"codes": "en, hi, ur"})


# ---- STATUS, CODE, CANCEL, CERT ----

CODE_ASHA = SendSms(to=PHONE, template="sms/code_resend", params={"ref": "31055 27188"},
                    purpose="code", lang="en", code_of="3105527188")
PICK_TWO = ["3105527188", "2700319457"]

COMMAND_CASES = [
    pytest.param(None, "STATUS", CTX, dict(template="sms/citizen/no_appointments"),
                 id="status_without_appointments"),
    pytest.param(None, "status", ONE, dict(template="sms/citizen/appointment", params={
        "initials": "A.K.", "dose": 1, "vaccine": "Covishield", "centre": "PHC Connaught Place",
        "date": "27 Nov", "slot": "09:00-11:00", "ref": "31055 27188"}),
        id="status_with_one_appointment_gives_its_details"),
    pytest.param(None, "STATUS", TWO, dict(
        template="sms/citizen/status", state={"k": "p", "l": "en", "m": "s", "r": PICK_TWO},
        items=["A.K. 27 Nov PHC Connaught Place", "R.K. 28 Nov Civil Hospital Dwarka"]),
        id="status_with_two_lists_them"),
    pytest.param({"k": "p", "l": "en", "m": "s", "r": PICK_TWO}, "2", TWO, dict(
        template="sms/citizen/appointment", params={"ref": "27003 19457", "dose": 2}),
        id="a_number_picks_from_the_list"),
    pytest.param({"k": "p", "l": "en", "m": "s", "r": PICK_TWO}, "3", TWO, dict(
        template="sms/citizen/status", state={"k": "p", "l": "en", "m": "s", "r": PICK_TWO},
        hint="sms/citizen/hint_invalid"), id="a_wrong_number_repeats_the_list"),
    pytest.param({"k": "p", "l": "en", "m": "s", "r": PICK_TWO}, "1", ctx(
        appointments=[RAVI_APPT, replace(ASHA_APPT, status=Status.CANCELLED)]),
        dict(template="sms/citizen/appointment", params={"ref": "27003 19457"}),
        id="a_list_that_shrank_meanwhile_is_read_afresh"),
    pytest.param(None, "CODE", ONE, dict(template=None, effects=(CODE_ASHA,)),
                 id="code_sends_the_code_sms_of_the_one_appointment"),
    pytest.param(None, "CODE 31055-27188", TWO, dict(template=None, effects=(CODE_ASHA,)),
                 id="code_with_a_ref"),
    pytest.param(None, "कोड ३१०५५ २७१८८", TWO, dict(template=None, effects=(CODE_ASHA,)),
                 id="code_in_hindi_with_devanagari_digits"),
    pytest.param(None, "CODE", TWO, dict(
        template="sms/citizen/code_which", state={"k": "p", "l": "en", "m": "k", "r": PICK_TWO}),
        id="code_with_two_asks_which"),
    pytest.param({"k": "p", "l": "en", "m": "k", "r": PICK_TWO}, "1", TWO, dict(
        template=None, effects=(CODE_ASHA,)), id="code_picked_from_the_list"),
    pytest.param(None, "CODE 3105527189", ONE, dict(template="sms/citizen/check_ref"),
                 id="a_mistyped_ref_is_caught_by_its_check_digit"),
    pytest.param(None, "CODE 4821390575", ONE, dict(
        template="sms/citizen/not_found", params={"ref": "48213 90575"}),
        id="another_numbers_ref_is_not_found_here"),
    pytest.param(None, "CODE", CTX, dict(template="sms/citizen/no_appointments"),
                 id="code_without_appointments"),
    pytest.param(None, "CANCEL 31055 27188", ONE, dict(
        template="sms/citizen/cancel_confirm", state={"k": "y", "l": "en", "q": "3105527188"},
        params={"initials": "A.K.", "date": "27 Nov", "slot": "09:00-11:00",
                "centre": "PHC Connaught Place", "ref": "31055 27188"}),
        id="cancel_asks_yes"),
    pytest.param({"k": "y", "l": "en", "q": "3105527188"}, "YES", ONE, dict(
        template="sms/citizen/cancelled", params={"ref": "31055 27188"},
        effects=(Cancel("3105527188", PHONE, Channel.SMS),)), id="yes_cancels"),
    pytest.param({"k": "y", "l": "hi", "q": "3105527188"}, "हाँ", ONE, dict(
        template="sms/citizen/cancelled", lang="hi",
        effects=(Cancel("3105527188", PHONE, Channel.SMS),)), id="yes_in_hindi_cancels"),
    pytest.param({"k": "y", "l": "en", "q": "3105527188"}, "no", ONE, dict(
        template="sms/citizen/cancel_kept"), id="anything_else_keeps_the_appointment"),
    pytest.param({"k": "y", "l": "en", "q": "3105527188"}, "YES",
                 ctx(appointments=[replace(ASHA_APPT, status=Status.VERIFIED)]), dict(
        template="sms/citizen/cancelled", effects=(Cancel("3105527188", PHONE, Channel.SMS),)),
        id="a_verified_appointment_can_still_be_cancelled"),
    pytest.param({"k": "y", "l": "en", "q": "3105527188"}, "YES",
                 ctx(appointments=[replace(ASHA_APPT, status=Status.VACCINATED)]),
                 dict(template="sms/citizen/not_found"), id="yes_after_the_dose_cancels_nothing"),
    pytest.param({"k": "y", "l": "en", "q": "3105527188"}, "STATUS", ONE, dict(
        template="sms/citizen/appointment"),
        id="a_command_instead_of_yes_runs_and_cancels_nothing"),
    pytest.param(None, "CANCEL", TWO, dict(
        template="sms/citizen/cancel_which", state={"k": "p", "l": "en", "m": "x", "r": PICK_TWO}),
        id="cancel_without_a_ref_asks_which"),
    pytest.param(None, "YES", ONE, dict(template="sms/help_citizen"),
                 id="yes_with_nothing_to_confirm_gets_the_help"),
    pytest.param(None, "CERT", ctx(appointments=[ASHA_DONE, ASHA_APPT]), dict(
        template="sms/citizen/cert", params={"cert_id": "4821 3905 7610", "dose": 1,
                                             "date": "25 Nov", "initials": "A.K."}),
        id="cert_gives_the_certificate_of_the_recorded_dose"),
    pytest.param(None, "CERT 48213 90575", ctx(appointments=[ASHA_DONE, RAVI_DONE]), dict(
        template="sms/citizen/cert", params={"cert_id": "4821 3905 7610"}),
        id="cert_with_a_ref"),
    pytest.param(None, "CERT", ctx(appointments=[ASHA_DONE, RAVI_DONE]), dict(
        template="sms/citizen/cert_which",
        state={"k": "p", "l": "en", "m": "c", "r": ["1234567897", "4821390575"]},
        items=["R.K. 6 Nov Covishield", "A.K. 25 Nov Covishield"]),
        id="cert_with_two_asks_which"),
    pytest.param(None, "CERT", ctx(appointments=[replace(ASHA_DONE, status=Status.DISPUTED)]),
                 dict(template="sms/citizen/cert_review", params={"cert_id": "4821 3905 7610"}),
                 id="a_disputed_certificate_is_under_review"),
    pytest.param(None, "CERT", ONE, dict(template="sms/citizen/no_cert"),
                 id="cert_before_any_dose"),
    pytest.param(None, "CERT 31055 27188", ONE, dict(template="sms/citizen/no_cert"),
                 id="cert_of_a_booked_appointment"),
    pytest.param(None, "STOP", CTX, dict(template="sms/citizen/stopped",
                                         effects=(SetReminders(PHONE, False),)),
                 id="stop_turns_reminders_off"),
    pytest.param(None, "बंद", ctx(lang="hi"), dict(
        template="sms/citizen/stopped", lang="hi", effects=(SetReminders(PHONE, False),)),
        id="stop_in_hindi"),
    pytest.param(None, "START", CTX, dict(template="sms/citizen/started",
                                          effects=(SetReminders(PHONE, True),)),
                 id="start_turns_them_on"),
    pytest.param(None, "HELP", CTX, dict(template="sms/help_citizen"), id="help"),
    pytest.param(None, "what is this", CTX, dict(template="sms/help_citizen"),
                 id="anything_unknown_gets_the_help"),
    pytest.param(None, "1", CTX, dict(template="sms/help_citizen"),
                 id="a_number_with_no_conversation_gets_the_help"),
    pytest.param(None, "*384*123#", CTX, dict(
        template="sms/please_dial", params={"ussd_code": "*384*123#"}),
        id="a_ussd_code_is_to_be_dialled"),
    pytest.param(booking(W_PERSON), "*384*123#", CTX, dict(template="sms/please_dial"),
                 id="a_ussd_code_during_a_booking"),
    pytest.param(None, "V 31055 27188 1234", CTX, dict(template="sms/verify/not_vaccinator"),
                 id="a_citizen_cannot_verify"),
    pytest.param(None, "HELP", ctx(vaccinator=VAX), dict(template="sms/verify/help"),
                 id="a_vaccinator_gets_the_vaccinators_help"),
    pytest.param(None, "hello", ctx(vaccinator=VAX), dict(template="sms/verify/help"),
                 id="a_vaccinators_unknown_text_gets_the_vaccinators_help"),
    pytest.param(None, "STATUS", ctx(vaccinator=VAX, appointments=[ASHA_APPT]),
                 dict(template="sms/citizen/appointment"),
                 id="a_vaccinator_may_be_a_citizen_too"),
]


@pytest.mark.parametrize("state, text, context, then", COMMAND_CASES)
def test_command(state, text, context, then):
    check(send(text, state, context), **then)


# ---- the flood limit ----

@pytest.mark.parametrize("count, context, template", [
    (30, CTX, "sms/help_citizen"),
    (31, CTX, "sms/flood_warning"),
    (32, CTX, None),
    (500, CTX, None),
    (500, ctx(vaccinator=VAX), "sms/verify/help"),
    (500, ctx(flood_limit=0), "sms/help_citizen"),
    (3, ctx(flood_limit=2), "sms/flood_warning"),
])
def test_more_than_the_hourly_limit_gets_one_warning_then_silence(count, context, template):
    answer = send("hello", context=replace(context, sms_this_hour=count))
    check(answer, template)


@pytest.mark.parametrize("state", [{"k": "z", "l": "en"}, booking({**W_PERSON, "l": "fr"})])
def test_a_state_this_version_cannot_read_is_dropped(state):
    check(send("1", state), "sms/help_citizen")


def test_a_flood_ends_an_open_conversation_quietly():
    check(send("1", booking(W_PERSON), replace(CTX, sms_this_hour=40)), None)


# ---- every SMS face of a booking screen, and every reply, within budget ----


def test_every_booking_screen_and_hint_has_an_sms_face():
    screens = {ussd_booking.TEMPLATES[s] for s in ussd_booking.SCREENS} | {"ussd/no_centres"}
    hints = {hint for screen in screens for hint in SHAPES[screen].hints}
    for template in screens | hints | {"ussd/add_person"}:
        assert template in sms.FACES, template
        assert sms.FACES[template] in TEMPLATES.ids("en")


DAYS = [f"{n} Sep" for n in range(24, 31)]
SLOT_LABELS = [f"{h:02d}:00-{h + 2:02d}:00 {WORST['vaccine']}" for h in range(7, 21, 2)]
_PICK_HINTS = ("sms/citizen/hint_invalid",)
LISTS = {
    "sms/citizen/person": "people",
    "sms/citizen/centres": "data",
    "sms/citizen/dates": DAYS,
    "sms/citizen/slots": SLOT_LABELS,
    "sms/citizen/status": "data",
    "sms/citizen/code_which": "data",
    "sms/citizen/cancel_which": "data",
    "sms/citizen/cert_which": "data",
}
USSD_OF = {face: ussd for ussd, face in sms.FACES.items()}


def _hints(template_id: str) -> tuple[str, ...]:
    if template_id in USSD_OF and USSD_OF[template_id] in SHAPES:
        return tuple(sms.FACES[h] for h in SHAPES[USSD_OF[template_id]].hints)
    return _PICK_HINTS if template_id in LISTS else ()


def _items(kind, lang: str) -> list:
    size = TEMPLATES.page_size(lang)
    if kind == "people":
        return [WORST["name"]] * 3 + [T("sms/citizen/add_person")]
    if kind == "data":
        return [WORST["centre"]] * (size + 1)
    return list(kind or [])[:size + 1]


REPLIES = [(lang, path.relative_to(ROOT / lang).with_suffix("").as_posix())
           for lang in LANGS for path in sorted((ROOT / lang / "sms" / "citizen").glob("*.txt"))
           if "hint_" not in path.name and path.stem != "add_person"]


@pytest.mark.parametrize("lang, template_id", REPLIES)
def test_every_reply_fits_its_budget_at_its_worst(lang, template_id):
    hints = _hints(template_id) or ("",)
    for hint in hints:
        reply = Reply(template_id, WORST, items=_items(LISTS.get(template_id), lang),
                          hint=hint, nav=False)
        body = sms_body(TEMPLATES, reply, lang)  # a list that cannot fit raises ScreenTooLong
        budget = SMS_BUDGETS[lang].get(template_id, SMS_BUDGETS[lang]["*"])
        assert gsm.segments(body) <= budget, f"{lang}/{template_id} with {hint}:\n{body}"
        if lang == "en":
            assert gsm.encoding(body) == gsm.GSM7, body
        if isinstance(LISTS.get(template_id), list):  # days and times are useless shortened
            for label in LISTS[template_id][:TEMPLATES.page_size(lang)]:
                assert label[:len("hh:mm-hh:mm")] in body, body


@pytest.mark.parametrize("lang", LANGS)
def test_hints_are_one_line(lang):
    for template_id in TEMPLATES.ids(lang):
        if template_id.startswith("sms/citizen/hint_"):
            assert "\n" not in TEMPLATES.render(template_id, lang, WORST)


def test_an_open_conversation_state_stays_small():
    import json

    worst = booking({**W_CONFIRM, "l": "hi", "n": "क" * 40, "y": 1992, "x": "o",
                     "a": "1" * 10, "c": "9" * 10, "e": "9" * 10 + ":2026-11-26:" + "V" * 20,
                     "g": 12}, a="1" * 10)
    assert len(json.dumps(worst).encode()) < 600
